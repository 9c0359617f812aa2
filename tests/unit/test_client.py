"""IhuyiClient through httpx mock transports: wire format, outcomes, secrets, lifecycle."""

from __future__ import annotations

import gc
import hashlib
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import anyio
import httpx
import pytest

import ihuyi_async as ih
from ihuyi_async import FakeClock, IhuyiClient, RetryPolicy

pytestmark = pytest.mark.anyio

KEY = "S3CRETKEY0123456789abcdef"
SMSID = "16842079209571524017"
TEXT = "您的验证码是：1234。请不要把验证码泄露给其他人。"
NOW = 1767240000


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Recorder:
    def __init__(self, respond: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.respond = respond or (lambda r: httpx.Response(200, json={"code": 2, "msg": "提交成功", "smsid": SMSID}))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)

    def form(self, i: int = -1) -> dict[str, str]:
        return dict(parse_qsl(self.requests[i].content.decode(), keep_blank_values=True))


def make(rec: Recorder, **kw: Any) -> IhuyiClient:
    kw.setdefault("limiter", None)
    kw.setdefault("clock", FakeClock(NOW, auto_advance=True))
    return IhuyiClient("APIID", KEY, transport=httpx.MockTransport(rec), **kw)


def md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


async def test_legacy_submit_exact_fields() -> None:
    rec = Recorder()
    async with make(rec) as client:
        sent = await client.send("13800138000", TEXT)
    assert sent.smsid == SMSID and sent.segments == 1 and sent.mobile == "13800138000"
    req = rec.requests[0]
    assert req.method == "POST"
    assert str(req.url) == "https://106.ihuyi.com/webservice/sms.php?method=Submit"
    assert req.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert rec.form() == {
        "account": "APIID", "password": md5("APIID" + KEY + "13800138000" + TEXT + str(NOW)),
        "mobile": "13800138000", "content": TEXT, "time": str(NOW), "format": "json",
    }
    assert list(rec.form()) == ["account", "password", "mobile", "content", "time", "format"]


async def test_json_flavour_submit_and_template() -> None:
    rec = Recorder()
    async with make(rec, flavour="json") as client:
        await client.send("13800138000", TEXT)
        sent = await client.send_template("13800138000", template_id=1, variables=["1234"])
    assert str(rec.requests[0].url) == "https://api.ihuyi.com/sms/Submit.json"
    assert rec.form(0) == {"account": "APIID", "password": md5("APIID" + KEY + "13800138000" + TEXT + str(NOW)),
                           "mobile": "13800138000", "content": TEXT, "time": str(NOW)}
    assert rec.form(1) == {"account": "APIID", "password": md5("APIID" + KEY + "13800138000" + "1234" + str(NOW)),
                           "mobile": "13800138000", "content": "1234", "time": str(NOW), "templateid": "1"}
    assert sent.template_id == 1 and sent.segments == 1


async def test_template_with_several_variables_signs_joined_content() -> None:
    rec = Recorder()
    async with make(rec, flavour="json", templates={7: "订单【变量】已由【变量】签收，金额【变量】"}) as client:
        sent = await client.send_template("13800138000", template_id=7, variables=["20180515006", "张三", "100元"])
        unknown = await client.send_template("13800138000", template_id=99, variables=["x"])
    assert rec.form(0)["content"] == "20180515006|张三|100元"
    assert rec.form(0)["password"] == md5("APIID" + KEY + "13800138000" + "20180515006|张三|100元" + str(NOW))
    assert sent.segments == 1 and unknown.segments is None


async def test_template_unsupported_on_legacy_and_bad_variables() -> None:
    rec = Recorder()
    async with make(rec) as client:
        with pytest.raises(ih.UnsupportedOperationError, match="flavour='json'"):
            await client.send_template("13800138000", template_id=1, variables=["1234"])
    async with make(rec, flavour="json") as client:
        for bad in ([], [""], ["12|34"]):
            with pytest.raises(ValueError):
                await client.send_template("13800138000", template_id=1, variables=bad)
        with pytest.raises(ValueError):
            await client.send_template("13800138000", template_id=0, variables=["1"])
        with pytest.raises(ih.UnsupportedOperationError):
            await client.add_template("x【变量】")
    assert rec.requests == []


async def test_xml_format_and_plain_signing() -> None:
    body = '<?xml version="1.0" encoding="utf-8"?>\n<SubmitResult xmlns="http://106.ihuyi.com/">\n<code>2</code>\n<msg>提交成功</msg>\n<smsid>14745625541233112231</smsid>\n</SubmitResult>'
    rec = Recorder(lambda r: httpx.Response(200, text=body))
    async with make(rec, response_format="xml", signing="plain") as client:
        sent = await client.send("13800138000", "hello")
    assert sent.smsid == "14745625541233112231"
    assert rec.form() == {"account": "APIID", "password": KEY, "mobile": "13800138000", "content": "hello", "format": "xml"}


