"""The send path's wire: a tiny interface (post a form, get status + body) and the httpx backend.

Every backend translates its library's errors at this one boundary into
:class:`WireError`, whose ``written`` flag answers the only question that
matters for money: *could the provider have received the request?*

* ``written=False``: connection refused, DNS failure, connect or pool timeout,
  a malformed URL. The request provably never left; safe to retry.
* ``written=True``: everything after the connection was made: write or read
  failures, read timeouts, a peer that closed or reset, protocol errors. The
  provider may have acted on it. Write failures count here too: a partial write
  is unlikely to be acted on, but "unlikely" is not a guarantee we bill on.

One place decides "written or not": :func:`post_within`. Each call carries a
:class:`CallProgress` that the backend marks the moment the request may start
to go out (httpcore's ``send_request_headers`` trace event; aiohttp's connection
handed over); a failure, the deadline or a cancellation before that mark
provably sent nothing, whatever the exception says.

:func:`post_within` also owns the call's **deadline** (an anyio cancel scope, so
one mechanism for both backends and for trio; :func:`asyncio.timeout` where it is
cheaper; the native backend enforces it itself, on the timer it already keeps for the
read timeout: ``own_deadline``) and, on asyncio, shields the
httpx backend from native cancellation: httpcore 1.0 leaves a pooled connection
stuck when ``Task.cancel()`` lands inside its cleanup (encode/httpcore#1093), so
the request runs in a child task that is only ever cancelled through an anyio
scope, which respects httpcore's shielded cleanup; the caller's
:class:`asyncio.CancelledError` is re-raised unchanged once the child has
finished.

Answers larger than ``max_bytes`` are not read further (the cap counts bytes as
they are read): :class:`ProtocolError` with ``reason="oversized"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from asyncio import _get_running_loop
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import anyio
import httpx

from ._exceptions import ProtocolError

#: asyncio.timeout (Python 3.11+), or None.
_asyncio_timeout: Any = getattr(asyncio, "timeout", None)

__all__ = [
    "FORM_HEADERS",
    "CallProgress",
    "HttpxTransport",
    "ShardedPoolTransport",
    "Transport",
    "WireError",
    "post_within",
    "release_dead_loop",
]

FORM_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
    "Accept": "application/json, text/xml;q=0.9, */*;q=0.5",
}


class WireError(Exception):
    """Internal: a request failed on the wire. Never escapes the client.

    :ivar written: whether the request may have reached the provider.
    :ivar reason: a short tag for the failure (``"connect"``, ``"read_timeout"``, …).
    """

    def __init__(self, reason: str, *, written: bool, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.written = written
        self.detail = detail


class CallProgress:
    """How far one call got on the wire; marked by the backend, read by :func:`post_within`.

    :ivar written: the request may have started to go out (sticky across retries).
    :ivar gate: called once, right before the request starts to go out (a connection
        is in hand, nothing written): the client's per-number write spacing. It answers
        ``None`` when there is nothing to wait for, else an awaitable the backend awaits
        before writing. With ``end`` set, it keeps its waits within it
        (``WireError("deadline")``, not written).
    :ivar end: the call's deadline on the event loop's clock, for a backend that
        enforces it itself (``own_deadline``); set by :func:`post_within`.
    """

    __slots__ = ("end", "gate", "written")

    def __init__(
        self, written: bool = False, gate: Callable[[], Awaitable[None] | None] | None = None
    ) -> None:
        self.written = written
        self.gate = gate
        self.end: float | None = None

    async def writing(self) -> None:
        """The backend is about to write the request: pass the gate, then mark it written."""
        gate, self.gate = self.gate, None
        if gate is not None:
            pending = gate()
            if pending is not None:
                await pending
        self.written = True

    async def trace(self, name: str, info: object) -> None:
        """httpcore's ``trace`` request extension: marks the start of the request's headers."""
        if name.endswith(".send_request_headers.started"):
            await self.writing()


class Transport(Protocol):
    """What the client needs of a backend."""

    #: run requests in a child task shielded from native asyncio cancellation.
    isolate: bool
    #: the backend runs on asyncio only (the client refuses it on trio before anything).
    asyncio_only: bool
    #: on asyncio, the backend ends the call at ``progress.end`` itself, raising
    #: ``WireError("deadline")`` (written as far as it got), and cleans up synchronously
    #: after any cancellation: :func:`post_within` then adds no timeout of its own.
    own_deadline: bool

    @property
    def watches_writes(self) -> bool:
        """Whether it sees the moment a request starts to go out (else: no network)."""
        ...

    async def post(self, url: str, body: bytes, progress: CallProgress) -> tuple[int, bytes]:
        """POST a form-encoded body; return ``(status, body)``.

        Sets ``progress.written`` once the request may start to go out (a backend
        that cannot tell sets it before anything).

        :raises WireError: the request failed; ``written`` says whether it may have arrived.
        :raises ProtocolError: the answer exceeded the size cap.
        """
        ...

    async def aclose(self) -> None: ...

    def abandon(self) -> None:
        """Forget the pool without awaiting (its event loop is gone); see :func:`release_dead_loop`."""
        ...


def release_dead_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close the sockets a closed asyncio loop left open (it can no longer close them itself).

    Used by a client closed from another event loop after the one it ran on was
    closed: every transport of that loop is unusable by then, ours and any other.
    """
    transports: Any = getattr(loop, "_transports", None)  # selector loops keep fd -> transport
    for transport in list(transports.values()) if transports is not None else ():
        with contextlib.suppress(Exception):
            transport.abort()  # raises "Event loop is closed" once it tries to schedule
        if getattr(transport, "_sock", None) is not None:
            with contextlib.suppress(Exception):
                transport._call_connection_lost(None)  # what abort() would have run: closes it


