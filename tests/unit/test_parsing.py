from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ihuyi_async import ApiError, ProtocolError, RateLimitedError
from ihuyi_async._parsing import Format, parse_answer, parse_balance, parse_submit, parse_template

SMSID = "14745625541233112231"


def xml(root: str, body: str, *, ns: str | None = 'xmlns="http://106.ihuyi.com/"', decl: bool = True) -> bytes:
    head = '<?xml version="1.0" encoding="utf-8"?>\n' if decl else ""
    attr = f" {ns}" if ns else ""
    return f"{head}<{root}{attr}>\n{body}\n</{root}>".encode()


SUBMIT_OK = f"<code>2</code>\n<msg>提交成功</msg>\n<smsid>{SMSID}</smsid>"


@pytest.mark.parametrize("ns", ['xmlns="http://106.ihuyi.com/"', 'xmlns="http://106.ihuyi.cn/"',
                                'xmlns="106.ihuyi.com"', None, 'xmlns:x="urn:other"'])
@pytest.mark.parametrize("decl", [True, False])
def test_submit_xml_any_namespace(ns: str | None, decl: bool) -> None:
    assert parse_submit(xml("SubmitResult", SUBMIT_OK, ns=ns, decl=decl), "xml") == (SMSID, "提交成功")


def test_submit_xml_bom_and_whitespace() -> None:
    body = b"\xef\xbb\xbf\r\n  " + xml("SubmitResult", SUBMIT_OK) + b"\n\n"
    assert parse_submit(body, "xml")[0] == SMSID


def test_submit_xml_prefixed_namespace() -> None:
    body = (f'<r:SubmitResult xmlns:r="http://106.ihuyi.com/"><r:code>2</r:code><r:msg>ok</r:msg>'
            f"<r:smsid>{SMSID}</r:smsid></r:SubmitResult>").encode()
    assert parse_submit(body, "xml")[0] == SMSID


@pytest.mark.parametrize("body", [
    '{"code":2,"msg":"提交成功","smsid":"16842079209571524017"}',
    '{"code":"2","msg":"提交成功","smsid":"16842079209571524017"}',
    '{"code":2,"msg":"提交成功","smsid":16842079209571524017}',
    ' {"code": 2, "smsid": "16842079209571524017"} ',
])
def test_submit_json_variants(body: str) -> None:
    smsid, _ = parse_submit(body.encode(), "json")
    assert smsid == "16842079209571524017" and isinstance(smsid, str)


def test_smsid_keeps_leading_zeros_as_text() -> None:
    assert parse_submit(b'{"code":2,"smsid":"00000000000000000042"}', "json")[0] == "00000000000000000042"


def test_rejection_raises_registry_class_keeping_message() -> None:
    with pytest.raises(RateLimitedError) as info:
        parse_submit('{"code":4082,"msg":"超出同一手机号一天之内【5】条短信限制","smsid":"0"}'.encode(), "json")
    assert info.value.code == 4082 and "【5】" in info.value.message and not info.value.local
    with pytest.raises(ApiError) as info2:
        parse_submit(xml("SubmitResult", "<code>4081</code><msg>busy</msg><smsid>0</smsid>"), "xml")
    assert type(info2.value) is ApiError and info2.value.code == 4081


def test_balance_and_template() -> None:
    assert parse_balance(b'{"code":2,"msg":"\xe6\x9f\xa5\xe8\xaf\xa2\xe6\x88\x90\xe5\x8a\x9f","num":88}', "json")[0] == 88
    assert parse_balance(xml("GetNumResult", "<code>2</code><msg>查询成功</msg><num>88</num>"), "xml")[0] == 88
    assert parse_balance(b'{"code":2,"num":"88"}', "json")[0] == 88
    assert parse_template(b'{"code":2,"msg":"ok","templateid":1234}', "json")[0] == 1234
    assert parse_template(xml("AddTemplateResult", "<code>2</code><templateid>77</templateid>"), "xml")[0] == 77


