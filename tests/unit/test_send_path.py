"""The send path under faults (#12): the call deadline, "written or not", limiter slots,
the aiohttp pool, the size cap, the sharded pool's choice, lifecycle edges.

Servers here are tiny anyio TCP listeners on 127.0.0.1, so every test runs the real
httpcore / aiohttp code; the deeper fault matrix lives in ``tests/faults/``.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

import ihuyi_async as ih
from ihuyi_async import FakeClock, IhuyiClient, RetryPolicy, _native
from ihuyi_async.idempotency import MemoryKeyStore
from ihuyi_async.limiter import Limiter

pytestmark = pytest.mark.anyio

TEXT = "您的验证码是：1234。请不要把验证码泄露给其他人。"
NOW = 1767240000
OK = b'{"code":2,"msg":"\xe6\x8f\x90\xe4\xba\xa4\xe6\x88\x90\xe5\x8a\x9f","smsid":"16842079209571524017"}'
NO_RETRY = RetryPolicy(max_attempts=1, retry_unsent_sends=False)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def answer(body: bytes = OK, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class Server:
    """Counts connections, requests (complete heads) and bytes it sent."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.sent = 0
        self.port = 0


Handler = Callable[[anyio.abc.SocketStream, Server], Awaitable[None]]


async def read_request(stream: anyio.abc.SocketStream, buffer: bytearray) -> bool:
    """Read one request (head + Content-Length body) into nothing; False at EOF."""
    while b"\r\n\r\n" not in buffer:
        try:
            chunk = await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    try:
        while len(rest) < length:
            rest += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        return False
    buffer[:] = rest[length:]
    return True


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[Server]:
    state = Server()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    state.port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        state.connections += 1
        async with stream:
            try:
                await handler(stream, state)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield state
        finally:
            tg.cancel_scope.cancel()
    await listener.aclose()


async def healthy(stream: anyio.abc.SocketStream, state: Server) -> None:
    buffer = bytearray()
    while await read_request(stream, buffer):
        state.requests += 1
        await stream.send(answer())


async def never_answers(stream: anyio.abc.SocketStream, state: Server) -> None:
    buffer = bytearray()
    while await read_request(stream, buffer):
        state.requests += 1
    await anyio.sleep_forever()


def client_for(state: Server, **kw: Any) -> IhuyiClient:
    kw.setdefault("limiter", None)
    kw.setdefault("clock", FakeClock(NOW, auto_advance=True))
    return IhuyiClient(
        "APIID", "KEY", base_url=f"http://127.0.0.1:{state.port}", **kw
    )


# ------------------------------------------------------------------ the deadline (#12.1)


async def test_deadline_ends_a_trickled_answer_as_unknown() -> None:
    """A body trickled a byte at a time never trips a per-read timeout; the deadline ends it."""

    async def trickle(stream: anyio.abc.SocketStream, state: Server) -> None:
        buffer = bytearray()
        await read_request(stream, buffer)
        state.requests += 1
        for byte in answer():
            await stream.send(bytes([byte]))
            state.sent += 1
            await anyio.sleep(0.05)

    async with serve(trickle) as state:
        async with client_for(state, timeout=0.3, deadline=0.6) as client:
            started = time.monotonic()
            with pytest.raises(ih.DeliveryUnknownError) as caught:
                await client.send("13800138000", TEXT)
            elapsed = time.monotonic() - started
    assert caught.value.reason == "deadline"
    assert state.requests == 1
    assert elapsed < 2.0  # bounded by the deadline, not by the 10 s+ the trickle lasts


async def test_deadline_while_waiting_for_the_pool_is_not_sent_and_refunds() -> None:
    limiter = Limiter(clock=FakeClock(NOW, auto_advance=True))
    async with serve(never_answers) as state:
        client = client_for(
            state,
            timeout=httpx.Timeout(5.0),
            deadline=0.5,
            limits=httpx.Limits(max_connections=1),
            limiter=limiter,
            retry=NO_RETRY,
        )
        async with client, anyio.create_task_group() as tg:
            tg.start_soon(_hold_the_pool, client, state.port)  # a raw request, no deadline
            await _until(lambda: state.requests == 1)
            with pytest.raises(ih.TransportError) as caught:
                await client.send("13800138002", TEXT)  # waits for the only connection
            assert caught.value.sent is False and "deadline" in str(caught.value)
            tg.cancel_scope.cancel()
    stats = limiter.statistics()
    assert stats.acquired == 1 and stats.refunded == 1
    assert state.requests == 1