async def post_within(
    wire: Transport, url: str, body: bytes, progress: CallProgress, end: float | None
) -> tuple[int, bytes]:
    """POST through ``wire``, ended at ``end`` (the event loop's clock, as
    ``anyio.current_time()``; ``None``: never) whatever the server does.

    The one place that decides whether a failed call may have been written: a
    :class:`WireError` is "written" only if the backend said so *and* the
    request had started to go out; the deadline gives ``WireError("deadline")``
    with ``written`` from the progress mark. Cancellation propagates unchanged
    (the caller reads ``progress.written``).
    """
    try:
        loop = _get_running_loop()
        if loop is not None:
            if wire.own_deadline:  # the hot path: no clock read here
                progress.end = end
                return await wire.post(url, body, progress)
            deadline = None if end is None else max(0.0, end - loop.time())
            if wire.isolate:
                scope = anyio.CancelScope(deadline=math.inf if end is None else end)
                return await _isolated(wire, url, body, progress, scope, deadline)
            if deadline is not None and _asyncio_timeout is not None:
                return await _timed(wire, url, body, progress, deadline)
        else:
            deadline = None if end is None else max(0.0, end - anyio.current_time())
        bound = None if end is None else anyio.CancelScope(deadline=end)
        return await _bounded(wire, url, body, progress, bound, deadline)
    except WireError as exc:
        # Written only if the backend's error allows it *and* the request had started out;
        # a definite "not written" also clears an assumed mark (a transport we cannot watch).
        exc.written = progress.written = exc.written and progress.written
        raise


async def _bounded(
    wire: Transport,
    url: str,
    body: bytes,
    progress: CallProgress,
    scope: anyio.CancelScope | None,
    deadline: float | None,
) -> tuple[int, bytes]:
    if scope is None:
        return await wire.post(url, body, progress)
    with scope:
        return await wire.post(url, body, progress)
    raise WireError(
        "deadline", written=progress.written, detail=f"no complete answer within {deadline:g} s"
    )


async def _timed(
    wire: Transport, url: str, body: bytes, progress: CallProgress, deadline: float
) -> tuple[int, bytes]:
    """The deadline by :func:`asyncio.timeout` (Python 3.11+): half the cost of an anyio
    scope, for a backend that cleans up after native cancellation by itself (aiohttp)."""
    assert _asyncio_timeout is not None
    timer = _asyncio_timeout(deadline)
    try:
        async with timer:
            return await wire.post(url, body, progress)
    except TimeoutError:
        if not timer.expired():
            raise
    raise WireError(
        "deadline", written=progress.written, detail=f"no complete answer within {deadline:g} s"
    )


