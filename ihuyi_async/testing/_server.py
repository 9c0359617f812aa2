"""The emulator on a real loopback socket, served in a background thread.

Owns :class:`EmulatorServer` and :func:`serve`. The HTTP server is the package's own
(:mod:`~ihuyi_async.testing._http1`): tolerant of what real clients send (raw UTF-8 in
the request line, empty lines around requests, chunked bodies), so every call reaches
the emulator and is recorded, and keeping idle connections open 75 seconds, longer than
any common client keeps them (#12, #14). The server runs its own asyncio event loop in a
daemon thread, next to a push dispatcher (see :meth:`Emulator.pushing`), so it serves
clients of any event loop (asyncio, trio), thread or process. The emulator's model is
guarded by a lock, so tests may inspect it while the server runs.

A latency fault sleeps on the emulator's clock *in the server's thread*: give a
served emulator a :class:`~ihuyi_async.SystemClock` or a
:class:`~ihuyi_async.FakeClock` with ``auto_advance=True`` when you inject latency.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from collections.abc import Callable
from types import TracebackType

import anyio.to_thread

from ._emulator import Emulator
from ._http1 import KEEP_ALIVE_TIMEOUT, BadRequest, HttpServer

__all__ = ["KEEP_ALIVE_TIMEOUT", "EmulatorServer", "serve"]

_START_TIMEOUT = 10.0


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``.

    :raises OSError: the address is taken or cannot be bound.
    """
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets whose proto
    # says TCP, and accepted sockets inherit it. Without it every answer stalls ~40 ms
    # on Nagle's algorithm and delayed ACKs.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _recorder(emulator: Emulator) -> Callable[[BadRequest, tuple[str, int] | None], None]:
    def record(exc: BadRequest, peer: tuple[str, int] | None) -> None:
        emulator.record_unreadable(exc.method, exc.target, exc.status, exc.reason)

    return record


async def serve(
    emulator: Emulator,
    sock: socket.socket,
    *,
    on_ready: Callable[[HttpServer], None] | None = None,
    keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT,
) -> None:
    """Serve ``emulator`` on the bound socket ``sock`` until the server's
    :meth:`~HttpServer.shutdown` (or SIGTERM when run in the main thread).

    Runs under asyncio. ``on_ready`` gets the server once it listens.
    """
    server = HttpServer(
        emulator.app, keep_alive_timeout=keep_alive_timeout, on_bad_request=_recorder(emulator)
    )
    loop = asyncio.get_running_loop()
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        loop.add_signal_handler(signal.SIGTERM, server.shutdown)
    try:
        async with emulator.pushing():
            await server.serve(sock, on_ready=on_ready)
    finally:
        if in_main:
            loop.remove_signal_handler(signal.SIGTERM)


class EmulatorServer:
    """An :class:`Emulator` served over HTTP on loopback, in a background thread.

    >>> emulator = Emulator()
    >>> with EmulatorServer(emulator) as server:          # doctest: +SKIP
    ...     client = IhuyiClient("test-apiid", "test-apikey", base_url=server.url)

    Usable as a context manager (``with``) or an async one (``async with``, which
    starts and stops the thread without blocking the event loop).

    :param port: ``0`` picks a free port; read it from :attr:`port` once started.
    :param keep_alive_timeout: seconds an idle client connection stays open (default 75,
        nginx's; above every common client's pool expiry).
    """

    def __init__(
        self,
        emulator: Emulator,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT,
    ) -> None:
        self.emulator = emulator
        self.host = host
        self.keep_alive_timeout = keep_alive_timeout
        self._requested_port = port
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._server: HttpServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        """The port listened on.

        :raises RuntimeError: the server was not started.
        """
        if self._sock is None:
            raise RuntimeError("the server is not started")
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the ``base_url`` to give a client."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind, start the thread and return once the server accepts connections.

        :raises RuntimeError: already started, or the server failed to start.
        """
        if self._thread is not None:
            raise RuntimeError("the server is already started")
        self._sock = _bind(self.host, self._requested_port)
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name="ihuyi-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT) or self._server is None:
            self.stop()
            raise RuntimeError(f"the emulator server did not start: {self._error!r}")

    def _run(self) -> None:
        assert self._sock is not None

        def ready(server: HttpServer) -> None:
            self._server = server
            self._ready.set()

        try:
            asyncio.run(
                serve(
                    self.emulator,
                    self._sock,
                    on_ready=ready,
                    keep_alive_timeout=self.keep_alive_timeout,
                )
            )
        except BaseException as exc:  # pragma: no cover - reported by start()
            self._error = exc
        finally:
            self._ready.set()

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(_START_TIMEOUT)
        if self._sock is not None:
            self._sock.close()
        self._thread = None
        self._server = None

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmulatorServer:
        await anyio.to_thread.run_sync(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await anyio.to_thread.run_sync(self.stop)

    def __repr__(self) -> str:
        where = self.url if self._sock is not None else "not started"
        return f"EmulatorServer({where})"
