"""A small HTTP/1.1 server for the native backend's tests, in the test's own event loop.

It answers Submit with the provider's success JSON on keep-alive connections and
can be told what to do with the next request (``mode``), or to close every open
connection at once (:meth:`PlainServer.close_connections`), over plain TCP or TLS.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Literal

SUBMIT_OK = b'{"code":2,"msg":"\xe6\x8f\x90\xe4\xba\xa4\xe6\x88\x90\xe5\x8a\x9f","smsid":"16842079209571524017"}'

Mode = Literal["ok", "close_after_read", "ok_then_close", "hang"]


class PlainServer:
    """``async with PlainServer() as server``: ``server.url``; ``seen`` counts requests read."""

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.mode: Mode = "ok"
        self.seen = 0
        self.opened = 0
        self.closed = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"

    async def __aenter__(self) -> PlainServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.close_connections()
        await self._server.wait_closed()

    def close_connections(self) -> None:
        """Close every open connection now (no answer to what is in flight)."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.seen += 1
                if self.mode == "close_after_read":
                    writer.transport.abort()
                    return
                if self.mode == "hang":  # never answers: reads on until the client gives up
                    await reader.read()
                    return
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(SUBMIT_OK)).encode()
                    + b"\r\n\r\n"
                    + SUBMIT_OK
                )
                await writer.drain()
                if self.mode == "ok_then_close":
                    writer.close()
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
            self.closed.set()