async def _hold_the_pool(client: IhuyiClient, port: int) -> None:
    http = client.http_client
    assert http is not None
    await http.post(f"http://127.0.0.1:{port}/hold", content=b"x")


async def _expect_unknown(client: IhuyiClient, mobile: str) -> None:
    with pytest.raises(ih.DeliveryUnknownError):
        await client.send(mobile, TEXT)


async def _until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(5):
        while not condition():  # noqa: ASYNC110 - polls a server's counters, bounded
            await anyio.sleep(0.005)


async def test_deadline_validation() -> None:
    with pytest.raises(ValueError, match="deadline"):
        IhuyiClient("APIID", "KEY", deadline=0)
    with pytest.raises(ValueError, match="deadline"):
        IhuyiClient("APIID", "KEY", deadline=math.inf)
    with pytest.raises(TypeError, match="deadline"):
        IhuyiClient("APIID", "KEY", deadline="5")  # type: ignore[arg-type]
    assert IhuyiClient("APIID", "KEY", timeout=3)._deadline == 6.0
    assert IhuyiClient("APIID", "KEY", timeout=None)._deadline is None
    assert IhuyiClient("APIID", "KEY", deadline=None)._deadline is None


async def test_endless_answer_stops_at_the_size_cap() -> None:
    """The cap counts bytes as they are read: an endless chunked body is cut right there."""

    async def endless(stream: anyio.abc.SocketStream, state: Server) -> None:
        buffer = bytearray()
        await read_request(stream, buffer)
        state.requests += 1
        await stream.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
        for _ in range(100_000):
            await stream.send(chunk)
            state.sent += len(chunk)

    async with serve(endless) as state:
        async with client_for(state, deadline=5.0) as client:
            with pytest.raises(ih.DeliveryUnknownError) as caught:
                await client.send("13800138000", TEXT)
    assert caught.value.reason == "oversized"
    # 64 KiB cap plus what the kernel's socket buffers held; the old loop read 4 MiB.
    assert state.sent < 2 * 1024 * 1024


# ------------------------------------------------------------------ aiohttp's pool (#12.3)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_aiohttp_waiting_for_a_connection_is_not_a_connect_timeout() -> None:
    """Six sends over two connections to a server taking 0.25 s each: every send waits
    longer than the connect timeout for a free connection, and still goes."""

    async def slow(stream: anyio.abc.SocketStream, state: Server) -> None:
        buffer = bytearray()
        while await read_request(stream, buffer):
            state.requests += 1
            await anyio.sleep(0.25)
            await stream.send(answer())

    results: list[object] = []
    async with serve(slow) as state:
        client = client_for(
            state,
            backend="aiohttp",
            timeout=httpx.Timeout(5.0, connect=0.1),
            limits=httpx.Limits(max_connections=2),
            retry=NO_RETRY,
        )
        async with client:

            async def one(i: int) -> None:
                try:
                    results.append(await client.send(f"1380013{i:04d}", TEXT))
                except ih.IhuyiError as exc:
                    results.append(exc)

            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(one, i)
    assert all(isinstance(r, ih.SendResult) for r in results), results
    assert state.requests == 6 and state.connections <= 2


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_aiohttp_pool_timeout_is_not_sent() -> None:
    async with serve(never_answers) as state:
        client = client_for(
            state,
            backend="aiohttp",
            timeout=httpx.Timeout(5.0, pool=0.2),
            limits=httpx.Limits(max_connections=1),
            retry=NO_RETRY,
        )
        async with client, anyio.create_task_group() as tg:
            tg.start_soon(_expect_unknown, client, "13800138001")
            await _until(lambda: state.requests == 1)
            with pytest.raises(ih.TransportError) as caught:
                await client.send("13800138002", TEXT)
            assert caught.value.sent is False and "pool_timeout" in str(caught.value)
            tg.cancel_scope.cancel()