# Malformed or ambiguous answers: (status, body, fmt, reason)
MALFORMED = [
    (200, b"<html><body>502 Bad Gateway</body></html>", "json", "missing_code"),
    (200, b"", "json", "malformed_answer"),
    (200, b"   \n", "xml", "malformed_answer"),
    (200, b'<?xml version="1.0"?><SubmitResult><code>2</code><msg>ok', "xml", "malformed_answer"),
    (200, b'<!DOCTYPE r [<!ENTITY a "x">]><SubmitResult><code>&a;</code></SubmitResult>', "xml", "malformed_answer"),
    (200, b'<?xml version="1.0"?><!DOCTYPE SubmitResult SYSTEM "http://evil/x.dtd"><SubmitResult><code>2</code></SubmitResult>', "xml", "malformed_answer"),
    (200, b'[{"code":2,"smsid":"1"}]', "json", "malformed_answer"),
    (200, b'{"code":"two","smsid":"1"}', "json", "malformed_answer"),
    (200, b'{"code":null,"smsid":"1"}', "json", "malformed_answer"),
    (200, b'{"code":true,"smsid":"1"}', "json", "malformed_answer"),
    (200, b'{"code":2.5,"smsid":"1"}', "json", "malformed_answer"),
    (200, b'{"code":2,"msg":"ok"}', "json", "missing_smsid"),
    (200, b'{"code":2,"msg":"ok","smsid":"0"}', "json", "missing_smsid"),
    (200, b'{"code":2,"msg":"ok","smsid":""}', "json", "missing_smsid"),
    (200, b'{"msg":"ok","smsid":"123"}', "json", "missing_code"),
    (500, b'{"code":2,"msg":"ok","smsid":"16842079209571524017"}', "json", "http_status"),
    (302, b"", "json", "http_status"),
    (404, b"Not Found", "xml", "http_status"),
    (200, b"\xff\xfe\x00garbage", "json", "malformed_answer"),
    (200, b"\xff\xfe<\x00", "xml", "malformed_answer"),
    (200, b'{"code":2,"smsid":"1"', "json", "malformed_answer"),
    (200, b"<SubmitResult><code><x>2</x></code></SubmitResult>", "xml", "malformed_answer"),
    (200, b"OK", "xml", "malformed_answer"),
]


@pytest.mark.parametrize(("status", "body", "fmt", "reason"), MALFORMED)
def test_malformed_answers_are_protocol_errors(status: int, body: bytes, fmt: Format, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_submit(body, fmt, status_code=status)
    assert info.value.reason == reason
    assert info.value.status_code == status
    assert len(info.value.excerpt) <= 121


def test_billion_laughs_is_refused() -> None:
    body = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
            b"<SubmitResult><code>&lol2;</code></SubmitResult>")
    with pytest.raises(ProtocolError):
        parse_answer(body, "xml")


@given(st.binary(max_size=300), st.sampled_from(["json", "xml"]), st.sampled_from([200, 500]))
def test_any_bytes_give_a_result_or_a_typed_error(body: bytes, fmt: Format, status: int) -> None:
    try:
        smsid, _ = parse_submit(body, fmt, status_code=status)
    except (ProtocolError, ApiError):
        return
    assert isinstance(smsid, str) and smsid.strip("0")


@given(st.one_of(st.integers(), st.text(max_size=8), st.none(), st.booleans(), st.floats(allow_nan=False)))
def test_json_code_field_any_type(code: object) -> None:
    import json

    body = json.dumps({"code": code, "msg": "m", "smsid": "16842079209571524017"}).encode()
    try:
        parse_submit(body, "json")
    except (ProtocolError, ApiError):
        pass


# -- #12: nothing but ProtocolError / ApiError, whatever the numbers and encodings ------------

HUGE = "7" * 5000  # over Python's int-string conversion limit (4,300 digits)


@pytest.mark.parametrize(
    "body",
    [
        f'{{"code":"{HUGE}","msg":"m","smsid":"{SMSID}"}}'.encode(),
        xml("SubmitResult", f"<code>{HUGE}</code><smsid>{SMSID}</smsid>"),
        f'{{"code":" {HUGE} "}}'.encode(),
    ],
)
def test_code_over_the_int_conversion_limit_is_a_protocol_error(body: bytes) -> None:
    # Before #12: ValueError (Exceeds the limit (4300 digits) for integer string conversion).
    with pytest.raises(ProtocolError) as info:
        parse_submit(body, "json")
    assert info.value.reason == "malformed_answer" and "code" in str(info.value)


def test_num_and_templateid_over_the_int_conversion_limit_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError):
        parse_balance(f'{{"code":2,"num":"{HUGE}"}}'.encode(), "json")
    with pytest.raises(ProtocolError):
        parse_balance(xml("GetNumResult", f"<code>2</code><num>{HUGE}</num>"), "xml")
    with pytest.raises(ProtocolError):
        parse_template(xml("AddTemplateResult", f"<code>2</code><templateid>{HUGE}</templateid>"), "xml")


@pytest.mark.parametrize("code", ["4" * 4000, "1234567890", "-1", "-4082"])
def test_numbers_that_cannot_be_a_code_are_protocol_errors(code: str) -> None:
    # Before #12 these were rejections (ApiError with that code): "not sent", though nobody
    # can say what the server did.
    for body in (f'{{"code":{code}}}'.encode(), xml("SubmitResult", f"<code>{code}</code>")):
        with pytest.raises(ProtocolError):
            parse_submit(body, "json")


def test_codes_and_counts_at_their_bounds_are_read() -> None:
    with pytest.raises(ApiError) as info:
        parse_submit(b'{"code":"123456789","msg":"new"}', "json")
    assert info.value.code == 123456789
    assert parse_balance(b'{"code":2,"num":"999999999999999999"}', "json")[0] == 10**18 - 1
    assert parse_balance(b'{"code":2,"num":0}', "json")[0] == 0
    with pytest.raises(ProtocolError):
        parse_balance(b'{"code":2,"num":"1000000000000000000"}', "json")
    with pytest.raises(ProtocolError):
        parse_balance(b'{"code":2,"num":-5}', "json")