async def _isolated(
    wire: Transport,
    url: str,
    body: bytes,
    progress: CallProgress,
    scope: anyio.CancelScope,
    deadline: float | None,
) -> tuple[int, bytes]:
    """Run the request in a child task; a native cancellation of ours reaches it only
    through its anyio scope, and we wait for it to finish before re-raising."""
    inner = asyncio.ensure_future(_bounded(wire, url, body, progress, scope, deadline))
    try:
        return await asyncio.shield(inner)
    except asyncio.CancelledError:
        scope.cancel()
        while not inner.done():
            try:
                await asyncio.wait((inner,))
            except asyncio.CancelledError:  # noqa: PERF203 - cancelled again: wait on
                continue
        if not inner.cancelled():
            inner.exception()  # retrieved; the caller's cancellation wins
        raise


def oversized_error(status: int, max_bytes: int) -> ProtocolError:
    return ProtocolError(
        f"answer larger than {max_bytes} bytes", status_code=status, reason="oversized"
    )


# httpx errors raised before any byte of the request can have been sent.
_NOT_WRITTEN: tuple[tuple[type[BaseException], str], ...] = (
    (httpx.ConnectTimeout, "connect_timeout"),
    (httpx.PoolTimeout, "pool_timeout"),
    (httpx.ConnectError, "connect"),
    (httpx.UnsupportedProtocol, "unsupported_protocol"),
    (httpx.ProxyError, "proxy"),
    (httpx.InvalidURL, "invalid_url"),
    (httpx.LocalProtocolError, "local_protocol"),
)
_WRITTEN: tuple[tuple[type[BaseException], str], ...] = (
    (httpx.ReadTimeout, "read_timeout"),
    (httpx.WriteTimeout, "write_timeout"),
    (httpx.WriteError, "write_failed"),
    (httpx.RemoteProtocolError, "disconnected"),
    (httpx.ReadError, "read_failed"),
)


def map_httpx_error(exc: Exception) -> WireError:
    """Translate an httpx (or OS) error raised while sending into a :class:`WireError`."""
    for cls, reason in _NOT_WRITTEN:
        if isinstance(exc, cls):
            return WireError(reason, written=False, detail=type(exc).__name__)
    for cls, reason in _WRITTEN:
        if isinstance(exc, cls):
            return WireError(reason, written=True, detail=type(exc).__name__)
    if isinstance(exc, ConnectionRefusedError):
        return WireError("connect", written=False, detail=type(exc).__name__)
    return WireError("transport_failed", written=True, detail=type(exc).__name__)


#: Connections per shard of :class:`ShardedPoolTransport`.
SHARD_SIZE = 10


class _CountedStream(httpx.AsyncByteStream):
    """A response body that gives its shard's slot back when closed (once)."""

    __slots__ = ("_stream", "_owner", "_index", "_open")

    def __init__(self, stream: httpx.AsyncByteStream, owner: ShardedPoolTransport, index: int) -> None:
        self._stream = stream
        self._owner = owner
        self._index = index
        self._open = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        if self._open:
            self._open = False
            self._owner._active[self._index] -= 1
        await self._stream.aclose()


