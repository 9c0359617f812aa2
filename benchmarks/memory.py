"""Memory benchmark: peak RSS of ``IhuyiClient.send_many`` over generated messages.

``python -m benchmarks.memory [--sizes 10000 100000 1000000] [--concurrency 100]``

Each size runs in its own subprocess (``--one N``), which reports its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and how many messages the
emulator (:mod:`ihuyi_async.testing`, in process through ``emulator.transport``)
accepted. The input is a generator, never a list. The emulator's own records
(messages, requests) are cleared every 10,000 outcomes, so what is measured is
the client and ``send_many``, not the emulator's history. The limiter is relaxed:
numbers cycle over 100,000 distinct ones with the daily quotas lifted
(per-number bucket of 1/s kept; a number recurs only every 100,000 messages).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

CONTENT = "您的验证码是：{code}。请不要把验证码泄露给其他人。"
NUMBERS = 100_000
SIZES = (10_000, 100_000, 1_000_000)
#: ``python -m benchmarks --quick`` runs smaller sizes; the full run takes all three
#: (1M messages through the emulator take 3 to 15 minutes, by machine).
QUICK_SIZES = (2_000, 10_000)
FULL_SIZES = SIZES


def _messages(n: int) -> Iterator[dict[str, str]]:
    for i in range(n):
        yield {"mobile": f"13{i % NUMBERS:09d}", "content": CONTENT.format(code=f"{i % 10000:04d}")}


class _MockEmulator:
    """A fixed-answer in-process transport (``--target mock``): much faster than the emulator."""

    def __init__(self) -> None:
        import itertools

        import httpx

        serial = itertools.count(1)

        def handler(request: httpx.Request) -> httpx.Response:
            body = f'{{"code":2,"msg":"提交成功","smsid":"{10**19 + next(serial):020d}"}}'
            return httpx.Response(200, content=body.encode(), headers={"Content-Type": "application/json"})

        self.transport = httpx.MockTransport(handler)

    def reset(self) -> None:
        pass


async def _one(n: int, concurrency: int, target: str = "emulator") -> dict[str, Any]:
    from ihuyi_async import IhuyiClient
    from ihuyi_async.limiter import Limiter, Rule
    from ihuyi_async.testing import Emulator

    emulator: Any = (
        Emulator(accounts={"APIID": "APIKEY"}, balance=10**9, limits=False, auto_receipts=False)
        if target == "emulator"
        else _MockEmulator()
    )
    limiter = Limiter(rules=[Rule.token_bucket("per_second")])
    accepted = 0
    started = time.perf_counter()
    async with IhuyiClient("APIID", "APIKEY", transport=emulator.transport, limiter=limiter) as client:
        index = 0
        async for outcome in client.send_many(_messages(n), concurrency=concurrency):
            accepted += outcome.ok
            index += 1
            if index % 10_000 == 0:
                emulator.reset()
    seconds = time.perf_counter() - started
    return {
        "messages": n,
        "target": target,
        "accepted": accepted,
        "seconds": seconds,
        "peak_rss_mib": _peak_rss_kib() / 1024,
    }


def _peak_rss_kib() -> int:
    """This process's peak resident set, KiB.

    Linux's ``getrusage`` ``ru_maxrss`` survives ``exec``: a child started by a big parent
    reports at least the parent's size at fork time (the first send-benchmark runs read
    86 MiB for every size that way). ``VmHWM`` belongs to the new image only.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def run_all(*, quick: bool = False, sizes: tuple[int, ...] | None = None, concurrency: int = 100) -> dict[str, Any]:
    """Run each size in a fresh subprocess; return rows and the growth ratio."""
    try:
        from ihuyi_async import IhuyiClient

        IhuyiClient.send_many  # noqa: B018
    except (ImportError, AttributeError):
        return {"rows": [], "note": "TODO: IhuyiClient.send_many is not available in this checkout."}
    sizes = sizes or (QUICK_SIZES if quick else SIZES)
    root = Path(__file__).resolve().parent.parent
    rows = []
    for n in sizes:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.memory", "--one", str(n), "--concurrency", str(concurrency)],
            cwd=root, capture_output=True, text=True, check=False,
        )
        if out.returncode != 0:
            return {"rows": rows, "note": f"send_many memory run of {n} failed: {out.stderr[-2000:]}"}
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"send_many {n:>9,} messages: peak RSS {row['peak_rss_mib']:.1f} MiB, "
              f"{row['accepted']:,} accepted in {row['seconds']:.1f} s", flush=True)
        rows.append(row)
    result: dict[str, Any] = {
        "rows": rows,
        "concurrency": concurrency,
        "note": (
            f"`send_many(generator, concurrency={concurrency})` against the in-process emulator, "
            "one fresh process per size, peak RSS from `VmHWM` (`/proc/self/status`). Numbers "
            f"cycle over {NUMBERS:,} distinct ones (limiter: per-number 1/s bucket only), so up to "
            f"{NUMBERS:,} messages the limiter and the emulator also track more numbers as the "
            "input grows (about 135 bytes each in the limiter); beyond that only the input "
            "grows. The emulator's records are cleared every 10,000 outcomes."
            + (" Quick mode: smaller sizes." if quick else "")
        ),
    }
    if rows:
        result["growth"] = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--target", choices=("emulator", "mock"), default="emulator")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(asyncio.run(_one(args.one, args.concurrency, args.target))))
        return
    result = run_all(quick=args.quick, sizes=tuple(args.sizes) if args.sizes else None,
                     concurrency=args.concurrency)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
