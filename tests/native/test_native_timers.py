"""The native backend's timers (#19): one lazily re-armed timer per connection enforces
both the read timeout and the call's deadline (``own_deadline``), and the write gate
keeps its waits within that deadline.

The timeouts here are real (loopback server in the test's loop, never answering), a
fraction of a second each; every wait is bounded by ``anyio.fail_after``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from ihuyi_async import DeliveryUnknownError, FakeClock, IhuyiClient, TransportError
from ihuyi_async._native import NativeTransport
from ihuyi_async._transport import WireError

from .servers import PlainServer

pytestmark = pytest.mark.anyio

TRIAL = "您的验证码是：1234。请不要把验证码泄露给其他人。"
MOBILE = "13800138000"


@pytest.fixture(params=["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if isinstance(request.param, tuple):
        pytest.importorskip("uvloop")
    return request.param


@pytest.fixture
async def server() -> AsyncIterator[PlainServer]:
    async with PlainServer() as srv:
        yield srv


def client(url: str, **kwargs: Any) -> IhuyiClient:
    return IhuyiClient("APIID", "KEY", base_url=url, backend="native", limiter=None, **kwargs)


async def test_read_timeout_on_a_kept_alive_connection(server: PlainServer) -> None:
    """The first answer leaves the connection's timer armed for later; the second request
    is never answered: the read timeout still ends it (maybe sent), on the same connection."""
    async with client(server.url, timeout=httpx.Timeout(5.0, read=0.2), deadline=30) as c:
        assert (await c.send(MOBILE, TRIAL)).smsid
        server.mode = "hang"
        with anyio.fail_after(5), pytest.raises(DeliveryUnknownError) as info:
            await c.send(MOBILE, TRIAL)
        assert info.value.reason == "read_timeout"
        server.mode = "ok"
        assert (await c.send(MOBILE, TRIAL)).smsid  # a new connection
    assert (server.seen, server.opened) == (3, 2)


async def test_the_deadline_ends_an_answer_before_the_read_timeout(server: PlainServer) -> None:
    async with client(server.url, timeout=httpx.Timeout(30.0), deadline=0.3) as c:
        assert (await c.send(MOBILE, TRIAL)).smsid  # its timer is due in 0.3 s: re-armed earlier
        server.mode = "hang"
        with anyio.fail_after(5), pytest.raises(DeliveryUnknownError) as info:
            await c.send(MOBILE, TRIAL)
        assert info.value.reason == "deadline"
        assert "0.3 s deadline" in str(info.value.detail)
        (origin,) = _wire(c)._origins.values()
        assert origin.count == 0 and not origin.idle  # the hung connection was dropped
    assert server.seen == 2


async def test_the_deadline_while_connecting_is_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connect that never completes: the deadline (before any write) is "not sent"."""

    async def never(*args: Any, **kwargs: Any) -> Any:
        await asyncio.Event().wait()

    async with client("http://127.0.0.1:9", timeout=httpx.Timeout(30.0), deadline=0.2) as c:
        monkeypatch.setattr(asyncio.get_running_loop(), "create_connection", never)
        with anyio.fail_after(5), pytest.raises(TransportError) as info:
            await c.send(MOBILE, TRIAL)
        assert type(info.value) is TransportError  # not a DeliveryUnknownError
        assert "deadline" in str(info.value) and "before the request was written" in str(info.value)
        (origin,) = _wire(c)._origins.values()
        assert origin.count == 0  # the slot came back


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_warm_connection_schedules_no_timer_per_send(
    server: PlainServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with client(server.url, timeout=httpx.Timeout(5.0), deadline=10) as c:
        await c.send(MOBILE, TRIAL)  # opens the connection and arms its timer
        loop = asyncio.get_running_loop()
        scheduled: list[float] = []
        call_at = loop.call_at

        def counting(when: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            scheduled.append(when)
            return call_at(when, *args, **kwargs)

        monkeypatch.setattr(loop, "call_at", counting)
        for _ in range(20):
            assert (await c.send(MOBILE, TRIAL)).smsid
    assert scheduled == []  # each send's due date is later than the armed timer's
    assert server.opened == 1


async def test_the_write_gate_keeps_within_the_deadline() -> None:
    """A number written a moment ago: the spacing wait (1.05 s on the client's clock) ends
    at the call's deadline, as ``WireError("deadline")`` before anything was written."""
    clock = FakeClock(1767240000.0)  # never advances by itself: the wait would last for ever
    c = IhuyiClient("APIID", "KEY", clock=clock, backend="native")
    await c._space_write(MOBILE)
    end = asyncio.get_running_loop().time() + 0.05
    with anyio.fail_after(5), pytest.raises(WireError) as info:
        await c._space_writes((MOBILE,), None, end)
    assert (info.value.reason, info.value.written) == ("deadline", False)
    await c._space_writes(("13800138001",), None, end)  # another number: nothing to wait for
    await c.aclose()


def _wire(c: IhuyiClient) -> NativeTransport:
    wire = c._wire
    assert isinstance(wire, NativeTransport)
    return wire
