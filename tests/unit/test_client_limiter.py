"""The client and the limiter together: what spends, keeps, refunds and syncs a slot."""

from __future__ import annotations

import anyio
import httpx
import pytest

import ihuyi_async as ih
from ihuyi_async import FakeClock, IhuyiClient, RetryPolicy
from ihuyi_async.limiter import PER_SECOND_MARGIN, Limiter

pytestmark = pytest.mark.anyio

TEXT = "您的订单已发货。"
NOW = 1767240000.0  # 2026-01-01 12:00:00 UTC+8


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def setup(respond: object, clock: FakeClock | None = None) -> tuple[IhuyiClient, Limiter, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    clock = clock or FakeClock(NOW, auto_advance=True)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if isinstance(respond, BaseException):
            raise respond
        return httpx.Response(200, json=respond)

    limiter = Limiter(clock=clock)
    client = IhuyiClient("APIID", "KEY", transport=httpx.MockTransport(handler), clock=clock,
                         limiter=limiter, retry=RetryPolicy(max_attempts=1))
    return client, limiter, seen


OK = {"code": 2, "msg": "提交成功", "smsid": "16842079209571524017"}


async def test_default_limiter_is_on_and_uses_client_clock() -> None:
    clock = FakeClock(NOW)
    client = IhuyiClient("APIID", "KEY", clock=clock, transport=httpx.MockTransport(lambda r: httpx.Response(200, json=OK)))
    assert isinstance(client.limiter, Limiter) and client.limiter.clock is clock
    await client.aclose()


async def test_local_validation_spends_no_token() -> None:
    client, limiter, seen = setup(OK)
    async with client:
        with pytest.raises(ih.ContentRejectedError):
            await client.send("13800138000", "bad 😀")
    assert limiter.statistics().acquired == 0 and seen == []


async def test_daily_quota_refuses_sixth_without_request() -> None:
    client, limiter, seen = setup(OK)
    async with client:
        sent = [await client.send("13800138000", f"{TEXT}{i}") for i in range(5)]
        with pytest.raises(ih.LocalRateLimitError) as info:
            await client.send("13800138000", TEXT + "6")
    assert len(seen) == 5
    assert info.value.code == 4082 and info.value.resets_at is not None
    assert info.value.resets_at.isoformat() == "2026-01-02T00:00:00+08:00"
    # paced: one per second plus the margin (the provider counts arrivals)
    times = [s.sent_at.timestamp() for s in sent]
    assert all(b - a >= 1.0 + PER_SECOND_MARGIN - 1e-6 for a, b in zip(times, times[1:], strict=False))


async def test_the_default_limiter_spaces_a_numbers_sends_by_the_margin() -> None:
    clock = FakeClock(NOW, auto_advance=True)
    seen: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(clock.time())
        return httpx.Response(200, json=OK)

    async with IhuyiClient("APIID", "KEY", transport=httpx.MockTransport(handler), clock=clock) as client:
        for i in range(3):
            await client.send("13800138000", f"{TEXT}{i}")
    assert [b - a for a, b in zip(seen, seen[1:], strict=False)] == pytest.approx([1.2, 1.2])


async def test_provider_rejection_refunds_slot() -> None:
    client, limiter, seen = setup({"code": 4051, "msg": "剩余条数不足", "smsid": "0"})
    async with client:
        for _ in range(7):
            with pytest.raises(ih.AccountError):
                await client.send("13800138000", TEXT)
    assert limiter.statistics().refunded == 7
    assert len(seen) == 7  # quota of 5 never used up: every slot came back


async def test_provider_rate_limit_syncs_local_state() -> None:
    client, limiter, seen = setup({"code": 4082, "msg": "超出同一手机号一天之内【5】条短信限制", "smsid": "0"})
    async with client:
        with pytest.raises(ih.RateLimitedError) as first:
            await client.send("13800138000", TEXT)
        assert not first.value.local
        with pytest.raises(ih.LocalRateLimitError) as second:
            await client.send("13800138000", TEXT + "!")
    assert second.value.code == 4082 and len(seen) == 1
    assert limiter.statistics().observed == 1 and limiter.statistics().refunded == 0


async def test_unknown_outcome_keeps_slot() -> None:
    client, limiter, seen = setup({"code": 2, "msg": "ok"})  # no smsid: unknown
    async with client:
        for i in range(5):
            with pytest.raises(ih.DeliveryUnknownError):
                await client.send("13800138000", f"{TEXT}{i}")
        with pytest.raises(ih.LocalRateLimitError):
            await client.send("13800138000", TEXT)
    assert limiter.statistics().refunded == 0 and len(seen) == 5


async def test_not_sent_refunds_slot() -> None:
    client, limiter, seen = setup(httpx.ConnectError("refused"))
    async with client:
        for _ in range(6):
            with pytest.raises(ih.TransportError):
                await client.send("13800138000", TEXT)
    assert limiter.statistics().refunded == 6 and len(seen) == 6


async def test_cancelled_in_flight_keeps_slot() -> None:
    clock = FakeClock(NOW, auto_advance=True)
    limiter = Limiter(clock=clock)
    started = anyio.Event()

    class Hanging(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            started.set()
            await anyio.sleep_forever()
            raise AssertionError

    async with IhuyiClient("APIID", "KEY", transport=Hanging(), clock=clock, limiter=limiter) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.send, "13800138000", TEXT)
            await started.wait()
            tg.cancel_scope.cancel()
    stats = limiter.statistics()
    assert stats.acquired == 1 and stats.refunded == 0
