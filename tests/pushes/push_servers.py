"""Loopback servers for the push tests: FastAPI under uvicorn, and aiohttp.

Both bind 127.0.0.1 on port 0 and run as tasks of the test's event loop. Startup
needs no wait (the socket listens before uvicorn starts: early connections queue
in its backlog); shutdown is awaited before the test ends.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import uvicorn
from aiohttp import web
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from ihuyi_async.pushes import PushReceiver, aiohttp_app

ServeFactory = Callable[[PushReceiver], AbstractAsyncContextManager[str]]


@asynccontextmanager
async def serve_asgi(app: FastAPI) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1, port 0; yield ``http://127.0.0.1:<port>``."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_config=None,
        access_log=False,
        lifespan="on",
        http="h11",
        ws="none",
        proxy_headers=False,  # the receiver judges X-Forwarded-For itself
    )
    server = uvicorn.Server(config)
    # Bind and listen before uvicorn starts: connections queue in the backlog,
    # so no readiness polling is needed.
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = True
    finally:
        sock.close()


@asynccontextmanager
async def serve_aiohttp(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` with an AppRunner and a TCPSite on 127.0.0.1, port 0."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def fastapi_app(receiver: PushReceiver) -> FastAPI:
    """A FastAPI app with the receiver mounted at ``/ihuyi/push`` beside a route of its own."""
    app = FastAPI()

    @app.get("/health", response_class=PlainTextResponse)
    async def health() -> str:
        return "ok"

    app.mount("/ihuyi/push", receiver)
    return app


def aiohttp_parent_app(receiver: PushReceiver) -> web.Application:
    """An aiohttp app with the receiver as a sub-app at ``/ihuyi/push/``."""
    app = web.Application()
    app.add_subapp("/ihuyi/push/", aiohttp_app(receiver))
    return app


@asynccontextmanager
async def serve_fastapi(receiver: PushReceiver) -> AsyncIterator[str]:
    async with serve_asgi(fastapi_app(receiver)) as root:
        yield f"{root}/ihuyi/push/"


@asynccontextmanager
async def serve_aiohttp_receiver(receiver: PushReceiver) -> AsyncIterator[str]:
    async with serve_aiohttp(aiohttp_parent_app(receiver)) as root:
        yield f"{root}/ihuyi/push/"
