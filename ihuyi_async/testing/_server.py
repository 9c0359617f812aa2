"""The emulator on a real loopback socket, served by uvicorn in a background thread.

Owns :class:`EmulatorServer` and :func:`serve`. uvicorn is imported when a server
starts, not before. The server runs its own asyncio event loop in a daemon
thread, next to a push dispatcher (see :meth:`Emulator.pushing`), so it serves
clients of any event loop (asyncio, trio), thread or process. The emulator's
model is guarded by a lock, so tests may inspect it while the server runs.

A latency fault sleeps on the emulator's clock *in the server's thread*: give a
served emulator a :class:`~ihuyi_async.SystemClock` or a
:class:`~ihuyi_async.FakeClock` with ``auto_advance=True`` when you inject latency.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

import anyio.to_thread

from ._emulator import Emulator

if TYPE_CHECKING:
    import uvicorn

__all__ = ["EmulatorServer", "serve"]

_START_TIMEOUT = 10.0


def _bind(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets whose proto
    # says TCP, and accepted sockets inherit it. Without it every answer (headers and
    # body are two writes) stalls ~40 ms on Nagle's algorithm and delayed ACKs.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _config(emulator: Emulator) -> uvicorn.Config:
    import uvicorn

    return uvicorn.Config(
        emulator.app,
        interface="asgi3",
        http="h11",
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=2,
    )


async def serve(
    emulator: Emulator,
    sock: socket.socket,
    *,
    on_ready: Callable[[uvicorn.Server], None] | None = None,
) -> None:
    """Serve ``emulator`` on the bound socket ``sock`` until the server is told to exit
    (``server.should_exit = True``, or SIGINT/SIGTERM in the main thread).

    Runs under asyncio (uvicorn's loop). ``on_ready`` gets the server once it listens.
    """
    import uvicorn

    server = uvicorn.Server(_config(emulator))
    async with emulator.pushing():
        task = asyncio.create_task(server.serve(sockets=[sock]))
        for _ in range(int(_START_TIMEOUT / 0.005)):
            if server.started or task.done():
                break
            await asyncio.sleep(0.005)
        if server.started and on_ready is not None:
            on_ready(server)
        await task


class EmulatorServer:
    """An :class:`Emulator` served over HTTP on loopback by uvicorn, in a background thread.

    >>> emulator = Emulator()
    >>> with EmulatorServer(emulator) as server:          # doctest: +SKIP
    ...     client = IhuyiClient("test-apiid", "test-apikey", base_url=server.url)

    Usable as a context manager (``with``) or an async one (``async with``, which
    starts and stops the thread without blocking the event loop).

    :param port: ``0`` picks a free port; read it from :attr:`port` once started.
    """

    def __init__(self, emulator: Emulator, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator
        self.host = host
        self._requested_port = port
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
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
        return f"http://{self.host}:{self.port}"

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

        def ready(server: uvicorn.Server) -> None:
            self._server = server
            self._ready.set()

        try:
            asyncio.run(serve(self.emulator, self._sock, on_ready=ready))
        except BaseException as exc:  # pragma: no cover - reported by start()
            self._error = exc
        finally:
            self._ready.set()

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
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
