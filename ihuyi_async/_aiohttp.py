"""The aiohttp backend (extra ``aiohttp``): a native :class:`aiohttp.ClientSession`, asyncio only.

Not routed through httpx: at 100 sends in flight it costs a fraction of
httpx's pool per message (see ``benchmarks/``). Errors are translated here,
from aiohttp's own exception classes, into :class:`WireError`:

* not written: :class:`aiohttp.ClientConnectorError` (refused, DNS, TLS handshake),
  :class:`aiohttp.ConnectionTimeoutError` (connecting), :class:`aiohttp.InvalidURL`,
  and waiting too long for a free pooled connection (``pool_timeout``);
* written: :class:`aiohttp.SocketTimeoutError` (read timeout),
  :class:`aiohttp.ServerDisconnectedError`, any other :class:`aiohttp.ClientError`
  once a connection was handed over (before that, nothing was written).

The pool is ours: a FIFO semaphore of ``max_connections`` in front of an
unlimited connector, so waiting for a free connection is bounded by the pool
timeout and the call's deadline, never by the connect timeout (which aiohttp's
own queue would charge it to), and waiters are served in order.

The session is created lazily on first use, inside the running event loop.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import anyio
import sniffio

from ._transport import FORM_HEADERS, CallProgress, WireError
from ._transport import oversized_error as _oversized

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AiohttpTransport"]

#: The progress of the call running in this task; the connector marks it.
_PROGRESS: ContextVar[CallProgress | None] = ContextVar("ihuyi_aiohttp_progress", default=None)


def _import_aiohttp() -> Any:
    try:
        import aiohttp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "backend='aiohttp' needs the aiohttp extra: pip install 'ihuyi-async[aiohttp]'"
        ) from exc
    return aiohttp


_connector_class: Any = None


def _marking_connector(aio: Any) -> Any:
    """A :class:`aiohttp.TCPConnector` that marks the call's progress when it hands over a
    connection: from then on the request may be on the wire."""
    global _connector_class
    if _connector_class is None:

        class _MarkingConnector(aio.TCPConnector):  # type: ignore[misc]
            async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:  # noqa: ASYNC109
                conn = await super().connect(req, traces, timeout)
                progress = _PROGRESS.get()
                if progress is not None:
                    try:
                        await progress.writing()
                    except BaseException:
                        conn.release()  # cancelled at the gate: nothing was written
                        raise
                return conn

        _connector_class = _MarkingConnector
    return _connector_class


class AiohttpTransport:
    """Backend on one pooled :class:`aiohttp.ClientSession` (asyncio only).

    :param connect_timeout: seconds to connect (TCP and TLS).
    :param read_timeout: seconds to wait for each read of the answer.
    :param pool_timeout: seconds to wait for a free pooled connection.
    :param max_connections: pool size (``0`` means unlimited).
    """

    __slots__ = (
        "_aiohttp",
        "_session",
        "_max_bytes",
        "_timeout",
        "_limit",
        "_keepalive",
        "_pool",
        "_pool_timeout",
        "_ssl",
    )

    isolate = False  # aiohttp cleans up after native cancellation itself
    own_deadline = False
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
        ssl_context: Any = None,
    ) -> None:
        self._aiohttp = _import_aiohttp()
        self._ssl = True if ssl_context is None else ssl_context  # verify=: a custom CA
        self._session: aiohttp.ClientSession | None = None
        self._max_bytes = max_bytes
        self._timeout = self._aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._limit = max_connections
        self._keepalive = keepalive_expiry
        self._pool: asyncio.Semaphore | None = None
        self._pool_timeout = pool_timeout

    def _open(self) -> aiohttp.ClientSession:
        if sniffio.current_async_library() != "asyncio":
            raise RuntimeError("backend='aiohttp' runs on asyncio only; use backend='httpx' on trio")
        aio = self._aiohttp
        connector = _marking_connector(aio)(
            limit=0, limit_per_host=0, keepalive_timeout=self._keepalive or 4.0, ssl=self._ssl
        )
        session: aiohttp.ClientSession = aio.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers=FORM_HEADERS,
            cookie_jar=aio.DummyCookieJar(),
            auto_decompress=True,
        )
        self._pool = asyncio.Semaphore(self._limit) if self._limit else None
        self._session = session
        return session

    async def post(self, url: str, body: bytes, progress: CallProgress) -> tuple[int, bytes]:
        session = self._session or self._open()
        pool = self._pool
        if pool is None:
            return await self._post(session, url, body, progress)
        if pool.locked():
            with anyio.move_on_after(self._pool_timeout) as waited:
                await pool.acquire()
            if waited.cancelled_caught:
                raise WireError(
                    "pool_timeout",
                    written=False,
                    detail=f"no free connection within {self._pool_timeout:g} s",
                )
        else:
            await pool.acquire()  # free: returns without suspending
        try:
            return await self._post(session, url, body, progress)
        finally:
            pool.release()

    async def _post(
        self, session: aiohttp.ClientSession, url: str, body: bytes, progress: CallProgress
    ) -> tuple[int, bytes]:
        aio = self._aiohttp
        _PROGRESS.set(progress)
        try:
            async with session.post(url, data=body, allow_redirects=False) as response:
                status = response.status
                length = response.content_length
                if length is not None and length > self._max_bytes:
                    raise _oversized(status, self._max_bytes)  # not read at all
                if length is not None and "Content-Encoding" not in response.headers:
                    data = await response.read()
                else:
                    buffer = bytearray()
                    while chunk := await response.content.read(65536):
                        buffer += chunk
                        if len(buffer) > self._max_bytes:
                            raise _oversized(status, self._max_bytes)
                    data = bytes(buffer)
                return status, data
        except (aio.ClientConnectorError, aio.ConnectionTimeoutError, aio.InvalidURL) as exc:
            raise WireError(_reason(exc, written=False), written=False, detail=type(exc).__name__) from exc
        except (aio.ClientError, OSError, TimeoutError) as exc:
            raise WireError(_reason(exc, written=True), written=True, detail=type(exc).__name__) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def abandon(self) -> None:
        """Mark the session and connector closed without awaiting (their loop is gone)."""
        if self._session is not None:
            session, self._session = self._session, None
            connector = session.connector
            session.detach()
            if connector is not None:
                connector._close()  # on a closed loop: only marks it closed


def _reason(exc: BaseException, *, written: bool) -> str:
    name = type(exc).__name__
    if not written:
        return "connect_timeout" if "Timeout" in name else "connect"
    if "Timeout" in name:
        return "read_timeout"
    if "Disconnected" in name or "Reset" in name:
        return "disconnected"
    return "read_failed"
