"""The native backend (extra ``native``): keep-alive HTTP/1.1 POSTs of small forms, asyncio only.

Written for the one request shape the client sends: a form POST to one host,
a small answer. An :class:`asyncio.Protocol` per connection, the answer parsed
by ``httptools`` (llhttp, the parser uvicorn uses), TLS from :mod:`ssl` with
certificate verification on, and a bounded LIFO pool of our own. At 100 sends
in flight it costs a fraction of aiohttp's CPU per message (see ``benchmarks/``).

Whether the request was written is known by construction: ``progress.written``
is set in the same synchronous step that hands the request's bytes to the
socket (:meth:`asyncio.WriteTransport.write`), after the per-number gate and
after the pooled connection was checked to be still open. Errors are turned
into :class:`WireError` here:

* not written: refused, DNS, connect timeout, TLS handshake or certificate
  failure, no free connection within the pool timeout;
* written: everything after the bytes were handed over: the peer closed or
  reset, a read timeout, a malformed answer (a server close racing the write
  is therefore "maybe sent", never "not sent").

The call's deadline is enforced here (``own_deadline``: ``progress.end``, set by
:func:`~._transport.post_within`): while the answer is awaited, by the one timer each
connection keeps for its read timeout (armed lazily: a timer due no later than the
new due date is kept and re-armed when it fires, so a send on a warm connection
schedules no timer at all); while a connection or a gate is awaited (rare: a new
connection, a full pool, a write spacing wait), by an anyio cancel scope. Every
cleanup here is synchronous (no ``await`` in ``finally``), so any asyncio
cancellation style (``Task.cancel``, :func:`asyncio.timeout`, anyio scopes,
task groups) leaves the pool consistent: a connection interrupted mid-answer
is aborted, its slot freed, and the next waiter woken.
"""

from __future__ import annotations

import asyncio
import collections
import select
import ssl
import zlib
from collections.abc import Awaitable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio

from ._transport import FORM_HEADERS, CallProgress, WireError
from ._transport import oversized_error as _oversized

__all__ = ["NativeTransport", "ssl_context"]

_T = TypeVar("_T")
#: Seconds at the write gate after which a pooled connection is checked again before the write.
_RECHECK_AFTER = 0.001
#: ``select.poll`` (not on Windows): cheaper than ``select.select`` for one descriptor.
_HAS_POLL = hasattr(select, "poll")

_USER_AGENT = b"ihuyi-async"
_ACCEPT = FORM_HEADERS["Accept"].encode("ascii")
_CONTENT_TYPE = FORM_HEADERS["Content-Type"].encode("ascii")


def _import_httptools() -> Any:
    try:
        import httptools
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "backend='native' needs the native extra: pip install 'ihuyi-async[native]'"
        ) from exc
    return httptools


def ssl_context(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext:
    """The TLS context for ``verify=``: a context as given, a CA file path, or ``True`` (system CAs).

    :raises ValueError: ``verify=False`` or anything else (verification stays on).
    """
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is True:
        return ssl.create_default_context()
    if isinstance(verify, str):
        try:
            return ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"verify= CA file {verify!r} cannot be loaded: {exc}") from None
    raise ValueError(
        f"verify must be True, a CA file path or an ssl.SSLContext, not {verify!r} "
        "(certificate verification cannot be turned off)"
    )