# ------------------------------------------------------------------ cancellation (#12.2)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("backend", ["httpx", "aiohttp"])
async def test_cancel_while_waiting_for_the_pool_refunds_and_keeps_the_pool(backend: str) -> None:
    import asyncio

    limiter = Limiter(clock=FakeClock(NOW, auto_advance=True))
    release = anyio.Event()

    async def gated(stream: anyio.abc.SocketStream, state: Server) -> None:
        buffer = bytearray()
        while await read_request(stream, buffer):
            state.requests += 1
            if state.requests == 1:
                await release.wait()
            await stream.send(answer())

    async with serve(gated) as state:
        client = client_for(
            state, backend=backend, limits=httpx.Limits(max_connections=1), limiter=limiter
        )
        async with client:
            first = asyncio.ensure_future(client.send("13800138001", TEXT))
            await _until(lambda: state.requests == 1)
            second = asyncio.ensure_future(client.send("13800138002", TEXT))
            await asyncio.sleep(0.05)  # second is queued for the only connection
            second.cancel()
            with pytest.raises(asyncio.CancelledError):
                await second
            release.set()
            assert isinstance(await first, ih.SendResult)
            for i in range(3):  # the pool still works
                await client.send(f"1390013{i:04d}", TEXT)
    stats = limiter.statistics()
    assert stats.refunded == 1  # the cancelled send never left
    assert state.requests == 4


# ------------------------------------------------------------------ local failures (#12.6)


async def test_lone_surrogate_is_refused_locally_before_the_limiter() -> None:
    limiter = Limiter(clock=FakeClock(NOW, auto_advance=True))
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=OK)

    transport = httpx.MockTransport(answer)
    async with IhuyiClient("APIID", "KEY", transport=transport, limiter=limiter) as client:
        with pytest.raises(ih.ContentRejectedError) as caught:
            await client.send("13800138000", "验证码 \ud800 1234")
    assert caught.value.local is True
    assert limiter.statistics().acquired == 0 and seen == []


def test_aiohttp_backend_under_trio_is_refused_before_the_limiter() -> None:
    pytest.importorskip("aiohttp")
    limiter = Limiter(clock=FakeClock(NOW, auto_advance=True))

    async def main() -> None:
        client = IhuyiClient("APIID", "KEY", backend="aiohttp", limiter=limiter)
        with pytest.raises(RuntimeError, match="asyncio only"):
            await client.send("13800138000", TEXT)
        await client.aclose()

    anyio.run(main, backend="trio")
    assert limiter.statistics().acquired == 0


async def test_an_unexpected_parser_failure_after_the_wire_is_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ihuyi_async._client as client_module

    def broken(*args: object, **kwargs: object) -> tuple[str, str]:
        raise LookupError("unknown encoding: x-nonsense")

    monkeypatch.setattr(client_module, "parse_submit", broken)
    limiter = Limiter(clock=FakeClock(NOW, auto_advance=True))
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=OK))
    async with IhuyiClient("APIID", "KEY", transport=transport, limiter=limiter) as client:
        with pytest.raises(ih.DeliveryUnknownError) as caught:
            await client.send("13800138000", TEXT)
    assert caught.value.reason == "unexpected_answer"
    assert limiter.statistics().refunded == 0  # it reached the server: the slot is kept


# ------------------------------------------------------------------ the sharded pool (#12.2)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_sharded_pool_reuses_an_idle_connection_in_another_shard() -> None:
    """Two shards; the connection in shard 0 is closed by the server after its answer, the one
    in shard 1 stays idle: the next lone send reuses shard 1's instead of opening a new one."""
    gate = anyio.Event()

    async def handler(stream: anyio.abc.SocketStream, state: Server) -> None:
        buffer = bytearray()
        first = state.connections == 1
        while await read_request(stream, buffer):
            state.requests += 1
            await gate.wait()
            if first:
                await stream.send(answer(extra=b"Connection: close\r\n"))
                return
            await stream.send(answer())

    async with serve(handler) as state:
        client = client_for(state, limits=httpx.Limits(max_connections=20))
        async with client:
            async with anyio.create_task_group() as tg:  # one request in each shard at once
                tg.start_soon(client.send, "13800138001", TEXT)
                await _until(lambda: state.requests == 1)
                tg.start_soon(client.send, "13800138002", TEXT)
                await _until(lambda: state.requests == 2)
                gate.set()
            assert state.connections == 2
            await client.send("13800138003", TEXT)
    assert state.connections == 2 and state.requests == 3


