"""A fast fake Submit endpoint for the benchmarks: raw asyncio streams, HTTP/1.1 keep-alive.

Run as its own process (``python -m benchmarks._server --latency 0 --latency 0.02``):
one listening socket per latency on 127.0.0.1, ephemeral ports, printed as one JSON
line on stdout once bound. Every request, whatever its path, is answered
``{"code":2,"msg":"提交成功","smsid":"<20 digits>"}`` after the added latency.
Uses uvloop when it is installed. Loopback only.

``--certfile`` / ``--keyfile`` (PEM): serve HTTPS instead (the network mode of
:mod:`benchmarks.network`, with a ``trustme`` certificate).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import ssl
import sys

_HEAD = (
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/json;charset=utf-8\r\n"
    "Content-Length: {length}\r\n"
    "{connection}"
    "\r\n"
)


def _make_handler(latency: float, serial: itertools.count[int]) -> object:
    sleep = asyncio.sleep

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, OSError):  # ssl.SSLError too
                    return
                lower = head.lower()
                length = 0
                pos = lower.find(b"\r\ncontent-length:")
                if pos >= 0:
                    end = lower.find(b"\r\n", pos + 2)
                    length = int(lower[pos + 17 : end])
                if length:
                    await reader.readexactly(length)
                close = b"\r\nconnection: close" in lower
                if latency:
                    await sleep(latency)
                body = (
                    f'{{"code":2,"msg":"提交成功","smsid":"{10**19 + next(serial):020d}"}}'
                ).encode()
                head_out = _HEAD.format(
                    length=len(body), connection="Connection: close\r\n" if close else ""
                ).encode()
                writer.write(head_out + body)
                if close:
                    await writer.drain()
                    return
        except (OSError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    return handle


async def _serve(latencies: list[float], tls: ssl.SSLContext | None = None) -> None:
    serial = itertools.count(1)
    servers = []
    ports = {}
    for latency in latencies:
        server = await asyncio.start_server(
            _make_handler(latency, serial),  # type: ignore[arg-type]
            "127.0.0.1",
            0,
            backlog=4096,
            reuse_address=True,
            ssl=tls,
        )
        servers.append(server)
        ports[str(latency)] = server.sockets[0].getsockname()[1]
    sys.stdout.write(json.dumps({"pid": os.getpid(), "ports": ports}) + "\n")
    sys.stdout.flush()
    # Serve until stdin closes (the benchmark process ends or closes the pipe).
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, action="append", default=[])
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument("--certfile", help="PEM certificate chain: serve HTTPS")
    parser.add_argument("--keyfile", help="PEM private key of --certfile")
    args = parser.parse_args()
    tls = None
    if args.certfile:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.certfile, args.keyfile)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    latencies = args.latency or [0.0]
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(latencies, tls))
    else:  # pragma: no cover - optional
        uvloop.run(_serve(latencies, tls))


if __name__ == "__main__":
    main()
