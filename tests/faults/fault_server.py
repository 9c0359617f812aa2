"""A loopback HTTP/1.1 server that misbehaves on purpose, for the fault suite (not the emulator).

Raw asyncio streams in a thread of its own (its own event loop), so it serves
clients on any event loop (asyncio, trio) and keeps answering whatever the
client's loop does (cancellations, stalls). It answers the legacy flavour's
``Submit``, ``GetNum`` and ``AddTemplate`` (``/webservice/sms.php?method=…``)
with valid JSON when healthy, counts every complete request head per method
(or per path for anything else), and acts out one selectable fault
(:data:`FAULTS`), switched at any time with :meth:`FaultServer.set_fault`.

Two keep-alive behaviours model the "server closed the idle connection when the
client reused it" race:

* fault ``"keepalive_race"`` (deterministic): a connection that already served a
  request reads the next request head and body, then closes without answering;
* ``idle_timeout=T, close_lag=L`` (timing): the server gives up an idle
  connection ``T - L`` seconds after its last answer and its close (FIN) reaches
  the client ``L`` later; a request arriving in between is read and dropped.
  That is a server with keep-alive timeout ``T`` seen across a link of one-way
  latency ``L`` (the client's idle clock starts ``L`` after the server's): a
  client whose expiry is ``T`` reuses connections the server already gave up.

Every wait is bounded: :meth:`stop` cancels every connection handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FAULTS", "FaultServer", "SUBMIT_OK", "refused_port"]

#: Every fault kind the server can act out (besides ``"healthy"``).
FAULTS: tuple[str, ...] = (
    "refused",  # the port is closed: nothing listens
    "hang",  # read the request, never answer
    "close_after_read",  # read the request, close (FIN) without answering
    "garbage",  # 200 with an HTML body
    "trickle",  # a valid Content-Length body, 1 byte / 200 ms
    "http_5xx",  # 502 Bad Gateway
    "reset_mid_body",  # half the body, then RST (SO_LINGER 0)
    "truncated",  # Content-Length larger than the body sent, then FIN
    "oversized",  # a 10 MiB body with its Content-Length
    "oversized_chunked",  # a 10 MiB chunked body, as fast as the socket takes it
    "redirect",  # 302 to another path
    "chunked_endless_fast",  # a chunked body that never ends, ~50 KiB/s
    "chunked_endless_slow",  # a chunked body that never ends, 1 byte / 200 ms
    "chunked_slow_finite",  # a valid answer in 4-byte chunks every 200 ms (~3.6 s)
    "keepalive_race",  # a reused connection: read the request, close without answering
)

SUBMIT_OK = '{{"code":2,"msg":"提交成功","smsid":"{smsid}"}}'
GETNUM_OK = '{"code":2,"msg":"查询成功","num":100}'
TEMPLATE_OK = '{"code":2,"msg":"提交成功","templateid":1001}'
GARBAGE = b"<html><title>Service Temporarily Unavailable</title></html>"
BAD_GATEWAY = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
REDIRECT_TARGET = "/moved/sms.php"
TEN_MIB = 10 * 1024 * 1024
TICK = 0.2  # seconds between the slow faults' bytes

_METHODS = {"submit": "Submit", "getnum": "GetNum", "addtemplate": "AddTemplate"}


def refused_port() -> int:
    """A loopback port on which nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _key(target: str) -> str:
    """``Submit`` / ``GetNum`` / ``AddTemplate`` for the legacy paths, else the path."""
    parts = urlsplit(target)
    if parts.path.lower().endswith("/webservice/sms.php"):
        method = parse_qs(parts.query).get("method", [""])[0].lower()
        return _METHODS.get(method, parts.path)
    return parts.path


class _Head:
    __slots__ = ("key", "length", "close", "chunked")

    def __init__(self, raw: bytes) -> None:
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        self.key = _key(parts[1] if len(parts) > 1 else "/")
        self.length = 0
        self.close = False
        self.chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            if name == "content-length" and value.isdigit():
                self.length = int(value)
            elif name == "connection" and value.lower() == "close":
                self.close = True
            elif name == "transfer-encoding" and "chunked" in value.lower():
                self.chunked = True


