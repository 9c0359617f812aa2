"""A delay proxy for the network mode: loopback made to behave like a link with a round trip.

Run as its own process (``python -m benchmarks._proxy --upstream 40123 --rtt 0.02 --rtt 0.04``):
one listening socket on 127.0.0.1 per round-trip time, ephemeral ports, printed as one
JSON line on stdout once bound; every accepted connection is forwarded, byte for byte
(TLS passes through untouched), to ``127.0.0.1:<upstream>``.

What it adds, per connection, ``rtt`` being the round-trip time of its listening socket:

* every chunk, in either direction, is delivered ``rtt / 2`` after it arrived, in order
  (one heap of (due, bytes) behind one timer for the whole process), to within about half
  a millisecond (the event loop's timer resolution);
* the client's bytes cannot leave before ``rtt`` after the connection was accepted: the
  TCP handshake (SYN, SYN-ACK) that loopback completes at once costs one round trip on a
  real link, so a new connection's first byte reaches the server ``1.5 × rtt`` after the
  client called ``connect`` (and its answer is back after ``2 × rtt``).

An end of stream, or the server closing, closes the other side after the bytes before it. Bandwidth is not limited and
nothing is lost: only latency is modelled. Uses uvloop when it is installed (``--loop``).
Serves until stdin closes. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import sys
import time
from typing import cast

_clock = time.monotonic  # precise, unlike uvloop's loop.time() (whole milliseconds)
_EARLY = 0.0005


class _Wheel:
    """Every delayed chunk of the process in one heap, behind one timer.

    A timer per connection and direction cost more CPU than the forwarding itself at
    100 connections; one heap ordered by (due, arrival) keeps each pipe's order (a
    later chunk of one pipe is never due earlier) and wakes once for all that is due.
    """

    __slots__ = ("_handle", "_heap", "_loop", "_seq", "_timer_due")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, _Pipe, bytes | None]] = []
        self._seq = 0
        self._handle: asyncio.TimerHandle | None = None
        self._timer_due = 0.0

    def push(self, due: float, pipe: _Pipe, data: bytes | None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, pipe, data))
        if self._handle is None or due < self._timer_due:
            self._schedule(due)

    def _schedule(self, due: float) -> None:
        # Event loop timers have a resolution of 1 ms (uvloop's clock too): aim half a
        # millisecond early and deliver what is due within half a millisecond, so the
        # delay is right on average instead of up to 1 ms late every time.
        # A wait shorter than a millisecond rounds to 0 on uvloop, and a timer at 0 finding
        # nothing due would spin until it is (which cost a millisecond of CPU per message):
        # wait at least 1 ms instead; the chunk is then at most half a millisecond late.
        if self._handle is not None:
            self._handle.cancel()
        self._timer_due = due
        wait = due - _clock() - _EARLY
        self._handle = self._loop.call_later(max(wait, 0.001) if wait > 0 else 0.0, self._flush)

    def _flush(self) -> None:
        self._handle = None
        heap = self._heap
        now = _clock() + _EARLY
        while heap and heap[0][0] <= now:
            _, _, pipe, data = heapq.heappop(heap)
            pipe.deliver(data)
        if heap:
            self._schedule(heap[0][0])


class _Pipe:
    """One direction of one connection: delays what it is given, then writes it to ``sink``."""

    __slots__ = ("_delay", "_not_before", "_wheel", "closed", "sink")

    def __init__(self, wheel: _Wheel, delay: float, not_before: float) -> None:
        self._wheel = wheel
        self._delay = delay
        self._not_before = not_before
        self.sink: asyncio.Transport | None = None
        self.closed = False

    def put(self, data: bytes | None) -> None:
        """Queue ``data`` (``None``: close the other side) for delivery after the delay."""
        if not self.closed:
            self._wheel.push(max(_clock(), self._not_before) + self._delay, self, data)

    def deliver(self, data: bytes | None) -> None:
        sink = self.sink
        if self.closed:
            return
        if sink is None:  # the upstream connection is not open yet (it takes < 1 ms)
            self._wheel.push(_clock() + 0.001, self, data)
            return
        if sink.is_closing():
            self.closed = True
        elif data is None:
            self.closed = True
            sink.close()  # sends what is buffered first
        else:
            sink.write(data)

    def close(self) -> None:
        self.closed = True


class _Upstream(asyncio.Protocol):
    """The proxy's connection to the server: what it reads goes back to the client, delayed."""

    def __init__(self, downstream: _Downstream) -> None:
        self.downstream = downstream

    def data_received(self, data: bytes) -> None:
        self.downstream.to_client.put(data)

    def eof_received(self) -> bool:
        self.downstream.upstream_lost()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.downstream.upstream_lost()


class _Downstream(asyncio.Protocol):
    """A client's connection to the proxy."""

    def __init__(self, wheel: _Wheel, rtt: float, upstream_port: int) -> None:
        self.rtt = rtt
        self.upstream_port = upstream_port
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        now = _clock()
        # the handshake round trip: nothing from the client leaves before it is over
        self.to_server = _Pipe(wheel, rtt / 2, now + rtt)
        self.to_client = _Pipe(wheel, rtt / 2, now)
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a uvloop transport is no asyncio.Transport subclass: no isinstance check
        self.transport = cast(asyncio.Transport, transport)
        self.to_client.sink = self.transport
        self._task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            upstream, _ = await loop.create_connection(
                lambda: _Upstream(self), "127.0.0.1", self.upstream_port
            )
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        self.upstream = upstream
        self.to_server.sink = upstream
        if self.transport is None or self.transport.is_closing():
            upstream.close()

    def data_received(self, data: bytes) -> None:
        self.to_server.put(data)

    def eof_received(self) -> bool:
        self.to_server.put(None)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.to_server.close()
        self.to_client.close()
        if self.upstream is not None:
            self.upstream.close()
        self.transport = None

    def upstream_lost(self) -> None:
        # the delayed answer bytes already queued reach the client first, then it closes
        self.to_client.put(None)


async def _serve(rtts: list[float], upstream: int) -> None:
    loop = asyncio.get_running_loop()
    wheel = _Wheel(loop)
    servers = []
    ports = {}
    for rtt in rtts:
        server = await loop.create_server(
            lambda rtt=rtt: _Downstream(wheel, rtt, upstream),  # type: ignore[misc]
            "127.0.0.1",
            0,
            backlog=4096,
            reuse_address=True,
        )
        servers.append(server)
        ports[str(rtt)] = server.sockets[0].getsockname()[1]
    sys.stdout.write(json.dumps({"pid": os.getpid(), "ports": ports}) + "\n")
    sys.stdout.flush()
    await loop.run_in_executor(None, sys.stdin.read)  # until the benchmark closes the pipe
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", type=int, required=True, help="the server's port on 127.0.0.1")
    parser.add_argument("--rtt", type=float, action="append", default=[], help="seconds")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default=None,
                        help="default: uvloop when installed (half the CPU per forwarded chunk)")
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    rtts = args.rtt or [0.02]
    if args.loop is None:
        import importlib.util

        args.loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(_serve(rtts, args.upstream))
    else:
        asyncio.run(_serve(rtts, args.upstream))


if __name__ == "__main__":
    main()
