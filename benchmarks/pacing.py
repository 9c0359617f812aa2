"""Provider 4080s for paced sends, with and without the client's write gate (#12.7).

``python -m benchmarks.pacing [--numbers 400] [--runs 2]``: the emulator in its own
process on loopback (real clock, its 1/s rule measured on arrival); ``send_many`` of 5
messages to each number at concurrency 100 on the httpx backend, once with the write
gate off (``_write_spacing = None``: the limiter's turns alone) and once on, per run.
Prints a markdown table of outcomes. Counts, not timings: a loaded machine shows the
effect best.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import socket
import subprocess
import sys
import time

import ihuyi_async as ih


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _emulator() -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ihuyi_async.testing", "serve", "--port", str(port),
         "--balance", "1000000", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # bounded: until the emulator accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:  # noqa: PERF203 - not up yet
            time.sleep(0.05)
    proc.terminate()
    raise SystemExit("the emulator did not start")


async def _run(
    port: int, gate: bool, numbers: int, backend: str
) -> tuple[collections.Counter[str], float]:
    base_url = f"http://127.0.0.1:{port}"
    async with ih.IhuyiClient(
        "test-apiid", "test-apikey", base_url=base_url, backend=backend  # type: ignore[arg-type]
    ) as client:
        if not gate:
            client._write_spacing = None
        msgs = [
            {"mobile": f"139{n:08d}", "content": f"通知{i}：您的订单已发货。"}
            for i in range(5)
            for n in range(numbers)
        ]
        counts: collections.Counter[str] = collections.Counter()
        start = time.monotonic()
        async with client.send_many(msgs, concurrency=100) as outcomes:
            async for outcome in outcomes:
                code = getattr(outcome.error, "code", None)
                counts[outcome.status + (f" {code}" if code else "")] += 1
        return counts, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pacing", description=__doc__)
    parser.add_argument("--numbers", type=int, default=400)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--backend", default="httpx")
    args = parser.parse_args()
    print("| run | write gate | messages | outcomes | wall |\n|---|---|---:|---|---:|")
    for run in range(1, args.runs + 1):
        for gate in (False, True):
            proc, port = _emulator()  # a fresh emulator: no state from the other run
            try:
                counts, wall = asyncio.run(_run(port, gate, args.numbers, args.backend))
            finally:
                proc.terminate()
                proc.wait(timeout=10)
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            print(f"| {run} | {'on' if gate else 'off'} | {sum(counts.values())} | {outcomes} | {wall:.1f} s |")


if __name__ == "__main__":
    main()