class FaultServer:
    """The fault server on ``127.0.0.1`` (a free port), in a daemon thread.

    >>> with FaultServer() as server:                       # doctest: +SKIP
    ...     server.set_fault("trickle")
    ...     client = IhuyiClient("a", "k", base_url=server.url)

    :param latency: ``(low, high)`` seconds added before each healthy answer (uniform,
        seeded).
    :param idle_timeout: seconds after which an idle keep-alive connection is given up
        (``None``: kept until the client closes it).
    :param close_lag: seconds between giving a connection up and its FIN (see above).
    :param seed: the latency draws' seed.

    :ivar seen: complete request heads received, by method (``"Submit"``…) or path.
    :ivar opened: connections accepted so far.
    """

    def __init__(
        self,
        *,
        latency: tuple[float, float] = (0.0, 0.0),
        idle_timeout: float | None = None,
        close_lag: float = 0.0,
        seed: int = 0,
    ) -> None:
        if idle_timeout is not None and not 0 <= close_lag < idle_timeout:
            raise ValueError("close_lag must be in [0, idle_timeout)")
        self.latency = latency
        self.idle_timeout = idle_timeout
        self.close_lag = close_lag
        self.fault = "healthy"
        self.seen: Counter[str] = Counter()
        self.dropped = 0  # requests read on a connection the server had given up
        self.opened = 0
        self._open = 0
        self._random = random.Random(seed)
        self._serial = itertools.count(1)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._port = 0
        self._ready = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def open_connections(self) -> int:
        """Connections currently open on the server's side."""
        with self._lock:
            return self._open

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name="fault-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault server did not start")
        self._call(self._listen())

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.call_soon(self._ready.set)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _listen(self) -> None:
        if self._server is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        self._port = int(sock.getsockname()[1])
        self._server = await asyncio.start_server(self._handle, sock=sock, backlog=1024)

    async def _unlisten(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()  # the listening socket only; open connections stay

    async def _shutdown(self) -> None:
        await self._unlisten()
        tasks = list(self._handlers)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def stop(self) -> None:
        """Close every connection and the listening socket, stop the thread (idempotent)."""
        if self._thread is None or self._loop is None:
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> FaultServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ control

    def set_fault(self, fault: str) -> None:
        """Switch the behaviour for every request from now on (``"healthy"`` or a fault).

        ``"refused"`` closes the listening socket (connections already open stay);
        any other value listens again on the same port.
        """
        if fault != "healthy" and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        self.fault = fault
        self._call(self._unlisten() if fault == "refused" else self._listen())

    def reset_counts(self) -> None:
        with self._lock:
            self.seen.clear()
            self.dropped = 0

    def count(self, key: str) -> int:
        """Request heads received for ``key`` (``"Submit"``, ``"GetNum"`` or a path)."""
        with self._lock:
            return self.seen[key]

    def wait_closed(self, timeout: float = 5.0) -> int:
        """Wait (bounded) until the server has no open connection; the number left."""
        end = time.monotonic() + timeout
        while self.open_connections and time.monotonic() < end:
            time.sleep(0.01)
        return self.open_connections

    # ------------------------------------------------------------------ serving

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        with self._lock:
            self.opened += 1
            self._open += 1
        try:
            served = 0
            while True:
                head = await self._next_head(reader, served)
                if head is None:
                    return
                if head.length:
                    await reader.readexactly(head.length)
                fault = self.fault
                if fault == "keepalive_race" and served:
                    return  # read it, then close without a byte of answer
                keep = await self._answer(head, fault, reader, writer)
                served += 1
                if not keep or head.close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        except asyncio.CancelledError:  # stop(): end quietly (asyncio logs a cancelled handler)
            return
        finally:
            self._handlers.discard(task)
            with self._lock:
                self._open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _next_head(self, reader: asyncio.StreamReader, served: int) -> _Head | None:
        """The next request head (counted), or ``None`` when the connection should end."""
        idle = self.idle_timeout
        try:
            if idle is None or not served:
                raw = await reader.readuntil(b"\r\n\r\n")
            else:
                try:
                    raw = await asyncio.wait_for(
                        reader.readuntil(b"\r\n\r\n"), idle - self.close_lag
                    )
                except TimeoutError:
                    # Given up: what arrives before the FIN reaches the client is dropped.
                    with contextlib.suppress(TimeoutError):
                        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.close_lag)
                        head = _Head(raw)
                        with self._lock:
                            self.seen[head.key] += 1
                            self.dropped += 1
                    return None
        except asyncio.IncompleteReadError:
            return None
        head = _Head(raw)
        with self._lock:
            self.seen[head.key] += 1
        return head

    def _ok_body(self, key: str) -> bytes:
        if key == "Submit":
            smsid = f"{10**19 + next(self._serial):020d}"
            return SUBMIT_OK.format(smsid=smsid).encode()
        if key == "GetNum":
            return GETNUM_OK.encode()
        return TEMPLATE_OK.encode()

    async def _answer(
        self,
        head: _Head,
        fault: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Act out ``fault`` for one request; whether the connection may be reused."""
        if head.key not in _METHODS.values():
            writer.write(_response(404, b"Not Found", "text/plain"))
            return True
        body = self._ok_body(head.key)
        if fault in ("healthy", "refused", "keepalive_race"):
            low, high = self.latency
            if high > 0:
                await asyncio.sleep(self._random.uniform(low, high))
            writer.write(_response(200, body))
            return True
        if fault == "hang":
            while await reader.read(65536):  # until the client goes away
                pass
            return False
        if fault == "close_after_read":
            return False
        if fault == "garbage":
            writer.write(_response(200, GARBAGE, "text/html"))
            return True
        if fault == "http_5xx":
            writer.write(_response(502, BAD_GATEWAY, "text/html"))
            return True
        if fault == "redirect":
            writer.write(_response(302, b"", "text/html", extra=f"Location: {REDIRECT_TARGET}\r\n"))
            return True
        if fault == "trickle":
            writer.write(_head(200, len(body)))
            for i in range(len(body)):
                await writer.drain()
                await asyncio.sleep(TICK)
                writer.write(body[i : i + 1])
            return True
        if fault == "reset_mid_body":
            writer.write(_head(200, len(body)) + body[: len(body) // 2])
            await writer.drain()
            await asyncio.sleep(0.05)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # RST
            return False
        if fault == "truncated":
            writer.write(_head(200, len(body) + 100) + body)
            await writer.drain()
            return False
        if fault == "oversized":
            writer.write(_head(200, TEN_MIB))
            chunk = b"x" * 65536
            for _ in range(TEN_MIB // len(chunk)):
                writer.write(chunk)
                await writer.drain()
            return True
        if fault == "oversized_chunked":
            writer.write(_head(200, None))
            chunk = _chunk(b"x" * 65536)
            for _ in range(TEN_MIB // 65536):
                writer.write(chunk)
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            return True
        if fault in ("chunked_endless_fast", "chunked_endless_slow"):
            fast = fault == "chunked_endless_fast"
            writer.write(_head(200, None))
            piece = _chunk(b"x" * 5120) if fast else _chunk(b"x")
            while True:  # until the client goes away (or the server stops)
                await writer.drain()
                await asyncio.sleep(0.1 if fast else TICK)
                writer.write(piece)
        if fault == "chunked_slow_finite":
            writer.write(_head(200, None))
            for i in range(0, len(body), 4):
                await writer.drain()
                await asyncio.sleep(TICK)
                writer.write(_chunk(body[i : i + 4]))
            writer.write(b"0\r\n\r\n")
            return True
        raise AssertionError(f"unhandled fault {fault!r}")


def _head(
    status: int, length: int | None, content_type: str = "application/json", extra: str = ""
) -> bytes:
    reason = {200: "OK", 302: "Found", 404: "Not Found", 502: "Bad Gateway"}[status]
    size = "Transfer-Encoding: chunked\r\n" if length is None else f"Content-Length: {length}\r\n"
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type};charset=utf-8\r\n"
        f"{size}{extra}\r\n"
    ).encode("latin-1")


def _response(
    status: int, body: bytes, content_type: str = "application/json", extra: str = ""
) -> bytes:
    return _head(status, len(body), content_type, extra) + body


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"
