"""The aiohttp backend (extra ``aiohttp``): a native :class:`aiohttp.ClientSession`, asyncio only.

Not routed through httpx: at 100 sends in flight it costs a fraction of
httpx's pool per message (see ``benchmarks/``). Errors are translated here,
from aiohttp's own exception classes, into :class:`WireError`:

* not written: :class:`aiohttp.ClientConnectorError` (refused, DNS, TLS handshake),
  :class:`aiohttp.ConnectionTimeoutError` (connect or waiting for a pooled connection),
  :class:`aiohttp.InvalidURL`;
* written: :class:`aiohttp.SocketTimeoutError` (read timeout),
  :class:`aiohttp.ServerDisconnectedError`, any other :class:`aiohttp.ClientError`.

The session is created lazily on first use, inside the running event loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sniffio

from ._transport import FORM_HEADERS, WireError
from ._transport import oversized_error as _oversized

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AiohttpTransport"]


def _import_aiohttp() -> Any:
    try:
        import aiohttp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "backend='aiohttp' needs the aiohttp extra: pip install 'ihuyi-async[aiohttp]'"
        ) from exc
    return aiohttp


class AiohttpTransport:
    """Backend on one pooled :class:`aiohttp.ClientSession` (asyncio only).

    :param connect_timeout: seconds to connect or to wait for a pooled connection.
    :param read_timeout: seconds to wait for each read of the answer.
    :param max_connections: pool size (``0`` means unlimited).
    """

    __slots__ = ("_aiohttp", "_session", "_max_bytes", "_timeout", "_limit", "_keepalive")

    def __init__(
        self,
        *,
        connect_timeout: float | None,
        read_timeout: float | None,
        max_connections: int,
        keepalive_expiry: float | None,
        max_bytes: int,
    ) -> None:
        self._aiohttp = _import_aiohttp()
        self._session: aiohttp.ClientSession | None = None
        self._max_bytes = max_bytes
        self._timeout = self._aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=read_timeout
        )
        self._limit = max_connections
        self._keepalive = keepalive_expiry

    def _open(self) -> aiohttp.ClientSession:
        if sniffio.current_async_library() != "asyncio":
            raise RuntimeError("backend='aiohttp' runs on asyncio only; use backend='httpx' on trio")
        aio = self._aiohttp
        connector = aio.TCPConnector(
            limit=self._limit, limit_per_host=0, keepalive_timeout=self._keepalive or 15.0
        )
        session: aiohttp.ClientSession = aio.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers=FORM_HEADERS,
            cookie_jar=aio.DummyCookieJar(),
            auto_decompress=True,
        )
        self._session = session
        return session

    async def post(self, url: str, body: bytes) -> tuple[int, bytes]:
        aio = self._aiohttp
        session = self._session or self._open()
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


def _reason(exc: BaseException, *, written: bool) -> str:
    name = type(exc).__name__
    if not written:
        return "connect_timeout" if "Timeout" in name else "connect"
    if "Timeout" in name:
        return "read_timeout"
    if "Disconnected" in name or "Reset" in name:
        return "disconnected"
    return "read_failed"
