"""Provider answers (bytes) -> values, and the outcome rules. Pure: no I/O.

The outcome rules are those careful public integrations converged on, as the README's
table ("What a send does, and what its errors mean") states them: a send is accepted only
with code 2 *and* a non-zero id; any other code is a rejection (the registry's
:class:`ApiError`); anything else (no code, code 2 without an id or with id ``0``, a body
that does not decode) is a :class:`ProtocolError`, which the client reports as an unknown
outcome. The answers' shapes are those of the provider's SMS interface document (v3.3:
``SubmitResult``, ``GetNumResult``, ``AddTemplateResult``).

Accepts JSON and XML, the latter with or without a namespace (any namespace),
XML declaration, BOM or surrounding whitespace, parsed with DTDs and entities
forbidden (``defusedxml``). ``code`` may be a number or a numeric string; ids
are kept as text; ``num`` may be a string or a number.

Encodings: JSON as ``json.loads`` reads bytes (UTF-8, or UTF-16/32 told from a BOM
or from where the NUL bytes fall). XML likewise in UTF-16/32 (a BOM wins over the
declaration); otherwise in the encoding its declaration names (e.g. ``gbk``), if
that is an ASCII-compatible text encoding (:mod:`._charsets`), else UTF-8.

Numbers are bounded by what they can mean: a ``code`` has at most 9 digits (the
registry's longest has 5), a ``num`` or ``templateid`` at most 18; none is negative.

Anything that is not a well-formed answer raises :class:`ProtocolError` with the
HTTP status, a short excerpt and a ``reason`` tag; a rejected call raises the
registry's :class:`ApiError` subclass. Nothing else escapes, whatever the bytes:
``tests/fuzzing/test_fuzz_parsers.py`` holds that to random and mutated answers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as _xml_fromstring

from ._charsets import ascii_compatible_codec
from ._codes import SUCCESS, error_for
from ._exceptions import ProtocolError

__all__ = ["Answer", "excerpt", "parse_answer", "parse_balance", "parse_submit", "parse_template"]

Format = Literal["json", "xml"]
_EXCERPT = 120
#: Digits a ``code`` may have: the registry's longest has 5, room is left for codes not seen yet.
_MAX_CODE_DIGITS = 9
#: Digits a ``num`` (balance) or ``templateid`` may have: below 2**63.
_MAX_COUNT_DIGITS = 18
#: BOMs, longest first (a UTF-32-LE BOM starts with the UTF-16-LE one).
_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xef\xbb\xbf", "utf-8"),
)
#: The ``encoding`` pseudo-attribute of an XML declaration (expat checks the rest of its syntax).
_XML_ENCODING = re.compile(rb"<\?xml[ \t\r\n][^>]*?encoding[ \t\r\n]*=[ \t\r\n]*([\"'])([^\"'>]*)\1")


@dataclass(frozen=True, slots=True)
class Answer:
    """A decoded answer: its ``code``, ``msg`` and every other field as text."""

    code: int
    msg: str
    fields: dict[str, str]


def excerpt(body: bytes) -> str:
    """A short printable excerpt of a body, for errors."""
    text = body[: _EXCERPT * 4].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text[:_EXCERPT] + ("…" if len(text) > _EXCERPT else "")


def _fail(message: str, body: bytes, status_code: int, reason: str = "malformed_answer") -> ProtocolError:
    return ProtocolError(message, status_code=status_code, excerpt=excerpt(body), reason=reason)


def _shown(value: Any) -> str:
    """A short rendering of a field's value for an error message (never a whole huge value)."""
    if isinstance(value, str):
        return repr(value[:20])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(str(value)[:20])
    return "a JSON " + ("null" if value is None else type(value).__name__)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return None