async def test_balance_and_add_template_fields() -> None:
    def respond(r: httpx.Request) -> httpx.Response:
        if "GetNum" in str(r.url):
            return httpx.Response(200, json={"code": 2, "msg": "查询成功", "num": "321"})
        return httpx.Response(200, json={"code": 2, "msg": "提交成功", "templateid": 4321})

    rec = Recorder(respond)
    async with make(rec) as client:
        bal = await client.balance()
        tpl = await client.add_template("您的验证码是：【变量】。请不要把验证码泄露给其他人。")
    assert bal.num == 321 and tpl.template_id == 4321
    assert str(rec.requests[0].url).endswith("sms.php?method=GetNum")
    assert rec.form(0) == {"account": "APIID", "password": md5("APIID" + KEY + str(NOW)), "time": str(NOW), "format": "json"}
    assert str(rec.requests[1].url).endswith("sms.php?method=AddTemplate")
    assert rec.form(1) == {"account": "APIID", "password": md5(KEY),
                           "content": "您的验证码是：【变量】。请不要把验证码泄露给其他人。", "format": "json"}


@pytest.mark.parametrize(("mobile", "content", "cls", "code"), [
    ("", TEXT, ih.InvalidRequestError, 403), ("13800138000", "  ", ih.InvalidRequestError, 404),
    ("12345", TEXT, ih.InvalidRequestError, 406), ("13800138000", "x" * 301, ih.ContentRejectedError, 4073),
    ("13800138000", "hi 🎉", ih.ContentRejectedError, 4074),
])
async def test_local_validation_makes_no_request(mobile: str, content: str, cls: type[ih.ApiError], code: int) -> None:
    rec = Recorder()
    async with make(rec) as client:
        with pytest.raises(cls) as info:
            await client.send(mobile, content)
    assert info.value.code == code and info.value.local
    assert rec.requests == []


async def test_json_flavour_allows_500_characters() -> None:
    rec = Recorder()
    async with make(rec, flavour="json") as client:
        sent = await client.send("13800138000", "x" * 500)
        with pytest.raises(ih.ContentRejectedError):
            await client.send("13800138000", "x" * 501)
    assert sent.segments == 8 and len(rec.requests) == 1


UNKNOWN_CASES = [
    (lambda r: httpx.Response(200, text="<html>oops</html>"), "missing_code"),
    (lambda r: httpx.Response(200, json={"code": 2, "msg": "ok"}), "missing_smsid"),
    (lambda r: httpx.Response(200, json={"code": 2, "msg": "ok", "smsid": "0"}), "missing_smsid"),
    (lambda r: httpx.Response(500, json={"code": 2, "msg": "ok", "smsid": SMSID}), "http_status"),
    (lambda r: httpx.Response(302, headers={"location": "https://elsewhere/"}), "http_status"),
    (lambda r: httpx.Response(200, content=b"{" * 70000), "oversized"),
    (lambda r: httpx.Response(200, content=b'{"code":2,'), "malformed_answer"),
]


@pytest.mark.parametrize(("respond", "reason"), UNKNOWN_CASES)
async def test_ambiguous_answers_are_unknown(respond: Callable[[httpx.Request], httpx.Response], reason: str) -> None:
    rec = Recorder(respond)
    async with make(rec) as client:
        with pytest.raises(ih.DeliveryUnknownError) as info:
            await client.send("13800138000", TEXT)
    err = info.value
    assert err.reason == reason and err.mobile_masked == "138****8000"
    assert err.sent_at is not None and len(err.content_digest) == 12
    assert isinstance(err.__cause__, ih.ProtocolError)
    assert len(rec.requests) == 1  # never retried


@pytest.mark.parametrize(("exc", "reason"), [
    (httpx.ReadTimeout("t"), "read_timeout"), (httpx.RemoteProtocolError("gone"), "disconnected"),
    (httpx.ReadError("reset"), "read_failed"), (httpx.WriteError("broken"), "write_failed"),
])
async def test_failures_after_write_are_unknown_and_not_retried(exc: Exception, reason: str) -> None:
    def respond(r: httpx.Request) -> httpx.Response:
        raise exc

    rec = Recorder(respond)
    async with make(rec) as client:
        with pytest.raises(ih.DeliveryUnknownError) as info:
            await client.send("13800138000", TEXT)
    assert info.value.reason == reason and len(rec.requests) == 1


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ConnectTimeout("t"), httpx.PoolTimeout("t")])
async def test_unsent_failures_are_transport_errors_and_retried(exc: Exception) -> None:
    def respond(r: httpx.Request) -> httpx.Response:
        raise exc

    rec = Recorder(respond)
    async with make(rec, retry=RetryPolicy(max_attempts=3, backoff=0)) as client:
        with pytest.raises(ih.TransportError) as info:
            await client.send("13800138000", TEXT)
    assert info.value.sent is False and "not sent" in str(info.value)
    assert len(rec.requests) == 3
    async with make(rec, retry=RetryPolicy(retry_unsent_sends=False)) as client:
        with pytest.raises(ih.TransportError):
            await client.send("13800138000", TEXT)
    assert len(rec.requests) == 4


