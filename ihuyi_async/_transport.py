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

Answers larger than ``max_bytes`` are not read further: :class:`ProtocolError`
with ``reason="oversized"``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol
from urllib.parse import quote_plus

import httpx

from ._exceptions import ProtocolError

__all__ = [
    "FORM_HEADERS",
    "HttpxTransport",
    "ShardedPoolTransport",
    "Transport",
    "WireError",
    "form_quote",
]

FORM_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
    "Accept": "application/json, text/xml;q=0.9, */*;q=0.5",
}


class _QuotedChars(dict[str, str]):
    """Character -> its ``quote_plus`` form, filled on demand, bounded."""

    __slots__ = ()

    def __missing__(self, char: str) -> str:
        quoted = quote_plus(char)  # UnicodeEncodeError on a lone surrogate, as quote_plus
        if len(self) >= 4096:  # bounded; relearn what is in use now
            self.clear()
        self[char] = quoted
        return quoted


_quoted_char = _QuotedChars().__getitem__


def form_quote(text: str) -> str:
    """``urllib.parse.quote_plus(text)``, byte for byte, about twice as fast on Chinese text.

    UTF-8 encodes each character on its own, so quoting character by character
    (each looked up once, then cached) gives the same string as quoting the bytes.
    """
    return "".join(map(_quoted_char, text))


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


class Transport(Protocol):
    """What the client needs of a backend."""

    async def post(self, url: str, body: bytes) -> tuple[int, bytes]:
        """POST a form-encoded body; return ``(status, body)``.

        :raises WireError: the request failed; ``written`` says whether it may have arrived.
        :raises ProtocolError: the answer exceeded the size cap.
        """
        ...

    async def aclose(self) -> None: ...


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
    keeps reusing one connection); the limits (connections, keep-alive, expiry)
    are divided between the shards, so their totals are the configured ones.
    Timeouts, errors and everything else are httpx's own.

    :param limits: total limits; unlimited connections keep a single pool.
    """

    __slots__ = ("_pools", "_active")

    def __init__(self, limits: httpx.Limits, *, shard_size: int = SHARD_SIZE) -> None:
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
                )
            )
        self._active = [0] * shards

    @property
    def shards(self) -> int:
        return len(self._pools)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        active = self._active
        index = active.index(min(active)) if len(active) > 1 else 0
        active[index] += 1
        try:
            response = await self._pools[index].handle_async_request(request)
        except BaseException:
            active[index] -= 1
            raise
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        response.stream = _CountedStream(stream, self, index)
        return response

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


class HttpxTransport:
    """Backend on one pooled :class:`httpx.AsyncClient` (asyncio and trio).

    :param client: the pooled client; closed by :meth:`aclose` only when ``owned``.
    """

    __slots__ = ("_client", "_owned", "_max_bytes", "_extensions", "_headers", "_urls")

    def __init__(self, client: httpx.AsyncClient, *, owned: bool, max_bytes: int) -> None:
        self._client = client
        self._owned = owned
        self._max_bytes = max_bytes
        self._extensions = {"timeout": client.timeout.as_dict()}
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

    async def post(self, url: str, body: bytes) -> tuple[int, bytes]:
        client = self._client
        if self._owned:
            # Our own client carries no cookies, auth or base URL: skip build_request's merging.
            request = httpx.Request(
                "POST", self._url(url), content=body, headers=self._headers, extensions=self._extensions
            )
        else:
            request = client.build_request("POST", url, content=body, headers=FORM_HEADERS)
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except (httpx.HTTPError, OSError) as exc:
            raise map_httpx_error(exc) from exc
        try:
            status = response.status_code
            length = response.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > self._max_bytes:
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
        """Read a body of unannounced size, keeping at most ``max_bytes``.

        The stream is drained rather than abandoned (an abandoned async generator
        is finalised late and warns on trio), up to a hard bound of 64 × the cap.
        """
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size <= self._max_bytes:
                chunks.append(chunk)
            elif size > 64 * self._max_bytes:
                break
        if size > self._max_bytes:
            raise oversized_error(status, self._max_bytes)
        return b"".join(chunks)

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()
