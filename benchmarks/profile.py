"""Profile ihuyi-async's send path against the fake endpoint.

``python -m benchmarks.profile [--backend aiohttp] [--in-flight 100] [--messages 5000]
[--tool cprofile|pyinstrument] [--top 25]``

Same setup as the send benchmark (fake server in its own process, pinned CPUs,
distinct numbers, default limiter); only the measured sends run under the profiler.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from benchmarks import clients as _clients  # noqa: E402
from benchmarks.run import fake_server, pin_cpus  # noqa: E402


async def _drive(make: object, url: str, in_flight: int, messages: int, profiler: object) -> tuple[int, float]:
    send, close = await make(url)  # type: ignore[operator]
    try:
        await asyncio.gather(*(send() for _ in range(min(in_flight, 100))))
        done = 0

        async def worker() -> None:
            nonlocal done
            while done < messages:
                done += 1
                await send()

        profiler.enable()  # type: ignore[attr-defined]
        t0 = time.process_time()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        cpu = time.process_time() - t0
        profiler.disable()  # type: ignore[attr-defined]
    finally:
        await close()
    return done, cpu


class _Pyinstrument:
    def __init__(self) -> None:
        from pyinstrument import Profiler

        self.p = Profiler(async_mode="disabled", interval=0.0002)

    def enable(self) -> None:
        self.p.start()

    def disable(self) -> None:
        self.p.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--backend", default="aiohttp", choices=("httpx", "aiohttp", "native"))
    parser.add_argument("--client", default=None, help="profile a comparison client instead (name substring)")
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--tool", default="cprofile", choices=("cprofile", "pyinstrument"))
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)

    if args.client:
        name = next(n for n in _clients.available() if args.client.lower() in n.lower())
        make = _clients.available()[name][1]
    else:
        name = f"ihuyi-async send, backend={args.backend}"
        make = _clients.make_ours(args.backend)
    profiler: object = cProfile.Profile() if args.tool == "cprofile" else _Pyinstrument()
    latency = args.latency_ms / 1000
    server_cpu, _ = pin_cpus()
    with fake_server((latency,), server_cpu) as urls:
        done, cpu = asyncio.run(_drive(make, urls[latency], args.in_flight, args.messages, profiler))
    print(f"{name}: {done} messages at {args.in_flight} in flight, "
          f"{cpu / done * 1e6:.0f} µs CPU/msg under the profiler")
    if isinstance(profiler, cProfile.Profile):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats(args.sort).print_stats(args.top)
        print(out.getvalue())
    else:
        print(profiler.p.output_text(unicode=True, color=False, show_all=False))  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