async def test_balance_retries_transient_failures() -> None:
    calls = []

    def respond(r: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ReadTimeout("slow")
        if len(calls) == 2:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, json={"code": 2, "num": 5})

    async with make(Recorder(respond), retry=RetryPolicy(max_attempts=3, backoff=0.1)) as client:
        assert (await client.balance()).num == 5
    async with make(Recorder(lambda r: httpx.Response(200, json={"code": 405, "msg": "bad"}))) as client:
        with pytest.raises(ih.AuthenticationError):
            await client.balance()


async def test_rejection_codes_raise_registry_classes() -> None:
    rec = Recorder(lambda r: httpx.Response(200, json={"code": 4051, "msg": "剩余条数不足", "smsid": "0"}))
    async with make(rec) as client:
        with pytest.raises(ih.AccountError) as info:
            await client.send("13800138000", TEXT)
    assert info.value.code == 4051 and info.value.message == "剩余条数不足" and not info.value.local


async def test_key_never_observable(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    responses = iter([
        httpx.Response(200, json={"code": 2, "smsid": SMSID}),
        httpx.Response(200, json={"code": 40502, "msg": "动态密码校验失败"}),
        httpx.Response(200, text="garbage"),
    ])

    def respond(r: httpx.Request) -> httpx.Response:
        seen.append(str(r.url) + r.content.decode() + str(r.headers))
        return next(responses)

    client = make(Recorder(respond))
    observed = [repr(client), str(client)]
    async with client:
        observed.append(repr(await client.send("13800138000", TEXT)))
        for _ in range(2):
            try:
                await client.send("13800138000", TEXT)
            except ih.IhuyiError as exc:  # noqa: PERF203
                observed += [str(exc), repr(exc), repr(exc.__cause__), str(exc.__cause__)]
    observed += [r.getMessage() for r in caplog.records]
    blob = "\n".join(observed + seen)
    assert KEY not in blob and KEY[:10] not in blob
    assert "13800138000" not in "\n".join(observed)  # numbers are masked in logs, reprs, errors
    assert any("138****8000" in r.getMessage() for r in caplog.records)


async def test_user_http_client_is_left_open() -> None:
    rec = Recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(rec)) as mine:
        async with IhuyiClient("APIID", KEY, http_client=mine, limiter=None) as client:
            await client.send("13800138000", TEXT)
        assert client.is_closed and not mine.is_closed
        await mine.get("https://example.invalid/")  # still usable
    own = make(rec)
    async with own:
        assert own.http_client is not None
    assert own.http_client.is_closed


async def test_use_after_close_raises() -> None:
    client = make(Recorder())
    await client.aclose()
    await client.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await client.send("13800138000", TEXT)
    with pytest.raises(RuntimeError, match="closed"):
        await client.balance()


def test_use_from_another_loop_raises() -> None:
    client = make(Recorder())

    async def first() -> None:
        await client.send("13800138000", TEXT)

    async def second() -> None:
        await client.send("13800138000", TEXT)

    anyio.run(first)
    with pytest.raises(RuntimeError, match="another event loop"):
        anyio.run(second)
    anyio.run(client.aclose)
    gc.collect()


def test_constructor_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IHUYI_ACCOUNT", raising=False)
    monkeypatch.delenv("IHUYI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="IHUYI_ACCOUNT"):
        IhuyiClient(api_key="k")
    with pytest.raises(ValueError, match="IHUYI_API_KEY"):
        IhuyiClient("a")
    for kw in ({"flavour": "v2"}, {"response_format": "yaml"}, {"signing": "md5"},
               {"base_url": "https://h/webservice/sms.php"}, {"base_url": "ftp://h"},
               {"flavour": "json", "response_format": "xml"}, {"backend": "requests"}):
        with pytest.raises(ValueError):
            IhuyiClient("a", "k", limiter=None, **kw)  # type: ignore[arg-type]
    monkeypatch.setenv("IHUYI_ACCOUNT", "ENVID")
    monkeypatch.setenv("IHUYI_API_KEY", "ENVKEY")
    client = IhuyiClient(limiter=None, base_url="http://127.0.0.1:9")
    assert "ENVID" in repr(client) and "ENVKEY" not in repr(client)