class _Failed(Exception):
    """Internal: the connection failed while a request was on it (already written)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    __slots__ = (
        "_parser",
        "_max_bytes",
        "_read_timeout",
        "_timer",
        "_timer_at",
        "_end",
        "_last_read",
        "_loop",
        "transport",
        "waiter",
        "status",
        "chunks",
        "size",
        "encoding",
        "keep_alive",
        "lost",
        "idle_since",
        "_header",
        "_until_eof",
        "_headers_done",
        "_fd",
        "_poll",
    )

    def __init__(self, httptools: Any, max_bytes: int, read_timeout: float | None) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._max_bytes = max_bytes
        self._read_timeout = read_timeout
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._end: float | None = None  # the call's deadline (loop clock)
        self._last_read = 0.0
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.chunks: list[bytes] = []
        self.size = 0
        self.encoding = b""
        self.keep_alive = False
        self.lost = False
        self.idle_since = 0.0
        self._header = b""
        self._until_eof = False
        self._headers_done = False
        self._fd = -1
        self._poll: Any = None  # a select.poll on the socket, where the platform has one

    # ------------------------------------------------------------ protocol events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1
        if self._fd >= 0 and _HAS_POLL:
            self._poll = select.poll()  # holds no descriptor of its own: nothing to close
            self._poll.register(self._fd, select.POLLIN)

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():  # bytes on an idle connection: never reuse it
            self._drop()
            return
        self._last_read = self._loop.time()
        try:
            self._parser.feed_data(data)
        except Exception as exc:  # httptools.HttpParserError; a callback's own error is its context
            cause = exc.__context__
            self._fail(cause if isinstance(cause, _Failed) else _Failed("protocol_error", type(exc).__name__))

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self._until_eof and self._headers_done:
                waiter.set_result(None)  # an answer delimited by the close: complete
            else:
                detail = type(exc).__name__ if exc is not None else "closed by the server"
                waiter.set_exception(_Failed("disconnected", detail))
        self._cancel_timer()

    # ------------------------------------------------------------ parser callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-length":
            value = value.strip()
            if not value.isdigit():
                raise _Failed("protocol_error", "malformed Content-Length")
            if len(value) > 18 or int(value) > self._max_bytes:
                raise _Failed("oversized", "")
        elif lower == b"content-encoding":
            self.encoding = value.strip().lower()

    def on_headers_complete(self) -> None:
        parser = self._parser
        self.status = parser.get_status_code()
        self._headers_done = True
        self.keep_alive = parser.should_keep_alive()
        # Neither a length nor chunked: the answer ends with the connection (HTTP/1.0 style).
        self._until_eof = not self.keep_alive

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self._max_bytes:
            raise _Failed("oversized", "")
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self._until_eof = False
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        # The timer stays armed: the next send on this connection reuses it (it stops
        # by itself when it fires with no answer awaited).

    # ------------------------------------------------------------ helpers

    def _fail(self, exc: _Failed) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self._drop()

    def _drop(self) -> None:
        self.lost = True
        self.keep_alive = False
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> float | None:
        """When the awaited answer fails: the read timeout after the last read, or the deadline."""
        due = self._end
        if self._read_timeout is not None:
            read_due = self._last_read + self._read_timeout
            if due is None or read_due < due:
                due = read_due
        return due

    def _arm(self, due: float) -> None:
        """Have the timer fire at ``due`` or earlier (an earlier one re-arms when it fires)."""
        timer = self._timer
        if timer is not None:
            if self._timer_at <= due:
                return
            timer.cancel()
        self._timer_at = due
        self._timer = self._loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self.waiter
        if waiter is None or waiter.done():
            return  # idle: the timer stops until the next send
        now = self._loop.time()
        end = self._end
        if end is not None and now >= end:
            self._fail(_Failed("deadline", "no complete answer within the deadline"))
            return
        read_timeout = self._read_timeout
        if read_timeout is not None and now >= self._last_read + read_timeout:
            self._fail(_Failed("read_timeout", f"no data for {read_timeout:g} s"))
            return
        due = self._due()
        if due is not None:
            self._arm(due)

    def usable(self, now: float, expiry: float | None) -> bool:
        """Still open, quiet and within the keep-alive expiry (checked before reuse)."""
        transport = self.transport
        if self.lost or transport is None or transport.is_closing():
            return False
        if expiry is not None and now - self.idle_since >= expiry:
            return False
        if self._fd >= 0:  # a close (or stray bytes) the loop has not delivered yet
            try:
                if self._poll is not None:  # readable, hung up or failed: not reused
                    return not self._poll.poll(0)
                readable, _, _ = select.select((self._fd,), (), (), 0)
            except (OSError, ValueError):
                return False
            if readable:
                return False
        return True

    def send(self, request: bytes, end: float | None) -> asyncio.Future[None]:
        """Hand the request to the socket and return the future of its answer (failed with
        ``read_timeout`` or ``deadline`` by the connection's timer)."""
        assert self.transport is not None
        self.status = 0
        self.chunks = []
        self.size = 0
        self.encoding = b""
        self._headers_done = False
        self._until_eof = False
        waiter = self._loop.create_future()
        self.waiter = waiter
        if self.lost or self.transport.is_closing():  # closed since the check: the write goes nowhere
            waiter.set_exception(_Failed("disconnected", "closed before the request went out"))
            return waiter
        self.transport.write(request)
        self._end = end
        if end is not None or self._read_timeout is not None:
            self._last_read = self._loop.time()
            due = self._due()
            assert due is not None
            self._arm(due)
        return waiter

    def body(self) -> bytes:
        data = b"".join(self.chunks)
        if self.encoding in (b"gzip", b"deflate", b"x-gzip"):
            inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header
            try:
                data = inflater.decompress(data, self._max_bytes + 1)
            except zlib.error as exc:
                raise _Failed("protocol_error", f"bad {self.encoding.decode()} body: {exc}") from None
            if len(data) > self._max_bytes:
                raise _Failed("oversized", "")
        return data


class _Origin:
    """One host's pool: at most ``limit`` connections, idle ones reused last-in first-out."""

    __slots__ = ("host", "port", "tls", "idle", "count", "waiters")

    def __init__(self, host: str, port: int, tls: bool) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.idle: list[_Connection] = []
        self.count = 0  # connections open or opening
        self.waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()


class NativeTransport:
    """The native backend (asyncio only); see the module docstring.

    :param connect_timeout: seconds to connect (TCP and TLS handshake).
    :param read_timeout: seconds to wait for each read of the answer.
    :param pool_timeout: seconds to wait for a free connection when all are busy.
    :param max_connections: pool size per host (``0``: unlimited).
    :param keepalive_expiry: seconds an idle connection is kept (``None``: for ever).
    :param verify: ``True``, a CA file path or an :class:`ssl.SSLContext` (https only).
    """

    __slots__ = (
        "_httptools",
        "_connect_timeout",
        "_read_timeout",
        "_pool_timeout",
        "_limit",
        "_expiry",
        "_max_bytes",
        "_ssl",
        "_verify",
        "_origins",
        "_urls",
        "_loop",
    )

    isolate = False  # cleans up synchronously after any cancellation
    own_deadline = True  # progress.end, on the connection's timer (see the module docs)
    asyncio_only = True
    watches_writes = True  # it marks the moment a request starts to go out

    def __init__(
        self,
        *,
        connect_timeout: float | None,
        read_timeout: float | None,
        max_connections: int,
        keepalive_expiry: float | None,
        max_bytes: int,
        pool_timeout: float | None = None,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        self._httptools = _import_httptools()
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._pool_timeout = pool_timeout
        self._limit = max_connections
        self._expiry = keepalive_expiry
        self._max_bytes = max_bytes
        self._verify = verify
        self._ssl: ssl.SSLContext | None = ssl_context(verify) if verify is not True else None
        self._origins: dict[tuple[str, int, bool], _Origin] = {}
        self._urls: dict[str, tuple[_Origin, bytes]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------ the call

    async def post(self, url: str, body: bytes, progress: CallProgress) -> tuple[int, bytes]:
        origin, head = self._urls.get(url) or self._target(url)
        end = progress.end
        conn = self._idle(origin)
        if conn is None:
            conn = await self._until(self._acquire(origin), end)
        gate = progress.gate
        if gate is not None:
            progress.gate = None
            checked: float | None = None
            try:
                pending = gate()  # None: nothing to wait for (the common case, no coroutine)
                if pending is not None:
                    checked = self._now()
                    await pending  # it keeps its own waits within progress.end (the client's do)
            except BaseException:
                self._release(origin, conn)  # nothing written: the connection is as it was
                raise
            # Closed while we waited at the gate? Checked again only after a real wait: within
            # a millisecond of the check, a second one cannot narrow the race it leaves open.
            if checked is not None:
                now = self._now()
                if now - checked > _RECHECK_AFTER and not conn.usable(now, None):
                    self._discard(origin, conn)
                    conn = await self._until(self._acquire(origin), end)
        ok = False
        try:
            request = head + str(len(body)).encode("ascii") + b"\r\n\r\n" + body
            progress.written = True  # the same step hands the bytes to the socket
            waiter = conn.send(request, end)
            try:
                await waiter
                data = conn.body()
            except _Failed as exc:
                if exc.reason == "oversized":
                    raise _oversized(conn.status, self._max_bytes) from None
                raise WireError(exc.reason, written=True, detail=exc.detail) from None
            ok = conn.keep_alive and not conn.lost
            return conn.status, data
        finally:
            conn.waiter = None
            if ok:
                self._release(origin, conn)
            else:
                self._discard(origin, conn)

    @staticmethod
    async def _until(step: Awaitable[_T], end: float | None) -> _T:
        """Await a step before the write (a connection, a gate) within the deadline.

        :raises WireError: ``deadline``, not written.
        """
        if end is None:
            return await step
        with anyio.CancelScope(deadline=end):
            return await step
        raise WireError("deadline", written=False, detail="no complete answer within the deadline")

    def _now(self) -> float:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    def _target(self, url: str) -> tuple[_Origin, bytes]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WireError("invalid_url", written=False, detail="not an http(s) URL")
        tls = parts.scheme == "https"
        host = parts.hostname
        port = parts.port or (443 if tls else 80)
        key = (host, port, tls)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin(host, port, tls)
        default_port = port == (443 if tls else 80)
        netloc = (f"[{host}]" if ":" in host else host) + ("" if default_port else f":{port}")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = (
            b"POST " + path.encode("ascii") + b" HTTP/1.1\r\nHost: " + netloc.encode("idna")
            + b"\r\nUser-Agent: " + _USER_AGENT + b"\r\nAccept: " + _ACCEPT
            + b"\r\nContent-Type: " + _CONTENT_TYPE + b"\r\nContent-Length: "
        )  # fmt: skip
        target = (origin, head)
        if len(self._urls) < 16:
            self._urls[url] = target
        return target

    # ------------------------------------------------------------ the pool

    def _idle(self, origin: _Origin) -> _Connection | None:
        """The warmest idle connection still usable (LIFO: the others may expire), or ``None``."""
        idle = origin.idle
        if not idle:
            return None
        now = self._now()
        while idle:
            conn = idle.pop()
            if conn.usable(now, self._expiry):
                return conn
            self._discard(origin, conn)
        return None

    async def _acquire(self, origin: _Origin) -> _Connection:
        self._now()  # binds self._loop
        conn = self._idle(origin)
        if conn is not None:
            return conn
        if self._limit and origin.count >= self._limit:
            handed = await self._wait(origin)
            if handed is not None:
                return handed
        else:
            origin.count += 1
        try:
            return await self._connect(origin)
        except BaseException:
            self._free_slot(origin)
            raise

    async def _wait(self, origin: _Origin) -> _Connection | None:
        """Wait for a connection (or a free slot: ``None``) given back by another call."""
        assert self._loop is not None
        waiter: asyncio.Future[_Connection | None] = self._loop.create_future()
        origin.waiters.append(waiter)
        timer = None
        if self._pool_timeout is not None:
            timer = self._loop.call_later(self._pool_timeout, _expire, waiter, f"no free connection within {self._pool_timeout:g} s")
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()  # handed to us as we were cancelled: pass it on
                if handed is None:
                    self._free_slot(origin)
                else:
                    self._release(origin, handed)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if not waiter.done():
                waiter.cancel()
            try:
                origin.waiters.remove(waiter)
            except ValueError:
                pass

    async def _connect(self, origin: _Origin) -> _Connection:
        loop = self._loop or asyncio.get_running_loop()
        context = None
        if origin.tls:
            if self._ssl is None:
                self._ssl = ssl_context(self._verify)
            context = self._ssl
        try:
            with anyio.fail_after(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._httptools, self._max_bytes, self._read_timeout),
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context is not None else None,
                )
        except TimeoutError as exc:
            detail = f"no connection within {self._connect_timeout:g} s"
            raise WireError("connect_timeout", written=False, detail=detail) from exc
        except ssl.SSLError as exc:
            raise WireError("tls", written=False, detail=f"{type(exc).__name__}: {exc.reason}") from exc
        except (OSError, UnicodeError) as exc:
            raise WireError("connect", written=False, detail=type(exc).__name__) from exc
        return conn

    def _release(self, origin: _Origin, conn: _Connection) -> None:
        """A healthy connection back: to the first waiter, else to the idle stack."""
        waiters = origin.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = self._now()
        origin.idle.append(conn)

    def _discard(self, origin: _Origin, conn: _Connection) -> None:
        """Close a connection that is not to be reused and free its slot."""
        conn._drop()
        self._free_slot(origin)

    def _free_slot(self, origin: _Origin) -> None:
        waiters = origin.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the waiter: count unchanged
                return
        origin.count -= 1

    # ------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        closing = [conn for origin in self._origins.values() for conn in origin.idle]
        self.abandon()
        for _ in range(10):  # bounded: aborted transports finish closing in a loop iteration or two
            if all(conn.lost for conn in closing):
                break
            await asyncio.sleep(0)

    def abandon(self) -> None:
        """Close every idle connection (synchronous: also fine once the loop is gone)."""
        for origin in self._origins.values():
            idle, origin.idle = origin.idle, []
            for conn in idle:
                origin.count -= 1
                transport = conn.transport
                if transport is not None:
                    try:
                        transport.abort()
                    except RuntimeError:  # the loop is closed
                        pass
        self._urls.clear()


def _expire(waiter: asyncio.Future[_Connection | None], detail: str) -> None:
    if not waiter.done():
        waiter.set_exception(WireError("pool_timeout", written=False, detail=detail))