@given(
    st.one_of(
        st.text(alphabet="0123456789", min_size=1, max_size=30),
        st.integers(4200, 6000).map(lambda n: "9" * n),  # around the int-string conversion limit
    ),
    st.sampled_from(["code", "num", "templateid"]),
)
def test_digit_strings_of_any_length(digits: str, field: str) -> None:
    code = digits if field == "code" else "2"
    body = f'{{"code":"{code}","num":"{digits}","templateid":"{digits}","smsid":"{SMSID}"}}'.encode()
    parsers: dict[str, Callable[[bytes, Format], object]] = {
        "code": parse_submit, "num": parse_balance, "templateid": parse_template
    }
    parse = parsers[field]
    try:
        parse(body, "json")
    except (ProtocolError, ApiError):
        pass


@pytest.mark.parametrize("encoding", ["no-such-encoding", "undefined", "base64", "rot13", "utf-16",
                                      "unicode_escape", "x" * 300, "utf\x008"])
def test_xml_declaring_an_unknown_or_unusable_encoding_is_a_protocol_error(encoding: str) -> None:
    # Before #12: LookupError (unknown names, base64, rot13) and, where warnings are errors,
    # DeprecationWarning (unicode_escape reading "\]").
    body = xml("SubmitResult", SUBMIT_OK).replace(b'encoding="utf-8"', f'encoding="{encoding}"'.encode())
    for fmt in ("json", "xml"):
        with pytest.raises(ProtocolError) as info:
            parse_submit(body, fmt)
        assert info.value.reason == "malformed_answer"


@pytest.mark.parametrize(("encoding", "declared"), [("gbk", "gbk"), ("gb18030", "GB18030"),
                                                    ("big5", "big5"), ("latin-1", "ISO-8859-1")])
def test_xml_in_the_encoding_its_declaration_names_is_read(encoding: str, declared: str) -> None:
    # Before #12: gbk and gb18030 were refused (expat reads no multi-byte encoding) and a
    # latin-1 answer was read as UTF-8 bytes declared latin-1 (mojibake).
    msg = "é ok" if encoding == "latin-1" else "提交成功"
    body = xml("SubmitResult", f"<code>2</code><msg>{msg}</msg><smsid>{SMSID}</smsid>").decode()
    body = body.replace('encoding="utf-8"', f"encoding='{declared}'")
    assert parse_submit(body.encode(encoding), "xml") == (SMSID, msg)


def test_xml_in_the_wrong_declared_encoding_is_a_protocol_error() -> None:
    body = xml("SubmitResult", SUBMIT_OK).replace(b'encoding="utf-8"', b'encoding="ascii"')
    with pytest.raises(ProtocolError):
        parse_submit(body, "xml")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le",
                                      "utf-32-be", "utf-8-sig"])
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_utf16_and_utf32_answers_are_read_with_or_without_a_bom(encoding: str, fmt: Format) -> None:
    text = xml("SubmitResult", SUBMIT_OK).decode().replace('encoding="utf-8"', 'encoding="utf-16"')
    assert parse_submit(text.encode(encoding), fmt) == (SMSID, "提交成功")
    json_text = f'{{"code":2,"msg":"提交成功","smsid":"{SMSID}"}}'
    assert parse_submit(json_text.encode(encoding), fmt) == (SMSID, "提交成功")


@pytest.mark.parametrize(
    "body",
    [
        b'{"code":2,"smsid":"1\x00"}',
        b"<SubmitResult><code>2</code><smsid>1\x00</smsid></SubmitResult>",
        b"<SubmitResult><code>2</code><smsid>&#0;</smsid></SubmitResult>",
        b"<SubmitResult><code>2</code><smsid>&#xD800;</smsid></SubmitResult>",
        b"<SubmitResult><code>&unknown;</code></SubmitResult>",
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b"[" * 100_000,
        b"<a>" + b"<b>" * 20_000 + b"</b>" * 20_000 + b"</a>",
        b'{"code":1e999,"smsid":"1"}',
        b'"just a string"',
        b"null",
        b'{"code":{"nested":2}}',
        b'{"code":[2]}',
    ],
)
def test_odd_bodies_are_protocol_errors(body: bytes) -> None:
    for fmt in ("json", "xml"):
        with pytest.raises(ProtocolError):
            parse_submit(body, fmt)


def test_non_string_msg_is_read_as_empty() -> None:
    for msg in ("123", "null", "[1]", '{"a":1}', "true"):
        assert parse_submit(f'{{"code":2,"msg":{msg},"smsid":"{SMSID}"}}'.encode(), "json") == (SMSID, "")
