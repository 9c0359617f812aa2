import pytest
from hypothesis import given
from hypothesis import strategies as st

from ihuyi_async import ApiError, ProtocolError, RateLimitedError
from ihuyi_async._parsing import parse_answer, parse_balance, parse_submit, parse_template

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
def test_malformed_answers_are_protocol_errors(status: int, body: bytes, fmt: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_submit(body, fmt, status_code=status)  # type: ignore[arg-type]
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
def test_any_bytes_give_a_result_or_a_typed_error(body: bytes, fmt: str, status: int) -> None:
    try:
        smsid, _ = parse_submit(body, fmt, status_code=status)  # type: ignore[arg-type]
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
