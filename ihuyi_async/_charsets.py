"""Charset names read off the wire -> a Python codec that can read the body, or ``None``.

Owns :func:`ascii_compatible_codec`, shared by the answer parser (the ``encoding``
of an XML declaration) and the push receiver (the ``charset`` of a form). Pure: no I/O.

Both read ASCII syntax (``<?xml``, ``<code>``, ``a=1&b=%E4``) before they know the
charset, so only a charset that reads every printable ASCII byte as itself is
usable: UTF-8, GBK, GB18030, Big5, the ISO 8859 and Windows code pages, and the
like. Refused: unknown names; codecs that are not text encodings (``base64``,
``rot13``, ``undefined``); and text encodings that read ASCII otherwise (UTF-16
and UTF-32, which the answer parser tells from a BOM instead; UTF-7, HZ, EBCDIC
code pages, ``punycode``,
``unicode_escape`` and ``raw_unicode_escape``, the last two of which would also
turn ``\\u`` escapes in a body into text). ``idna`` reads ASCII as itself but is a
host-name encoding (it reads ``xn--`` labels as Punycode): refused by name.
"""

from __future__ import annotations

import codecs
import functools

__all__ = ["ascii_compatible_codec"]

# Every printable ASCII byte, plus a backslash escape that escape codecs would read as "A"
# (placed so that no codec is asked to read an invalid escape, which warns).
_PROBE = bytes(range(0x20, 0x7F)).replace(b"\\", b"") + b"\t\r\n\\u0041"
_PROBE_TEXT = _PROBE.decode("ascii")
_MAX_NAME = 40
_NOT_CHARSETS = frozenset({"idna"})


@functools.lru_cache(maxsize=64)
def ascii_compatible_codec(name: str) -> str | None:
    """The codec's canonical name if ``name`` names an ASCII-compatible text encoding, else ``None``.

    :param name: a charset name as received (case and punctuation as ``codecs.lookup`` allows).
    """
    if not 0 < len(name) <= _MAX_NAME or not name.isascii():
        return None
    try:
        codec_name = codecs.lookup(name).name
        "".encode(codec_name)  # LookupError for bytes-to-bytes codecs, UnicodeError for 'undefined'
        if codec_name in _NOT_CHARSETS or _PROBE.decode(codec_name) != _PROBE_TEXT:
            return None
    except Exception:  # noqa: BLE001 - a name off the wire: any failure of a codec means "cannot read it"
        return None
    return codec_name
