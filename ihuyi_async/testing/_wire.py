"""What a request's bytes say: the fields of the query string and of the body, decoded.

Owns :func:`read_fields`. The provider's endpoint is PHP, whose ``$_REQUEST`` merges the
query string with a body that is either ``application/x-www-form-urlencoded`` or
``multipart/form-data`` (PHP curl given an array of fields), so the emulator reads all
three; the body wins over the query string, and the last of repeated fields wins, as in PHP.

Charsets (a documented guess: the provider does not say what it does):

* a declared ``charset`` (the ``Content-Type`` parameter, a multipart part's own
  ``Content-Type``, or a ``_charset_`` field) is honoured; ``gb2312`` and ``gbk`` are
  read as GB18030, their superset, as browsers do;
* without one, bytes are UTF-8 when they are valid UTF-8, else GB18030 (the vendor's
  Java demo posts GBK; its JSP demo writes the platform charset, GBK on a Chinese
  Windows). The whole request is read with one charset, so a real message's GBK bytes
  are almost never valid UTF-8; a very short GBK text can be (证 is ``D6 A4``, also
  UTF-8 for U+05A4) and is then read as UTF-8: declare the charset to be sure;
* bytes valid in neither (or not in the declared charset) are never garbled silently:
  :attr:`Fields.undecodable` is set and the emulator refuses the call with code 0.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

__all__ = ["Fields", "media_type", "read_fields"]

_ALIASES = {"gb2312": "gb18030", "gbk": "gb18030", "cp936": "gb18030", "x-gbk": "gb18030"}
_FALLBACK = "gb18030"
_PARAM = re.compile(r';\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_LINE_BREAK = re.compile(rb"\r?\n")


@dataclass(slots=True)
class Fields:
    """The decoded fields of one request.

    :ivar values: field -> value (body over query, last repeated field wins).
    :ivar charset: the codec the body (or, without a body, the query) was read with.
    :ivar undecodable: some bytes were valid neither in the declared charset nor in
        UTF-8 or GB18030; those values hold U+FFFD where the bytes were.
    """

    values: dict[str, str] = field(default_factory=dict)
    charset: str = "utf-8"
    undecodable: bool = False


def media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """``"Text/Plain; charset=GBK"`` -> ``("text/plain", {"charset": "GBK"})``."""
    kind, _, rest = content_type.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(";" + rest):
        value = match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match.group(1).lower()] = value
    return kind.strip().lower(), params


def _codec(label: str | None) -> str | None:
    """The Python codec for a charset label, or ``None`` for no (or an unknown) label."""
    if not label:
        return None
    name = label.strip().strip('"').lower()
    name = _ALIASES.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _decode(raw: list[bytes], declared: str | None) -> tuple[list[str], str, bool]:
    """Decode every byte string with one charset: the declared one, else UTF-8, else GB18030."""
    candidates = [declared] if declared else ["utf-8", _FALLBACK]
    for codec in candidates:
        decoded = _strict(raw, codec)
        if decoded is not None:
            return decoded, codec, False
    codec = candidates[0]
    return [item.decode(codec, "replace") for item in raw], codec, True


def _strict(raw: list[bytes], codec: str) -> list[str] | None:
    try:
        return [item.decode(codec) for item in raw]
    except UnicodeDecodeError:
        return None


def _urlencoded_pairs(data: bytes) -> list[tuple[bytes, bytes]]:
    pairs = []
    for chunk in data.split(b"&"):
        if not chunk:
            continue
        key, _, value = chunk.partition(b"=")
        pairs.append(
            (unquote_to_bytes(key.replace(b"+", b" ")), unquote_to_bytes(value.replace(b"+", b" ")))
        )
    return pairs


def _part_headers(head: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in _LINE_BREAK.split(head):
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("utf-8", "replace")
    return headers


def _multipart_parts(body: bytes, boundary: str) -> list[tuple[bytes, bytes, str | None]]:
    """``(name, value, charset)`` of each part that is a plain field (files are skipped)."""
    delimiter = b"--" + boundary.encode("latin-1")
    parts: list[tuple[bytes, bytes, str | None]] = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk.removeprefix(b"\n")
        match = re.search(rb"\r?\n\r?\n", chunk)
        if match is None:
            continue
        headers = _part_headers(chunk[: match.start()])
        value = chunk[match.end() :]
        value = value[:-2] if value.endswith(b"\r\n") else value.removesuffix(b"\n")
        _, disposition = media_type(headers.get("content-disposition", ""))
        name = disposition.get("name")
        if name is None or "filename" in disposition:
            continue
        _, params = media_type(headers.get("content-type", ""))
        parts.append((name.encode("utf-8", "surrogateescape"), value, params.get("charset")))
    return parts


def read_fields(query: bytes, body: bytes, content_type: str = "") -> Fields:
    """Decode the fields of a call: ``query`` is the raw query string (as it came on the
    request line, raw UTF-8 or GBK bytes included), ``body`` the raw body.

    A body is read as multipart when ``content_type`` says so, else as url-encoded
    (what PHP does for ``application/x-www-form-urlencoded``, and what clients that
    send no ``Content-Type`` mean).
    """
    result = Fields()
    if query:
        pairs = _urlencoded_pairs(query)
        texts, codec, bad = _decode([b for pair in pairs for b in pair], None)
        result.values.update(zip(texts[::2], texts[1::2], strict=True))
        result.charset, result.undecodable = codec, bad
    if not body:
        return result
    kind, params = media_type(content_type)
    declared = _codec(params.get("charset"))
    if kind == "multipart/form-data" and params.get("boundary"):
        parts = _multipart_parts(body, params["boundary"])
        default = next((v for n, v, _ in parts if n == b"_charset_"), None)
        request_codec = declared or _codec(default.decode("latin-1") if default else None)
        names, name_codec, bad = _decode([n for n, _, _ in parts], request_codec)
        used: list[str] = []
        for name, (_, value, own) in zip(names, parts, strict=True):
            [text], codec, bad_value = _decode([value], _codec(own) or request_codec)
            if codec not in used:
                used.append(codec)
            bad = bad or bad_value
            result.values[name] = text
        result.charset = "/".join(used) if used else name_codec
    else:
        pairs = _urlencoded_pairs(body)
        texts, result.charset, bad = _decode([b for pair in pairs for b in pair], declared)
        result.values.update(zip(texts[::2], texts[1::2], strict=True))
    result.undecodable = result.undecodable or bad
    return result
