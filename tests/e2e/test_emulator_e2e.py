"""IhuyiClient <-> emulator end to end: in-process transport and a real loopback socket.

With ``limiter=None`` on the client, every refusal below comes from the emulator's
server-side rule, not from the client's own limiter.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl

import anyio
import httpx
import pytest
import respx

import ihuyi_async as ih
from ihuyi_async import FakeClock, IhuyiClient, RetryPolicy
from ihuyi_async.testing import Emulator, EmulatorServer, Limits, faults, mock_ihuyi

pytestmark = pytest.mark.anyio

ACCOUNT, KEY = "APIID", "APIKEY"
TRIAL = "您的验证码是：1234。请不要把验证码泄露给其他人。"
MOBILE = "13800138000"
START = 1767240000.0

ClientFactory = Callable[..., IhuyiClient]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["transport", "loopback", "native"])
def way(request: pytest.FixtureRequest, anyio_backend: str) -> str:
    if request.param == "native" and anyio_backend != "asyncio":
        pytest.skip("backend='native' runs on asyncio only")
    return str(request.param)


@pytest.fixture
async def connect(way: str) -> AsyncIterator[Callable[..., Any]]:
    """Build (emulator, client) pairs over the chosen way in (``native``: loopback on the
    native backend); closes everything after."""
    servers: list[EmulatorServer] = []
    clients: list[IhuyiClient] = []

    async def build(em: Emulator, **client_kwargs: Any) -> IhuyiClient:
        kwargs: dict[str, Any] = {"clock": em.clock, "limiter": None, **client_kwargs}
        if way in ("loopback", "native"):
            server = EmulatorServer(em)
            await server.__aenter__()
            servers.append(server)
            kwargs["base_url"] = server.url
            if way == "native":
                kwargs.setdefault("backend", "native")
        else:
            kwargs["transport"] = em.transport
        client = IhuyiClient(ACCOUNT, KEY, **kwargs)
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aclose()
    for server in servers:
        await server.__aexit__(None, None, None)


def make(**kwargs: Any) -> Emulator:
    kwargs.setdefault("clock", FakeClock(START))
    return Emulator({ACCOUNT: KEY}, kwargs.pop("balance", 1000), **kwargs)


def advance(em: Emulator, seconds: float) -> None:
    assert isinstance(em.clock, FakeClock)
    em.clock.advance(seconds)


async def refused(coro: Any) -> ih.ApiError:
    with pytest.raises(ih.ApiError) as info:
        await coro
    assert info.value.local is False
    return info.value


# --------------------------------------------------------------------------- happy paths


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_send_and_balance_legacy(connect: Any, fmt: str) -> None:
    em = make()
    client = await connect(em, response_format=fmt)
    sent = await client.send(MOBILE, TRIAL)
    assert sent.smsid == em.messages[0].smsid and len(sent.smsid) == 20
    assert sent.segments == 1
    assert (await client.balance()).num == 999
    assert em.requests[0].fields["format"] == fmt
    assert em.requests[0].fields["password"] != KEY  # dynamic signing


async def test_send_template_json_flavour(connect: Any) -> None:
    em = make()
    client = await connect(em, flavour="json")
    sent = await client.send_template(MOBILE, template_id=1, variables=["4321"])
    assert sent.template_id == 1
    assert em.last_code_for(MOBILE) == "4321"
    assert em.messages[0].content == TRIAL.replace("1234", "4321")


async def test_add_template_review_then_strict_send(connect: Any) -> None:
    em = make(strict_templates=True)
    client = await connect(em)
    result = await client.add_template("您的订单【变量】已发货")
    assert em.templates[result.template_id].status == "pending"
    assert (await refused(client.send(MOBILE, "您的订单A100已发货"))).code == 4072
    em.approve_template(result.template_id)
    advance(em, 1)
    await client.send(MOBILE, "您的订单A100已发货")


async def test_plain_signing_is_accepted(connect: Any) -> None:
    em = make()
    client = await connect(em, signing="plain")
    await client.send(MOBILE, TRIAL)
    assert em.requests[0].fields["password"] == KEY


# --------------------------------------------------------------------------- one test per server-side rule


async def test_rule_4053_unknown_account(connect: Any) -> None:
    em = Emulator({"someone": "else"}, clock=FakeClock(START))
    client = await connect(em)
    error = await refused(client.send(MOBILE, TRIAL))
    assert error.code == 4053 and isinstance(error, ih.AuthenticationError)


async def test_rule_40502_wrong_key(connect: Any) -> None:
    em = Emulator({ACCOUNT: "the-real-key"}, clock=FakeClock(START))
    client = await connect(em)
    assert (await refused(client.send(MOBILE, TRIAL))).code == 40502


async def test_rule_40501_client_clock_off(connect: Any) -> None:
    em = make(time_window=300)
    client = await connect(em, clock=FakeClock(START - 600))
    assert (await refused(client.send(MOBILE, TRIAL))).code == 40501


async def test_rule_4030_blacklist(connect: Any) -> None:
    client = await connect(em := make(blacklist={MOBILE}))
    assert (await refused(client.send(MOBILE, TRIAL))).code == 4030
    assert em.messages == []


async def test_rule_4051_balance(connect: Any) -> None:
    em = make(balance=1)
    client = await connect(em)
    await client.send(MOBILE, TRIAL)
    advance(em, 1)
    assert (await refused(client.send(MOBILE, TRIAL))).code == 4051
    assert (await client.balance()).num == 0


async def test_rule_4072_strict_templates(connect: Any) -> None:
    client = await connect(make(strict_templates=True))
    assert (await refused(client.send(MOBILE, "不在模板里的内容"))).code == 4072


async def test_rule_4071_unknown_template(connect: Any) -> None:
    client = await connect(make(), flavour="json")
    assert (await refused(client.send_template(MOBILE, template_id=999, variables=["x"]))).code == 4071


async def test_rule_40722_variable_too_long(connect: Any) -> None:
    client = await connect(make(), flavour="json")
    error = await refused(client.send_template(MOBILE, template_id=1, variables=["123456789"]))
    assert error.code == 40722


async def test_rule_407_sensitive_words(connect: Any) -> None:
    client = await connect(make(sensitive_words=["代开发票"]))
    assert (await refused(client.send(MOBILE, "专业代开发票"))).code == 407


async def test_rule_4080_one_per_second(connect: Any) -> None:
    em = make()
    client = await connect(em)
    await client.send(MOBILE, "第一条通知")
    assert (await refused(client.send(MOBILE, "第二条通知"))).code == 4080


async def test_rule_4082_five_per_day(connect: Any) -> None:
    em = make()
    client = await connect(em)
    for i in range(5):
        await client.send(MOBILE, f"第{i}条通知")
        advance(em, 1)
    assert (await refused(client.send(MOBILE, "第六条通知"))).code == 4082


async def test_rule_4085_five_verifications_per_day(connect: Any) -> None:
    em = make()
    client = await connect(em)
    for i in range(5):
        await client.send(MOBILE, f"您的验证码是：{2000 + i}")
        advance(em, 1)
    assert (await refused(client.send(MOBILE, "您的验证码是：3000"))).code == 4085


async def test_rule_408_identical_content_then_blacklisted(connect: Any) -> None:
    em = make(limits=Limits(per_day=None, verification_per_day=None, identical_per_day=20))
    client = await connect(em)
    for _ in range(20):
        await client.send(MOBILE, "同样的内容")
        advance(em, 1)
    assert (await refused(client.send(MOBILE, "同样的内容"))).code == 408
    advance(em, 1)
    assert (await refused(client.send(MOBILE, "别的内容"))).code == 4030


# --------------------------------------------------------------------------- concurrency


async def test_1000_concurrent_sends_keep_balance_and_log_exact(connect: Any) -> None:
    em = make(balance=5000)
    client = await connect(em, limits=httpx.Limits(max_connections=50))
    results: list[ih.SendResult] = []
    texts = {i: ("通知" * (i % 3 * 40 + 1)) for i in range(1000)}  # 1, 2 or 3 segments

    async def one(i: int) -> None:
        results.append(await client.send(f"139{i:08d}", texts[i]))

    async with anyio.create_task_group() as tg:
        for i in range(1000):
            tg.start_soon(one, i)
    billed = sum(m.segments for m in em.messages)
    assert len(em.messages) == 1000
    assert billed == sum(r.segments or 0 for r in results)
    assert em.balance_of(ACCOUNT) == 5000 - billed
    assert {r.smsid for r in results} == {m.smsid for m in em.messages}
    assert len({m.smsid for m in em.messages}) == 1000


async def test_concurrent_sends_to_one_number_admit_exactly_one_per_second(connect: Any) -> None:
    em = make()
    client = await connect(em)
    outcomes: list[int] = []

    async def one(i: int) -> None:
        try:
            await client.send(MOBILE, f"通知{i}")
            outcomes.append(2)
        except ih.ApiError as exc:
            outcomes.append(exc.code)

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(one, i)
    assert sorted(outcomes) == [2] + [4080] * 49
    assert em.balance_of() == 999


# --------------------------------------------------------------------------- faults through the client


async def test_disconnect_after_processing_is_delivery_unknown(connect: Any) -> None:
    em = make()
    client = await connect(em)
    em.fail_next(faults.disconnect(), method="Submit")
    with pytest.raises(ih.DeliveryUnknownError):
        await client.send(MOBILE, TRIAL)
    assert len(em.messages) == 1  # the provider did take it
    em.verify()


async def test_http_5xx_on_submit_is_delivery_unknown(connect: Any) -> None:
    em = make()
    client = await connect(em)
    em.fail_next(faults.http_error(502), method="Submit")
    with pytest.raises(ih.DeliveryUnknownError):
        await client.send(MOBILE, TRIAL)
    assert em.messages == []


async def test_garbage_answer_is_delivery_unknown(connect: Any) -> None:
    em = make()
    client = await connect(em)
    em.fail_next(faults.garbage())
    with pytest.raises(ih.DeliveryUnknownError):
        await client.send(MOBILE, TRIAL)


async def test_hang_times_out_as_delivery_unknown(connect: Any) -> None:
    em = make()
    client = await connect(em, timeout=0.2)
    em.fail_next(faults.hang())
    with pytest.raises(ih.DeliveryUnknownError):
        await client.send(MOBILE, TRIAL)


async def test_getnum_retries_through_transient_faults(connect: Any) -> None:
    em = make(balance=7)
    client = await connect(em, retry=RetryPolicy(max_attempts=3, backoff=0))
    em.fail_next(faults.http_error(503), times=2, method="GetNum")
    assert (await client.balance()).num == 7
    assert [r.status for r in em.requests] == [503, 503, 200]


# --------------------------------------------------------------------------- pushes


class Receiver:
    """A tiny ASGI push receiver: records forms; fails the first ``fail`` pushes."""

    def __init__(self, fail: int = 0) -> None:
        self.forms: list[dict[str, str]] = []
        self.fail = fail
        self.arrived = anyio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.forms.append(dict(parse_qsl(body.decode())))
        ok = self.fail <= 0
        self.fail -= 1
        await send({"type": "http.response.start", "status": 200 if ok else 500, "headers": []})
        await send({"type": "http.response.body", "body": b"success" if ok else b"error"})
        if ok:
            self.arrived.set()


async def test_auto_receipts_reply_and_template_review_are_pushed() -> None:
    receiver = Receiver()
    em = make(receipt_url="http://app.test/sms/push", push_transport=httpx.ASGITransport(receiver))
    async with IhuyiClient(ACCOUNT, KEY, transport=em.transport, clock=em.clock, limiter=None) as c:
        sent = await c.send(MOBILE, TRIAL)
    assert em.pending_pushes == 1
    [receipt] = await em.flush_pushes()
    assert receipt.delivered and receipt.attempts == 1
    assert receiver.forms[0] == {
        "code": "2",
        "msg": "DELIVRD",
        "mobilephone": MOBILE,
        "smsid": sent.smsid,
        "report_time": "2026-01-01 12:00:00",
    }
    reply = await em.reply(MOBILE, "好的")
    assert reply.form["smsid"] == sent.smsid and reply.form["content"] == "好的"
    em.approve_template(em.add_template("模板【变量】", approved=False))
    [review] = await em.flush_pushes()
    assert review.form == {"templateid": "1001", "code": "2", "msg": "审核通过"}
    [failed] = await em.deliver(sent.smsid, code=0, msg="UNDELIV")
    assert failed.form["code"] == "0"
    assert len(em.pushes) == 4


async def test_push_retries_three_times_with_growing_waits() -> None:
    receiver = Receiver(fail=10)
    em = make(receipt_url="http://app.test/push", push_transport=httpx.ASGITransport(receiver),
              time_scale=0, auto_receipts=False)
    em.add_template("x【变量】")
    async with IhuyiClient(ACCOUNT, KEY, transport=em.transport, clock=em.clock, limiter=None) as c:
        await c.send(MOBILE, TRIAL)
    [record] = await em.deliver()
    assert not record.delivered
    assert record.attempts == 4
    assert record.waits == [60.0, 120.0, 180.0]
    assert record.outcomes == ["500 error"] * 4
    receiver.fail = 2
    [record] = await em.deliver(em.messages[0].smsid)
    assert record.delivered and record.attempts == 3


async def test_background_dispatcher_pushes_as_messages_are_accepted() -> None:
    receiver = Receiver()
    em = make(receipt_url="http://app.test/push", push_transport=httpx.ASGITransport(receiver))
    async with em.pushing():
        async with IhuyiClient(ACCOUNT, KEY, transport=em.transport, clock=em.clock) as c:
            await c.send(MOBILE, TRIAL)
        with anyio.fail_after(5):
            await receiver.arrived.wait()
    assert receiver.forms[0]["smsid"] == em.messages[0].smsid


async def test_deliver_needs_a_url() -> None:
    em = make()
    with pytest.raises(RuntimeError):
        await em.deliver()
    with pytest.raises(RuntimeError):
        await em.reply(MOBILE, "hi")


# --------------------------------------------------------------------------- respx and the serve command


async def test_respx_routes_the_provider_hosts_to_the_emulator() -> None:
    em = make()
    with respx.mock(assert_all_called=True) as router:
        route = mock_ihuyi(em, router)
        async with IhuyiClient(ACCOUNT, KEY, clock=em.clock, limiter=None) as client:
            sent = await client.send(MOBILE, TRIAL)
        async with IhuyiClient(ACCOUNT, KEY, flavour="json", clock=em.clock, limiter=None) as client:
            assert (await client.balance()).num == 999
    assert route.call_count == 2
    assert em.messages[0].smsid == sent.smsid


def test_serve_command_prints_the_port_and_answers() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ihuyi_async.testing", "serve", "--port", "0",
         "--account", "cli:secret", "--balance", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        response = httpx.post(
            f"http://127.0.0.1:{port}/sms/GetNum.json",
            data={"account": "cli", "password": "secret"},
            timeout=5,
        )
        assert response.json() == {"code": 2, "msg": "查询成功", "num": 5}
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert proc.returncode in (0, -15)  # uvicorn re-raises SIGTERM once shut down
