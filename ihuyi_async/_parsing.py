"""Provider answers (bytes) -> values, and the outcome rules of fact sheet §9. Pure: no I/O.

Accepts JSON and XML, the latter with or without a namespace (any namespace),
XML declaration, BOM or surrounding whitespace, parsed with DTDs and entities
forbidden (``defusedxml``). ``code`` may be a number or a numeric string; ids
are kept as text; ``num`` may be a string or a number.

Anything that is not a well-formed answer raises :class:`ProtocolError` with the
HTTP status, a short excerpt and a ``reason`` tag; a rejected call raises the
registry's :class:`ApiError` subclass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as _xml_fromstring

from ._codes import SUCCESS, error_for
from ._exceptions import ProtocolError

__all__ = ["Answer", "excerpt", "parse_answer", "parse_balance", "parse_submit", "parse_template"]

Format = Literal["json", "xml"]
_EXCERPT = 120


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


def _as_code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
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


def _decode_xml(body: bytes, status_code: int) -> dict[str, Any]:
    try:
        text = body.decode("utf-8-sig").strip()
    except UnicodeDecodeError as exc:
        raise _fail("XML answer is not UTF-8", body, status_code) from exc
    if not text.startswith("<"):
        raise _fail("answer is not XML", body, status_code)
    try:
        root = _xml_fromstring(text.encode("utf-8"), forbid_dtd=True)
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
    if fmt == "json":
        # The legacy API answers XML when it did not take our format=json (e.g. a proxy
        # stripped it): read what came rather than fail on a well-formed answer.
        data = _decode_xml(body, status_code) if stripped[:1] == b"<" else _decode_json(body, status_code)
    else:
        data = _decode_json(body, status_code) if stripped[:1] == b"{" else _decode_xml(body, status_code)
    if "code" not in data:
        raise _fail("answer has no code", body, status_code, "missing_code")
    code = _as_code(data["code"])
    if code is None:
        raise _fail(f"answer's code is not a number: {str(data['code'])[:20]!r}", body, status_code)
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


def parse_submit(
    body: bytes, fmt: Format, *, status_code: int = 200, id_field: str = "smsid", mobile: str = ""
) -> tuple[str, str]:
    """Outcome of a Submit: ``(smsid, msg)`` when accepted.

    :raises ApiError: the provider rejected it (any code but 2): not sent.
    :raises ProtocolError: anything ambiguous, including code 2 without a non-zero id;
        the caller turns this into :class:`DeliveryUnknownError`.
    """
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
    num = _as_code(answer.fields.get("num"))
    if num is None:
        raise _fail("balance answer has no numeric num", body, status_code)
    return num, answer.msg


def parse_template(body: bytes, fmt: Format, *, status_code: int = 200) -> tuple[int, str]:
    """Outcome of an AddTemplate: ``(template_id, msg)``."""
    answer = parse_answer(body, fmt, status_code=status_code)
    _check(answer)
    template_id = _as_code(answer.fields.get("templateid"))
    if template_id is None or template_id == 0:
        raise _fail("template answer has no templateid", body, status_code)
    return template_id, answer.msg