def _as_number(value: Any, max_digits: int) -> int | None:
    """A non-negative int of at most ``max_digits`` digits, from an int or a digit string; else None.

    The bound keeps ``int()`` far below Python's int-string conversion limit (4,300
    digits, a ``ValueError``) and refuses numbers that cannot be a code or a count.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 10**max_digits else None
    if isinstance(value, str):
        text = value.strip()
        if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
            return int(text)
    return None


_json_decode = json.JSONDecoder().decode


def _decode_json(body: bytes, status_code: int) -> dict[str, Any]:
    try:
        if body[:1] == b"{" and body[1:2] != b"\x00":
            # What json.loads(bytes) does for a body it detects as UTF-8, minus the detection.
            data = _json_decode(body.decode("utf-8", "surrogatepass"))
        else:
            data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _fail("answer is not valid JSON", body, status_code) from exc
    if not isinstance(data, dict):
        raise _fail(f"JSON answer is a {type(data).__name__}, not an object", body, status_code)
    return data


def _unicode_encoding(body: bytes) -> tuple[str, int] | None:
    """``(encoding, BOM length)`` of a body in UTF-16/32 or with a UTF-8 BOM, else ``None``.

    From the BOM, else from where the NUL bytes of a leading ASCII character fall
    (XML 1.0 appendix F; ``json.detect_encoding`` reads JSON the same way).
    """
    for bom, name in _BOMS:
        if body.startswith(bom):
            return name, len(bom)
    if len(body) >= 4 and not (body[0] and body[1]):
        if not body[0]:
            return ("utf-16-be" if body[1] else "utf-32-be"), 0
        return ("utf-16-le" if body[2] or body[3] else "utf-32-le"), 0
    return None


def _wide_start(body: bytes) -> bytes:
    """The first significant character of a UTF-16/32 body, if it is ``{`` or ``<``; else ``b""``."""
    found = _unicode_encoding(body)
    if found is None or found[0] == "utf-8":
        return b""
    name, skip = found
    start = body[skip:].decode(name, "replace").lstrip(" \t\r\n\ufeff")[:1]
    return start.encode() if start in ("{", "<") else b""


def _xml_text(body: bytes, status_code: int) -> str:
    """The XML body as text, decoded as its BOM or its declaration says."""
    found = _unicode_encoding(body)
    if found is not None:
        name, skip = found
    else:
        name, skip = "utf-8", 0
        declared = _XML_ENCODING.match(body.lstrip(b" \t\r\n"))
        if declared is not None:
            label = declared.group(2).decode("ascii", "replace")
            codec = ascii_compatible_codec(label)
            if codec is None:
                raise _fail(
                    f"XML answer declares an unknown or unusable encoding {label[:40]!r}", body, status_code
                )
            name = codec
    try:
        return body[skip:].decode(name)
    except UnicodeDecodeError as exc:
        raise _fail(f"XML answer is not valid {name}", body, status_code) from exc


def _decode_xml(body: bytes, status_code: int) -> dict[str, Any]:
    text = _xml_text(body, status_code).strip()
    if not text.startswith("<"):
        raise _fail("answer is not XML", body, status_code)
    try:
        # Given text, expat reads it as text: the declaration's encoding has been applied above.
        root = _xml_fromstring(text, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise _fail(f"answer is not well-formed XML ({type(exc).__name__})", body, status_code) from exc
    fields: dict[str, Any] = {}
    for child in root:
        tag: object = child.tag
        if not isinstance(tag, str):  # comments, processing instructions
            continue
        name = tag.rsplit("}", 1)[-1]
        if len(child):
            raise _fail(f"unexpected nested element <{name}>", body, status_code)
        fields[name] = (child.text or "").strip()
    return fields


def parse_answer(body: bytes, fmt: Format, *, status_code: int = 200) -> Answer:
    """Decode one answer; any status but 200, any malformed body, a missing code -> ProtocolError."""
    if status_code != 200:
        raise _fail(f"unexpected HTTP status {status_code}", body, status_code, "http_status")
    stripped = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not stripped:
        raise _fail("empty answer", body, status_code)
    start = stripped[:1]
    if start != b"{" and start != b"<":
        start = _wide_start(body) or start
    if fmt == "json":
        # The legacy API answers XML when it did not take our format=json (e.g. a proxy
        # stripped it): read what came rather than fail on a well-formed answer.
        data = _decode_xml(body, status_code) if start == b"<" else _decode_json(body, status_code)
    else:
        data = _decode_json(body, status_code) if start == b"{" else _decode_xml(body, status_code)
    if "code" not in data:
        raise _fail("answer has no code", body, status_code, "missing_code")
    code = _as_number(data["code"], _MAX_CODE_DIGITS)
    if code is None:
        raise _fail(f"answer's code is not a result code: {_shown(data['code'])}", body, status_code)
    msg = data.get("msg")
    fields: dict[str, str] = {}
    for key, value in data.items():
        text = value if type(value) is str else _as_text(value)
        if text is not None:
            fields[key] = text
    return Answer(code=code, msg=msg if isinstance(msg, str) else "", fields=fields)


def _check(answer: Answer, mobile: str = "") -> None:
    if answer.code != SUCCESS:
        raise error_for(answer.code, answer.msg, mobile=mobile)


def _accepted_json(body: bytes, id_field: str) -> tuple[str, str] | None:
    """The fast path of :func:`parse_submit`: ``(id, msg)`` of a clean JSON acceptance
    (``code`` the number 2, the id a non-zero string), else ``None`` for the full path,
    which gives the same result for these bodies (``tests/unit/test_parsing_submit_fast_path.py``)."""
    try:
        data = _json_decode(body.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError):
        return None
    if type(data) is not dict:
        return None
    code, smsid = data.get("code"), data.get(id_field)
    if type(code) is not int or code != SUCCESS or type(smsid) is not str:
        return None
    smsid = smsid.strip()
    if not smsid.strip("0"):
        return None
    msg = data.get("msg")
    return smsid, msg if type(msg) is str else ""


def parse_submit(
    body: bytes, fmt: Format, *, status_code: int = 200, id_field: str = "smsid", mobile: str = ""
) -> tuple[str, str]:
    """Outcome of a Submit: ``(smsid, msg)`` when accepted.

    :raises ApiError: the provider rejected it (any code but 2): not sent.
    :raises ProtocolError: anything ambiguous, including code 2 without a non-zero id;
        the caller turns this into :class:`DeliveryUnknownError`.
    """
    if status_code == 200 and body[:1] == b"{" and body[1:2] != b"\x00":
        accepted = _accepted_json(body, id_field)
        if accepted is not None:
            return accepted
    answer = parse_answer(body, fmt, status_code=status_code)
    _check(answer, mobile)
    smsid = answer.fields.get(id_field, "").strip()
    if not smsid or smsid.strip("0") == "":
        raise _fail(f"code 2 without a {id_field}", body, status_code, "missing_smsid")
    return smsid, answer.msg


def parse_balance(body: bytes, fmt: Format, *, status_code: int = 200) -> tuple[int, str]:
    """Outcome of a GetNum: ``(num, msg)``."""
    answer = parse_answer(body, fmt, status_code=status_code)
    _check(answer)
    num = _as_number(answer.fields.get("num"), _MAX_COUNT_DIGITS)
    if num is None:
        raise _fail("balance answer has no numeric num", body, status_code)
    return num, answer.msg


def parse_template(body: bytes, fmt: Format, *, status_code: int = 200) -> tuple[int, str]:
    """Outcome of an AddTemplate: ``(template_id, msg)``."""
    answer = parse_answer(body, fmt, status_code=status_code)
    _check(answer)
    template_id = _as_number(answer.fields.get("templateid"), _MAX_COUNT_DIGITS)
    if template_id is None or template_id == 0:
        raise _fail("template answer has no templateid", body, status_code)
    return template_id, answer.msg
