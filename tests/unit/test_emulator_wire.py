"""The emulator's request reading (``testing/_wire.py``) and request-head parsing
(``testing/_http1.py``): any bytes give fields or a typed refusal, and what real clients
encode comes back as it was (#14)."""

from __future__ import annotations

from urllib.parse import quote_from_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ihuyi_async.testing._http1 import BadRequest, parse_head
from ihuyi_async.testing._wire import media_type, read_fields

NAMES = st.sampled_from(["account", "password", "mobile", "content", "time", "templateid", "format"])
VALUES = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)
GBK_VALUES = st.text(alphabet=st.sampled_from("您的验证码是：。订单已发货ABCabc0123 %&=+|【】"), max_size=40)


def urlencode(fields: dict[str, str], encoding: str) -> bytes:
    return "&".join(
        f"{quote_from_bytes(k.encode(encoding))}={quote_from_bytes(v.encode(encoding))}" for k, v in fields.items()
    ).encode()


def multipart(fields: dict[str, str], encoding: str, boundary: str = "b0undary") -> bytes:
    return b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'.encode() + v.encode(encoding) + b"\r\n"
        for k, v in fields.items()
    ) + f"--{boundary}--\r\n".encode()


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(NAMES, VALUES, max_size=6))
def test_utf8_urlencoded_and_multipart_round_trip(fields: dict[str, str]) -> None:
    form = read_fields(b"", urlencode(fields, "utf-8"), "application/x-www-form-urlencoded")
    assert (form.values, form.undecodable) == (fields, False)
    parts = read_fields(b"", multipart(fields, "utf-8"), "multipart/form-data; boundary=b0undary")
    assert (parts.values, parts.undecodable) == (fields, False)
    assert read_fields(urlencode(fields, "utf-8"), b"").values == fields


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(NAMES, GBK_VALUES, max_size=6), st.booleans())
def test_gbk_bodies_round_trip_declared_or_not(fields: dict[str, str], declared: bool) -> None:
    ctype = "application/x-www-form-urlencoded" + ("; charset=GBK" if declared else "")
    form = read_fields(b"", urlencode(fields, "gbk"), ctype)
    raw = [x.encode("gbk") for pair in fields.items() for x in pair]
    ambiguous = not declared and all(_valid_utf8(x) for x in raw)
    if ambiguous:  # e.g. 证 is b"\xd6\xa4", also UTF-8 for U+05A4: read as UTF-8, as documented
        assert form.charset == "utf-8"
    else:
        assert form.values == fields and not form.undecodable


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300),
       st.sampled_from(["", "application/x-www-form-urlencoded; charset=utf-8", "multipart/form-data; boundary=x",
                        "multipart/form-data", "text/plain; charset=nope", "application/x-www-form-urlencoded; charset=gbk"]))
def test_any_bytes_give_fields_never_an_exception(query: bytes, body: bytes, ctype: str) -> None:
    fields = read_fields(query, body, ctype)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.values.items())
    if fields.undecodable:
        assert any("\ufffd" in k + v for k, v in fields.values.items())


def test_media_type_parameters() -> None:
    assert media_type('Multipart/Form-Data; boundary="a;b"; charset=GBK') == (
        "multipart/form-data", {"boundary": "a;b", "charset": "GBK"})
    assert media_type("") == ("", {})


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_any_head_parses_or_is_a_bad_request(head: bytes) -> None:
    try:
        parsed = parse_head(head)
    except BadRequest as exc:
        assert exc.status == 400
    else:
        assert parsed.method and isinstance(parsed.target, bytes)


def test_head_tolerance() -> None:
    head = parse_head("GET /webservice/sms.php?content=验证码 1234 HTTP/1.1\nHost: x\n  folded\nX:  y ".encode())
    assert head.method == "GET" and head.version == "1.1" and head.keep_alive
    assert head.target == "/webservice/sms.php?content=验证码 1234".encode()
    assert head.headers == [(b"host", b"x folded"), (b"x", b"y")]
    assert not parse_head(b"POST / HTTP/1.0").keep_alive
    assert parse_head(b"POST / HTTP/1.0\r\nConnection: Keep-Alive").keep_alive
    with pytest.raises(BadRequest):
        parse_head(b"GET / HTTP/1.1\r\nno colon here")
