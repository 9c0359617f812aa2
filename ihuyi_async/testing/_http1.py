"""A small, tolerant HTTP/1.1 server for ASGI apps, on asyncio: the emulator's loopback face.

Owns :class:`HttpServer`. Why not uvicorn: its parsers (h11, httptools) are strict where
the provider's real clients are not, and a call refused before the app sees it is a call
the emulator cannot record (#14). h11 answers ``400`` to raw UTF-8 in the request
target (the seed page's GET example pasted into curl) and to the empty lines the
vendor's C and C++ demos send after their body. This server accepts what common web
servers (nginx, Apache, PHP's) accept:

* any number of empty lines (CRLF or bare LF) before a request line (RFC 9112 §2.2);
* raw bytes >= 0x80 in the request target, kept as they came (``raw_path`` and
  ``query_string`` carry the bytes; ``path`` is percent-decoded UTF-8);
* bare-LF line ends, obsolete header folding, HTTP/1.0 and HTTP/1.1, absolute-form targets;
* ``Content-Length`` and ``chunked`` request bodies; GET, POST, HEAD and any other method
  (the app decides what it answers);
* ``Expect: 100-continue`` (curl sends it before bodies over 1 KiB: without an interim
  answer it waits a second);
* keep-alive with an idle timeout (:data:`KEEP_ALIVE_TIMEOUT`), pipelined requests in order.

Answers carry ``Content-Length`` when the app sends its body in one message, else they
are chunked (HTTP/1.1) or closed-delimited (HTTP/1.0), which is how server-sent events
stream. An ASGI extension, ``scope["extensions"]["ihuyi.close"]``, lets the app drop the
connection without an answer (send ``{"type": "ihuyi.close"}``): that is how the
emulator's ``disconnect`` fault reaches a real client. A request this server cannot read
at all (a broken head, a bad chunk size) gets ``400`` and is reported to ``on_bad_request``,
so the emulator records it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes

__all__ = ["KEEP_ALIVE_TIMEOUT", "BadRequest", "HttpServer"]

#: Seconds an idle keep-alive connection stays open: nginx's default, well above the
#: expiry of every common client pool (ihuyi-async 4 s, httpx 5 s, aiohttp 15 s,
#: curl's and browsers' reuse within a run), so a client never writes a request on a
#: connection this server is closing (#12).
KEEP_ALIVE_TIMEOUT = 75.0
_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE = re.compile(rb"\r?\n")
_REASONS = {
    200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found",
    405: "Method Not Allowed", 413: "Content Too Large", 415: "Unsupported Media Type",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[dict[str, Any]]],
     Callable[[MutableMapping[str, Any]], Awaitable[None]]],
    Awaitable[None],
]


class BadRequest(Exception):
    """A request the server cannot read: answered ``status`` and the connection closed."""

    def __init__(self, status: int, reason: str, *, method: str = "", target: bytes = b"") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.method = method
        self.target = target


class _Head:
    __slots__ = ("headers", "keep_alive", "method", "target", "version")

    def __init__(
        self, method: str, target: bytes, version: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        connection = b",".join(v for k, v in headers if k == b"connection").lower()
        if version == "1.0":
            self.keep_alive = b"keep-alive" in connection
        else:
            self.keep_alive = b"close" not in connection

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def parse_head(head: bytes) -> _Head:
    """The request line and headers of one request (``head`` without its empty line).

    :raises BadRequest: no method and target, or a header line without a colon.
    """
    lines = _LINE.split(head)
    tokens = lines[0].split()
    if len(tokens) < 2:
        raise BadRequest(400, "no request line", target=lines[0][:200])
    method = tokens[0].decode("latin-1").upper()
    version = "1.0"
    if len(tokens) >= 3 and tokens[-1].upper().startswith(b"HTTP/"):
        version = "1.1" if tokens[-1][5:] >= b"1.1" else "1.0"
        target = b" ".join(tokens[1:-1])
    else:
        target = b" ".join(tokens[1:])
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t") and headers:  # obsolete folding: part of the last value
            name, value = headers[-1]
            headers[-1] = (name, value + b" " + line.strip())
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            raise BadRequest(400, "a header line without a name", method=method, target=target)
        headers.append((name.strip().lower(), value.strip()))
    return _Head(method, target, version, headers)


def _split_target(target: bytes) -> tuple[bytes, bytes]:
    if target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        after = target.split(b"//", 1)[1]
        slash = after.find(b"/")
        target = after[slash:] if slash >= 0 else b"/"
    path, _, query = target.partition(b"?")
    path, _, _ = path.partition(b"#")
    return path or b"/", query


def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n".encode("latin-1")


class _Connection(asyncio.Protocol):
    """One client connection: reads requests in order and runs the app on each."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._buffer = bytearray()
        self._data = asyncio.Event()
        self._lost = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._eof = False
        self._paused = False
        self.transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._peer: tuple[str, int] | None = None
        self._local: tuple[str, int] | None = None

    # ---------------------------------------------------------------- protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self._peer = (str(peer[0]), int(peer[1])) if peer else None
        self._local = (str(local[0]), int(local[1])) if local else None
        self._server._connections.add(self)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._data.set()
        if len(self._buffer) > 2 * _MAX_HEAD and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._data.set()
        return True  # keep the write side open to finish an answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._lost.set()
        self._data.set()
        self._writable.set()
        self._server._connections.discard(self)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # ---------------------------------------------------------------- reading

    def _take(self, size: int) -> bytes:
        chunk = bytes(self._buffer[:size])
        del self._buffer[:size]
        if self._paused and len(self._buffer) < _MAX_HEAD and self.transport:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    async def _more(self, timeout: float | None) -> bool:
        """Wait for more bytes; ``False`` on end of stream or timeout."""
        if self._eof:
            return False
        self._data.clear()
        size = len(self._buffer)
        # A timer instead of asyncio.wait_for, which costs a task per read.
        handle = (
            asyncio.get_running_loop().call_later(timeout, self._data.set)
            if timeout is not None
            else None
        )
        try:
            await self._data.wait()
        finally:
            if handle is not None:
                handle.cancel()
        if len(self._buffer) == size:
            return False  # timed out, or the stream ended with nothing new
        return True

    async def _read_head(self) -> bytes | None:
        """The next request's head, skipping empty lines before it; ``None`` when the
        client closed or stayed idle past the keep-alive timeout."""
        while True:
            skip = 0
            while skip < len(self._buffer) and self._buffer[skip] in (0x0D, 0x0A):
                skip += 1
            if skip:
                del self._buffer[:skip]
            match = _HEAD_END.search(self._buffer) if self._buffer else None
            if match is not None:
                head = self._take(match.end())
                return head[: match.start()]
            if len(self._buffer) > _MAX_HEAD:
                raise BadRequest(431, "request head too large")
            if self._eof:
                return None
            if not await self._more(self._server.keep_alive_timeout):
                if self._buffer and not self._eof:
                    raise BadRequest(400, "request head incomplete")
                if not self._buffer:
                    return None

    async def _read_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not await self._more(self._server.keep_alive_timeout):
                raise BadRequest(400, "body shorter than announced")
        return self._take(size)

    async def _read_line(self) -> bytes:
        while True:
            index = self._buffer.find(b"\n")
            if index >= 0:
                return self._take(index + 1).rstrip(b"\r\n")
            if len(self._buffer) > _MAX_HEAD:
                raise BadRequest(400, "chunk line too long")
            if not await self._more(self._server.keep_alive_timeout):
                raise BadRequest(400, "chunked body ended early")

    async def _read_body(self, head: _Head) -> bytes:
        encoding = head.header(b"transfer-encoding")
        if encoding is not None and b"chunked" in encoding.lower():
            return await self._read_chunked(head)
        length = head.header(b"content-length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise BadRequest(400, "bad Content-Length", method=head.method, target=head.target) from None
        if size < 0:
            raise BadRequest(400, "bad Content-Length", method=head.method, target=head.target)
        if size > _MAX_BODY:
            raise BadRequest(413, "body too large", method=head.method, target=head.target)
        return await self._read_exact(size)

    async def _read_chunked(self, head: _Head) -> bytes:
        body = bytearray()
        while True:
            line = await self._read_line()
            if not line.strip():
                continue  # tolerate an empty line between chunks
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequest(400, "bad chunk size", method=head.method, target=head.target) from None
            if size == 0:
                while await self._read_line():  # trailers, up to the empty line
                    pass
                return bytes(body)
            if len(body) + size > _MAX_BODY:
                raise BadRequest(413, "body too large", method=head.method, target=head.target)
            body += await self._read_exact(size)
            await self._read_line()  # the CRLF after the chunk

    # ---------------------------------------------------------------- writing

    async def _write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)
        await self._writable.wait()

    # ---------------------------------------------------------------- the loop

    async def _run(self) -> None:
        try:
            while not self._server._closing:
                head_bytes = await self._read_head()
                if head_bytes is None:
                    break
                head = parse_head(head_bytes)
                expect = head.header(b"expect")
                if expect is not None and expect.lower() == b"100-continue" and head.version == "1.1":
                    await self._write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits 1 s without it
                body = await self._read_body(head)
                keep_alive = await self._exchange(head, body)
                if not keep_alive:
                    break
        except BadRequest as exc:
            self._server._bad(exc, self._peer)
            await self._write(
                _status_line(exc.status)
                + b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
                + f"content-length: {len(exc.reason)}\r\n\r\n{exc.reason}".encode("latin-1")
            )
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if self.transport is not None:
                self.transport.close()

    async def _exchange(self, head: _Head, body: bytes) -> bool:
        """Run the app on one request; whether the connection stays open."""
        path, query = _split_target(head.target)
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": head.version,
            "method": head.method,
            "scheme": "http",
            "path": unquote_to_bytes(path).decode("utf-8", "replace"),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": head.headers,
            "client": self._peer,
            "server": self._local,
            "extensions": {"ihuyi.close": {}},
        }
        answer = _ResponseWriter(self, head)
        request_sent = False

        async def receive() -> dict[str, Any]:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            waiters = [asyncio.ensure_future(self._lost.wait()), asyncio.ensure_future(answer.done.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            return {"type": "http.disconnect"}

        try:
            await self._server.app(scope, receive, answer.send)
        except Exception:  # the app failed: answer 500 if nothing went out yet
            if not answer.started and not answer.dropped:
                await answer.send({"type": "http.response.start", "status": 500, "headers": []})
                await answer.send({"type": "http.response.body", "body": b"Internal Server Error"})
            else:
                return False
        if answer.dropped:
            return False
        if not answer.started:
            await answer.send({"type": "http.response.start", "status": 500, "headers": []})
        if not answer.done.is_set():
            await answer.finish()
        return head.keep_alive and answer.keep_alive and not self._lost.is_set()


class _ResponseWriter:
    """The answer to one request, written as the app sends its ASGI messages."""

    def __init__(self, connection: _Connection, head: _Head) -> None:
        self._connection = connection
        self._head = head
        self.started = False
        self.dropped = False
        self.keep_alive = head.keep_alive
        self.done = asyncio.Event()
        self._status = 200
        self._headers: list[tuple[bytes, bytes]] = []
        self._mode = ""  # "length", "chunked" or "close" once the head is out

    def _head_bytes(self, extra: list[tuple[bytes, bytes]]) -> bytes:
        lines = [_status_line(self._status)]
        for name, value in [*self._headers, *extra]:
            lines.append(name + b": " + value + b"\r\n")
        if not self.keep_alive:
            lines.append(b"connection: close\r\n")
        elif self._head.version == "1.0":
            lines.append(b"connection: keep-alive\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    async def send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "ihuyi.close":
            self.dropped = True
            self.done.set()
            transport = self._connection.transport
            if transport is not None:
                transport.close()
            return
        if kind == "http.response.start":
            self.started = True
            self._status = int(message["status"])
            self._headers = [
                (bytes(name).lower(), bytes(value)) for name, value in message.get("headers", [])
            ]
            if any(name == b"connection" and b"close" in value.lower() for name, value in self._headers):
                self.keep_alive = False
            return
        if kind != "http.response.body" or self.done.is_set():
            return
        body = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        head_only = self._head.method == "HEAD"
        if not self._mode:
            has_length = any(name == b"content-length" for name, _ in self._headers)
            extra: list[tuple[bytes, bytes]] = []
            if has_length:
                self._mode = "length"
            elif not more:
                self._mode = "length"
                extra.append((b"content-length", str(len(body)).encode("latin-1")))
            elif self._head.version == "1.1":
                self._mode = "chunked"
                extra.append((b"transfer-encoding", b"chunked"))
            else:
                self._mode = "close"
                self.keep_alive = False
            data = self._head_bytes(extra)
            if not head_only:
                data += self._frame(body)
            await self._connection._write(data)
        elif body and not head_only:
            await self._connection._write(self._frame(body))
        if not more:
            await self.finish()

    def _frame(self, body: bytes) -> bytes:
        if self._mode == "chunked":
            return f"{len(body):x}\r\n".encode("latin-1") + body + b"\r\n" if body else b""
        return body

    async def finish(self) -> None:
        if self.done.is_set():
            return
        if not self._mode:
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        self.done.set()
        if self._mode == "chunked" and self._head.method != "HEAD":
            await self._connection._write(b"0\r\n\r\n")


class HttpServer:
    """Serve an ASGI app over HTTP/1.1 on a bound socket, in the running asyncio loop.

    :param app: an ASGI 3 application (HTTP scopes only).
    :param keep_alive_timeout: seconds an idle connection stays open.
    :param on_bad_request: called with each :class:`BadRequest` and the peer, so the
        app's owner can record calls the app never saw.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT,
        on_bad_request: Callable[[BadRequest, tuple[str, int] | None], None] | None = None,
    ) -> None:
        self.app = app
        self.keep_alive_timeout = keep_alive_timeout
        self.on_bad_request = on_bad_request
        self.started = False
        self._closing = False
        self._connections: set[_Connection] = set()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _bad(self, exc: BadRequest, peer: tuple[str, int] | None) -> None:
        if self.on_bad_request is not None:
            self.on_bad_request(exc, peer)

    async def serve(self, sock: Any, *, on_ready: Callable[[HttpServer], None] | None = None) -> None:
        """Accept connections on ``sock`` until :meth:`shutdown`; then close every connection."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await self._loop.create_server(lambda: _Connection(self), sock=sock)
        self.started = True
        try:
            if on_ready is not None:
                on_ready(self)
            await self._stop.wait()
        finally:
            self._closing = True
            server.close()
            for connection in list(self._connections):
                if connection.transport is not None:
                    connection.transport.close()
                if connection._task is not None:
                    connection._task.cancel()
            tasks = [c._task for c in list(self._connections) if c._task is not None]
            if tasks:
                await asyncio.wait(tasks, timeout=2.0)

    def shutdown(self) -> None:
        """Stop serving (from any thread)."""
        loop, stop = self._loop, self._stop
        if loop is None or stop is None:
            self._closing = True
            return
        try:
            loop.call_soon_threadsafe(stop.set)
        except RuntimeError:  # the loop already closed
            pass
