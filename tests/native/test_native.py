"""backend='native' (#19): written or not at the socket, pooled connections, TLS and verify=.

Loopback servers in the test's own event loop (``servers.PlainServer``), on the
asyncio loop and on uvloop. The shared fault matrix and cancellation trial run
this backend too (``tests/faults/``); here is what is specific to it.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from ihuyi_async import DeliveryUnknownError, IhuyiClient, TransportError
from ihuyi_async._native import NativeTransport, _Connection

from .servers import PlainServer

pytestmark = pytest.mark.anyio

TRIAL = "您的验证码是：1234。请不要把验证码泄露给其他人。"
MOBILE = "13800138000"
BACKENDS = ("httpx", "aiohttp", "native")


@pytest.fixture(params=["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if isinstance(request.param, tuple):
        pytest.importorskip("uvloop")
    return request.param


def client(url: str, backend: str = "native", **kwargs: Any) -> IhuyiClient:
    return IhuyiClient("APIID", "KEY", base_url=url, backend=backend, limiter=None, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def server() -> AsyncIterator[PlainServer]:
    async with PlainServer() as srv:
        yield srv


def native(c: IhuyiClient) -> NativeTransport:
    wire = c._wire
    assert isinstance(wire, NativeTransport)
    return wire


# ------------------------------------------------------------------ written or not


async def test_keep_alive_reuses_one_connection(server: PlainServer) -> None:
    async with client(server.url) as c:
        for _ in range(5):
            result = await c.send(MOBILE, TRIAL)
            assert result.smsid == "16842079209571524017"
    assert (server.seen, server.opened) == (5, 1)


async def test_server_close_racing_the_write_is_maybe_sent(
    server: PlainServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pooled connection passes the still-open check; the server closes it right
    then, before our bytes reach it: the request was handed to the socket, so the
    outcome is unknown (DeliveryUnknownError), never "not sent"."""
    async with client(server.url) as c:
        await c.send(MOBILE, TRIAL)
        checked = _Connection.usable

        def usable_then_closed(self: _Connection, now: float, expiry: float | None) -> bool:
            ok = checked(self, now, expiry)
            server.close_connections()  # the server gives up the connection as we write
            return ok

        monkeypatch.setattr(_Connection, "usable", usable_then_closed)
        with pytest.raises(DeliveryUnknownError) as info:
            await c.send(MOBILE, TRIAL)
        assert info.value.reason == "disconnected"
    assert server.seen == 1  # the server never read the second request: "maybe" is the truth


async def test_server_closing_after_reading_is_maybe_sent(server: PlainServer) -> None:
    async with client(server.url) as c:
        server.mode = "close_after_read"
        with pytest.raises(DeliveryUnknownError):
            await c.send(MOBILE, TRIAL)
    assert server.seen == 1


async def test_a_stale_pooled_connection_is_not_reused(server: PlainServer) -> None:
    """The server closed the idle connection: the next send opens a new one and is sent once."""
    server.mode = "ok_then_close"
    async with client(server.url) as c:
        await c.send(MOBILE, TRIAL)
        await server.closed.wait()
        server.mode = "ok"
        result = await c.send(MOBILE, TRIAL)
        assert result.smsid
    assert (server.seen, server.opened) == (2, 2)


async def test_an_expired_idle_connection_is_not_reused(server: PlainServer) -> None:
    async with client(server.url) as c:
        await c.send(MOBILE, TRIAL)
        (origin,) = native(c)._origins.values()
        (conn,) = origin.idle
        conn.idle_since -= 3600  # idle far longer than the keep-alive expiry
        await c.send(MOBILE, TRIAL)
        assert conn.lost and conn.transport is not None and conn.transport.is_closing()
    assert (server.seen, server.opened) == (2, 2)


async def test_refused_is_not_sent() -> None:
    async with PlainServer() as srv:
        url = srv.url
    async with client(url) as c:
        with pytest.raises(TransportError) as info:
            await c.send(MOBILE, TRIAL)
    error: Exception = info.value  # the type the call could raise, not the one caught
    assert not isinstance(error, DeliveryUnknownError)
    assert "not sent" in str(info.value)


async def test_pool_timeout_is_not_sent(server: PlainServer) -> None:
    """One connection, held by a send the server never answers: the second waits the pool
    timeout and is "not sent"; the slot comes back once the first ends."""
    import anyio

    server.mode = "close_after_read"
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    timeout = httpx.Timeout(5.0, pool=0.05)
    async with client(server.url, limits=limits, timeout=timeout) as c:
        outcomes: list[BaseException] = []
        ended = anyio.Event()
        server.mode = "ok"

        async def hold() -> None:
            try:
                await c.send(MOBILE, TRIAL)
            except Exception as exc:
                outcomes.append(exc)
            ended.set()

        wire = native(c)
        async with anyio.create_task_group() as tg:
            # occupy the only slot by hand: the pool is full for as long as we hold it
            (origin_conn) = await wire._acquire(wire._target(c._submit_url)[0])
            tg.start_soon(hold)
            with anyio.fail_after(5):
                await ended.wait()
            wire._release(wire._target(c._submit_url)[0], origin_conn)
        (exc,) = outcomes
        assert not isinstance(exc, DeliveryUnknownError) and isinstance(exc, TransportError)
        assert "pool_timeout" in str(exc)
        assert (await c.send(MOBILE, TRIAL)).smsid  # the slot is usable again
    assert server.seen == 1


# ------------------------------------------------------------------ TLS and verify=


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    yield str(path)


@pytest.fixture
async def tls_server(ca: trustme.CA) -> AsyncIterator[PlainServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    async with PlainServer(tls=context) as srv:
        yield srv


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["path", "context"])
async def test_verify_accepts_a_custom_ca(
    tls_server: PlainServer, ca: trustme.CA, ca_file: str, backend: str, how: str
) -> None:
    verify: Any = ca_file
    if how == "context":
        verify = ssl.create_default_context()
        ca.configure_trust(verify)
    async with client(tls_server.url, backend, verify=verify) as c:
        assert (await c.send(MOBILE, TRIAL)).smsid
        assert (await c.send(MOBILE, TRIAL)).smsid
    assert tls_server.seen == 2


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_unverified_certificate_is_not_sent(tls_server: PlainServer, backend: str) -> None:
    """The system CAs do not know the test CA: the handshake fails, nothing was written."""
    async with client(tls_server.url, backend) as c:
        with pytest.raises(TransportError) as info:
            await c.send(MOBILE, TRIAL)
    error: Exception = info.value  # the type the call could raise, not the one caught
    assert not isinstance(error, DeliveryUnknownError), error
    assert "not sent" in str(info.value)
    assert tls_server.seen == 0


@pytest.mark.parametrize("bad", [False, 3, Path("x")])
def test_verify_refuses_anything_else(bad: Any) -> None:
    with pytest.raises(ValueError, match="verify must be True, a CA file path or an ssl.SSLContext"):
        IhuyiClient("APIID", "KEY", backend="native", verify=bad)


def test_verify_refuses_a_missing_ca_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be loaded"):
        IhuyiClient("APIID", "KEY", verify=str(tmp_path / "nope.pem"))


def test_verify_with_an_own_transport_is_refused(ca_file: str) -> None:
    with pytest.raises(ValueError, match="verify= configures our own pool"):
        IhuyiClient("APIID", "KEY", transport=httpx.MockTransport(lambda r: httpx.Response(200)), verify=ca_file)