class ShardedPoolTransport(httpx.AsyncBaseTransport):
    """httpx's default transport, split into pools of at most :data:`SHARD_SIZE` connections.

    httpcore 1.0's pool does work proportional to connections × idle connections
    on every request and every response (``_assign_requests_to_connections``, with
    a socket readability check per idle connection): with 100 pooled connections
    that dominates a send's cost (see ``benchmarks/``). The same total of
    connections in pools of ten keeps that cost small. Each request goes to the
    shard with the fewest requests in flight (the first such, so a lone caller
    keeps reusing one connection, and among equally busy shards one that holds
    an idle connection); the limits (connections, keep-alive, expiry)
    are divided between the shards, so their totals are the configured ones.
    Timeouts, errors and everything else are httpx's own.

    :param limits: total limits; unlimited connections keep a single pool.
    """

    __slots__ = ("_pools", "_active")

    def __init__(self, limits: httpx.Limits, *, shard_size: int = SHARD_SIZE, verify: Any = True) -> None:
        total = limits.max_connections
        shards = 1 if total is None or total <= shard_size else -(-total // shard_size)
        keepalive = limits.max_keepalive_connections
        self._pools: list[httpx.AsyncHTTPTransport] = []
        for i in range(shards):
            size = None if total is None else total // shards + (i < total % shards)
            keep = None if keepalive is None else keepalive // shards + (i < keepalive % shards)
            self._pools.append(
                httpx.AsyncHTTPTransport(
                    limits=httpx.Limits(
                        max_connections=size,
                        max_keepalive_connections=keep,
                        keepalive_expiry=limits.keepalive_expiry,
                    ),
                    trust_env=False,
                    verify=verify,
                )
            )
        self._active = [0] * shards

    @property
    def shards(self) -> int:
        return len(self._pools)

    def _pick(self) -> int:
        """The least busy shard; among those, the first holding an idle connection."""
        active = self._active
        least = min(active)
        first = -1
        for index, busy in enumerate(active):
            if busy != least:
                continue
            if first < 0:
                first = index
            pool: Any = getattr(self._pools[index], "_pool", None)  # httpcore's pool
            connections = getattr(pool, "connections", ())
            if any(conn.is_idle() for conn in connections):
                return index
        return first

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        active = self._active
        index = self._pick() if len(active) > 1 else 0
        active[index] += 1
        pool = self._pools[index]
        try:
            response = await pool.handle_async_request(request)
        except BaseException:
            active[index] -= 1
            await _reclaim_orphans(pool)
            raise
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        response.stream = _CountedStream(stream, self, index)
        return response

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


async def _reclaim_orphans(transport: httpx.AsyncHTTPTransport) -> None:
    """Drop connections that a cancelled request left behind in httpcore's pool.

    httpcore 1.0.9 (encode/httpcore#1093, fixed upstream only in forks): a request
    cancelled after the pool assigned it a *new* connection, but before it used
    it, leaves that connection in the pool, neither connecting, idle, closed nor
    expired. It holds a slot for ever; ``max_connections`` of them and every
    request ends in ``PoolTimeout``. Whatever the cancellation style (trio and
    anyio scopes included). After any failed request we remove such orphans (a
    never-connected connection that no queued or active request owns) and let the
    pool hand the freed slots to waiting requests, as upstream's fix does.
    """
    pool: Any = getattr(transport, "_pool", None)
    connections: Any = getattr(pool, "_connections", None)
    requests: Any = getattr(pool, "_requests", None)
    if not connections or requests is None:
        return
    owned = {id(r.connection) for r in requests if r.connection is not None}
    orphans = [
        conn
        for conn in connections
        if id(conn) not in owned
        and getattr(conn, "_connection", False) is None  # never connected
        and getattr(conn, "_connect_failed", True) is False
    ]
    if not orphans:
        return
    with pool._optional_thread_lock:
        for conn in orphans:
            if conn in pool._connections:
                pool._connections.remove(conn)
        closing = pool._assign_requests_to_connections()
    await pool._close_connections(closing)  # shielded by httpcore


class HttpxTransport:
    """Backend on one pooled :class:`httpx.AsyncClient` (asyncio and trio).

    :param client: the pooled client; closed by :meth:`aclose` only when ``owned``.
    :param traced: the client's transport is httpcore's (ours, or
        :class:`httpx.AsyncHTTPTransport`), whose trace events tell when a request
        starts to go out; any other transport counts as written from the start.
    """

    __slots__ = ("_client", "_owned", "_traced", "_max_bytes", "_timeout", "_headers", "_urls")

    isolate = True
    asyncio_only = False
    own_deadline = False

    def __init__(
        self, client: httpx.AsyncClient, *, owned: bool, max_bytes: int, traced: bool = False
    ) -> None:
        self._client = client
        self._owned = owned
        self._traced = traced
        self._max_bytes = max_bytes
        self._timeout = client.timeout.as_dict()
        self._headers = httpx.Headers(FORM_HEADERS)
        self._urls: dict[str, httpx.URL] = {}  # parsed once: the client posts to a few URLs

    def _url(self, url: str) -> httpx.URL:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = httpx.URL(url)
            if len(self._urls) < 16:
                self._urls[url] = parsed
        return parsed

    @property
    def client(self) -> httpx.AsyncClient:
        return self._client

    @property
    def watches_writes(self) -> bool:
        """Whether this backend sees the moment a request starts to go out (httpcore's
        trace events); a transport it cannot watch (a mock, the emulator's) is no network:
        the client does not space its writes there."""
        return self._traced

    async def post(self, url: str, body: bytes, progress: CallProgress) -> tuple[int, bytes]:
        client = self._client
        extensions: dict[str, Any]
        if self._traced:
            extensions = {"timeout": self._timeout, "trace": progress.trace}
        else:
            await progress.writing()  # a transport we cannot watch: assume it writes now
            extensions = {}
        if self._owned:
            # Our own client carries no cookies, auth or base URL: skip build_request's merging.
            extensions.setdefault("timeout", self._timeout)
            request = httpx.Request(
                "POST", self._url(url), content=body, headers=self._headers, extensions=extensions
            )
        else:
            request = client.build_request(
                "POST", url, content=body, headers=FORM_HEADERS, extensions=extensions
            )
        request.stream = _Body(body)  # same bytes and Content-Length, no async generator
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except (httpx.HTTPError, OSError) as exc:
            raise map_httpx_error(exc) from exc
        try:
            status = response.status_code
            length = response.headers.get("content-length")
            if length is not None and _announced_over(length, self._max_bytes):
                raise oversized_error(status, self._max_bytes)  # not read at all
            if length is not None and "content-encoding" not in response.headers:
                data = await response.aread()
            else:
                data = await self._read_capped(response, status)
        except (httpx.HTTPError, OSError) as exc:
            raise map_httpx_error(exc) from exc
        finally:
            await response.aclose()
        return status, data

    async def _read_capped(self, response: httpx.Response, status: int) -> bytes:
        """Read a body of unannounced size, stopping as soon as it passes ``max_bytes``.

        Past the cap the connection's socket is closed, so the body's async
        generators end with a read error rather than being abandoned (an abandoned
        one is finalised late, and warns on trio); a transport without a network
        stream (a mock) is drained instead, within the call's deadline.
        """
        chunks: list[bytes] = []
        size = 0
        closed = False
        try:
            async for chunk in response.aiter_bytes():
                if closed:
                    continue
                size += len(chunk)
                if size <= self._max_bytes:
                    chunks.append(chunk)
                    continue
                stream = response.extensions.get("network_stream")
                if stream is not None:
                    closed = True
                    await stream.aclose()
        except httpx.HTTPError:
            if not closed:
                raise
        if size > self._max_bytes:
            raise oversized_error(status, self._max_bytes)
        return b"".join(chunks)

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()

    def abandon(self) -> None:
        """Nothing to do here: the dead loop's sockets are released with it."""


class _Body(httpx.AsyncByteStream):
    """A request body whose iterator is not an async generator.

    httpx's own body stream is one; a request cancelled while its body is being
    written abandons it, and trio warns (``ResourceWarning``) when it is collected.
    """

    __slots__ = ("_body",)

    def __init__(self, body: bytes) -> None:
        self._body = body

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _Once(self._body)


class _Once:
    __slots__ = ("_body",)

    def __init__(self, body: bytes | None) -> None:
        self._body = body

    def __aiter__(self) -> _Once:
        return self

    async def __anext__(self) -> bytes:
        body, self._body = self._body, None
        if body is None:
            raise StopAsyncIteration
        return body


def _announced_over(length: str, max_bytes: int) -> bool:
    """Whether a Content-Length header announces more than ``max_bytes`` (any huge value too)."""
    length = length.strip()
    if not (length.isascii() and length.isdigit()):
        return False  # malformed: h11 refuses it before we get here
    return len(length) > 18 or int(length) > max_bytes