# ------------------------------------------------------------------ lifecycle (#12.8, #12.9)


def test_default_keepalive_expiry_is_below_common_server_timeouts() -> None:
    client = IhuyiClient("APIID", "KEY")
    http = client.http_client
    assert http is not None
    pool: Any = http._transport
    expiry = {p._pool._keepalive_expiry for p in pool._pools}
    assert expiry == {4.0}  # uvicorn and Apache close idle connections after 5 s


def test_repr_of_a_half_built_client_does_not_raise() -> None:
    client = IhuyiClient.__new__(IhuyiClient)
    assert "IhuyiClient" in repr(client)


async def test_a_client_never_closed_warns_once() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=OK))
    client = IhuyiClient("APIID", "KEY", transport=transport, limiter=None)
    await client.send("13800138000", TEXT)
    with pytest.warns(ResourceWarning, match=r"aclose\(\)"):
        del client
        gc.collect()


async def test_a_closed_or_unused_client_does_not_warn() -> None:
    import warnings

    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=OK))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unused = IhuyiClient("APIID", "KEY", transport=transport)
        del unused
        async with IhuyiClient("APIID", "KEY", transport=transport, limiter=None) as client:
            await client.send("13800138000", TEXT)
        del client
        gc.collect()


@pytest.mark.parametrize("backend", ["httpx", "aiohttp"])
def test_close_from_another_loop_releases_the_pool(backend: str) -> None:
    """Used on one asyncio loop, refused on the next, then closed there: nothing left open."""
    import asyncio
    import threading
    import warnings
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b'{"code":2,"msg":"ok","num":5}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        clients = [
            IhuyiClient(
                "APIID", "KEY", base_url=f"http://127.0.0.1:{server.server_port}", backend=backend  # type: ignore[arg-type]
            )
        ]

        async def first() -> None:
            assert (await clients[0].balance()).num == 5

        async def second() -> None:
            with pytest.raises(RuntimeError, match="another event loop"):
                await clients[0].balance()
            await clients[0].aclose()

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            asyncio.run(first())
            asyncio.run(second())
            clients.clear()
            gc.collect()
        leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
        assert leaks == [], [str(w.message) for w in leaks]
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------ write spacing (#12.7)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("backend", ["httpx", "aiohttp", "native"])
async def test_the_write_gate_runs_once_right_before_the_request_leaves(backend: str) -> None:
    seen_at_gate: list[int] = []
    async with serve(healthy) as state:
        client = client_for(state, backend=backend, limiter=Limiter(clock=FakeClock(NOW, auto_advance=True)))

        real_gate = client._write_gate

        def gate(numbers: tuple[str, ...], then: Any, end: float | None) -> Any:
            seen_at_gate.append(state.requests)
            return real_gate(numbers, then, end)

        client._write_gate = gate  # type: ignore[method-assign]
        async with client:
            await client.send("13800138000", TEXT)
            await client.send("13800138001", TEXT)
    assert seen_at_gate == [0, 1]  # each time before the server had that request


async def test_the_write_gate_spaces_one_numbers_writes() -> None:
    clock = FakeClock(NOW, auto_advance=True)
    client = IhuyiClient("APIID", "KEY", clock=clock)  # default rules: 1/s plus a 0.2 s margin
    assert client._write_spacing == pytest.approx(1.05)
    await client._space_write("13800138000")
    start = clock.time()
    await client._space_write("13800138001")  # another number: no wait
    assert clock.time() == start
    await client._space_write("13800138000")
    assert clock.time() == pytest.approx(start + 1.05)
    assert IhuyiClient("APIID", "KEY", limiter=None)._write_spacing is None


# ------------------------------------------------------------------ the write gate's paths (#19)
# The synchronous "nothing to wait for" answer still notes the write; an idempotency key's
# "sending" mark still runs before each write when spacing applies; a gate that raises leaves
# nothing written; the native backend rechecks its pooled connection after a real wait.


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("backend", ["httpx", "aiohttp", "native"])
async def test_a_send_that_did_not_wait_still_notes_its_write(backend: str) -> None:
    """The gate's synchronous answer records the number, so its next send is spaced."""
    clock = FakeClock(NOW, auto_advance=True)
    async with serve(healthy) as state:
        c = client_for(state, backend=backend, limiter=Limiter(clock=clock), clock=clock)
        async with c:
            await c.send("13800138000", TEXT)
            noted = dict(c._last_write)
            assert c._must_wait(("13800138000",))  # the next write must wait its spacing
    assert list(noted) == ["13800138000"] and state.requests == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("backend", ["httpx", "aiohttp", "native"])
async def test_a_keyed_spaced_send_marks_its_key_sending_before_each_write(backend: str) -> None:
    marked: list[int] = []
    clock = FakeClock(NOW, auto_advance=True)
    async with serve(healthy) as state:
        store = MemoryKeyStore(clock=clock)
        mark = store.mark_sending

        async def spy(key: str, owner: str) -> None:
            marked.append(state.requests)  # how many requests the server had seen by then
            await mark(key, owner)

        store.mark_sending = spy  # type: ignore[method-assign]
        c = client_for(state, backend=backend, limiter=Limiter(clock=clock), clock=clock, idempotency=store)
        async with c:
            start = clock.time()
            await c.send("13800138000", TEXT, idempotency_key="a")
            await c.send("13800138000", TEXT + "。", idempotency_key="b")  # waits its spacing
            waited = clock.time() - start
            await c.send("13800138001", TEXT, idempotency_key="c")
    assert marked == [0, 1, 2]
    assert state.requests == 3 and waited >= 1.0


class _RaisingKeys(MemoryKeyStore):
    def mark_sending(self, key: str, owner: str) -> Any:
        raise RuntimeError("the key store failed")  # synchronously, before any awaitable


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("backend", ["httpx", "aiohttp", "native"])
async def test_a_gate_that_raises_leaves_nothing_written_and_refunds(backend: str) -> None:
    clock = FakeClock(NOW, auto_advance=True)
    async with serve(healthy) as state:
        limiter = Limiter(clock=clock)
        c = client_for(
            state, backend=backend, limiter=limiter, clock=clock, idempotency=_RaisingKeys(clock=clock),
            retry=ih.RetryPolicy(max_attempts=1, retry_unsent_sends=False),
        )
        async with c:
            await c.send("13800138001", TEXT)  # opens the pooled connection
            with pytest.raises(RuntimeError, match="key store failed"):
                await c.send("13800138000", TEXT, idempotency_key="a")
            refunded = limiter.statistics().refunded
            await c.send("13800138000", TEXT)  # the slot was given back, the pool still works
    assert refunded == 1 and state.requests == 2
    if backend == "native":
        assert state.connections == 1  # the connection went back to the pool unwritten


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_native_rechecks_its_connection_after_a_real_wait_at_the_gate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server closes the pooled connection while the send waits at its gate: the
    recheck after the wait takes a new connection instead of writing into the closed one."""
    monkeypatch.setattr(_native, "_RECHECK_AFTER", -1.0)  # any wait counts as a real one
    close_now, closed = anyio.Event(), anyio.Event()

    async def handler(stream: anyio.abc.SocketStream, state: Server) -> None:
        buffer = bytearray()
        first = state.connections == 1
        while await read_request(stream, buffer):
            state.requests += 1
            await stream.send(answer())
            if first:
                await close_now.wait()
                await stream.aclose()
                closed.set()
                return

    clock = FakeClock(NOW, auto_advance=True)
    async with serve(handler) as state:
        store = MemoryKeyStore(clock=clock)
        mark = store.mark_sending

        async def held(key: str, owner: str) -> None:
            close_now.set()
            await closed.wait()  # the server has closed the connection we hold
            await mark(key, owner)

        store.mark_sending = held  # type: ignore[method-assign]
        c = client_for(
            state, backend="native", clock=clock, idempotency=store,
            retry=ih.RetryPolicy(max_attempts=1, retry_unsent_sends=False),
        )
        async with c:
            await c.send("13800138000", TEXT)
            with anyio.fail_after(5):
                result = await c.send("13800138001", TEXT, idempotency_key="k")
    assert result.smsid and state.connections == 2 and state.requests == 2
