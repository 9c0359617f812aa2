"""Memory benchmark: peak RSS of ``IhuyiClient.send_many`` over generated messages.

``python -m benchmarks.memory [--sizes 10000 100000 1000000] [--concurrency 100]
[--target emulator --target native]``

Two targets, each size of each in its own subprocess: ``emulator`` (the default
httpx backend against the in-process emulator) and ``native`` (``backend="native"``
over loopback against the fake endpoint of :mod:`benchmarks._server`, in its own
process, so only the client's memory is measured). Results: ``results/memory.json``
(shown in ``send.md``).

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
import contextlib
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
TARGETS = ("emulator", "native")
RESULTS = Path(__file__).resolve().parent / "results"


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


async def _one(n: int, concurrency: int, target: str = "emulator", url: str | None = None) -> dict[str, Any]:
    from ihuyi_async import IhuyiClient, SystemClock
    from ihuyi_async.limiter import Limiter, Rule
    from ihuyi_async.testing import Emulator

    # the real clock: the emulator's default (a fake clock that moves only when a test moves
    # it) falls more than its 300 s signature window behind a long run, which then gets 40501
    emulator: Any = (
        Emulator(accounts={"APIID": "APIKEY"}, balance=10**9, limits=False, auto_receipts=False,
                 clock=SystemClock())
        if target == "emulator"
        else _MockEmulator()
    )
    limiter = Limiter(rules=[Rule.token_bucket("per_second")])
    accepted = 0
    failed: dict[str, int] = {}
    started = time.perf_counter()
    how: dict[str, Any] = (
        {"base_url": url, "backend": "native"} if target == "native" else {"transport": emulator.transport}
    )
    async with IhuyiClient("APIID", "APIKEY", limiter=limiter, **how) as client:
        index = 0
        # stop_on=(): an account-level answer must not end the run early unseen; every
        # outcome that is not accepted is counted below instead
        async for outcome in client.send_many(_messages(n), concurrency=concurrency, stop_on=()):
            accepted += outcome.ok
            if not outcome.ok:
                code = getattr(outcome.error, "code", None)
                key = f"{outcome.status} {type(outcome.error).__name__}" + (f" {code}" if code else "")
                failed[key] = failed.get(key, 0) + 1
            index += 1
            if index % 10_000 == 0:
                emulator.reset()
    seconds = time.perf_counter() - started
    return {
        "messages": n,
        "target": target,
        "accepted": accepted,
        "not_accepted": failed,
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


def run_all(
    *,
    quick: bool = False,
    sizes: tuple[int, ...] | None = None,
    concurrency: int = 100,
    targets: tuple[str, ...] = TARGETS,
) -> dict[str, Any]:
    """Run each size of each target in a fresh subprocess; return rows and growth ratios."""
    try:
        from ihuyi_async import IhuyiClient

        IhuyiClient.send_many  # noqa: B018
    except (ImportError, AttributeError):
        return {"rows": [], "note": "TODO: IhuyiClient.send_many is not available in this checkout."}
    import importlib.util

    if importlib.util.find_spec("httptools") is None:
        targets = tuple(t for t in targets if t != "native")
    sizes = sizes or (QUICK_SIZES if quick else SIZES)
    rows: list[dict[str, Any]] = []
    growth: dict[str, float] = {}
    for target in targets:
        failed = _run_target(target, sizes, concurrency, rows)
        if failed:
            return {"rows": rows, "note": failed}
        mine = [r for r in rows if r["target"] == target]
        growth[target] = mine[-1]["peak_rss_mib"] / mine[0]["peak_rss_mib"]
    return {
        "rows": rows,
        "concurrency": concurrency,
        "growth": growth,
        "note": (
            f"`send_many(generator, concurrency={concurrency})`, one fresh process per size, peak RSS "
            "from `VmHWM` (`/proc/self/status`). Targets: `emulator` = the default httpx backend "
            "against the in-process emulator (its records cleared every 10,000 outcomes); `native` = "
            "`backend=\"native\"` over loopback against the fake endpoint in its own process. Numbers "
            f"cycle over {NUMBERS:,} distinct ones (limiter: per-number 1/s bucket only), so up to "
            f"{NUMBERS:,} messages the limiter (and the emulator) also track more numbers as the "
            "input grows (about 135 bytes each in the limiter); beyond that only the input grows."
            + (" Quick mode: smaller sizes." if quick else "")
        ),
    }


def _run_target(target: str, sizes: tuple[int, ...], concurrency: int, rows: list[dict[str, Any]]) -> str:
    """Append one row per size to ``rows``; return an error note, or ``""``."""
    root = Path(__file__).resolve().parent.parent
    with contextlib.ExitStack() as stack:
        url = ""
        if target == "native":
            from benchmarks.run import fake_server

            url = stack.enter_context(fake_server((0.0,), None))[0.0]
        for n in sizes:
            cmd = [sys.executable, "-m", "benchmarks.memory", "--one", str(n),
                   "--concurrency", str(concurrency), "--target", target]
            if url:
                cmd += ["--url", url]
            out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                return f"send_many memory run of {n} ({target}) failed: {out.stderr[-2000:]}"
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"send_many {target:8s} {n:>9,} messages: peak RSS {row['peak_rss_mib']:.1f} MiB, "
                  f"{row['accepted']:,} accepted in {row['seconds']:.1f} s", flush=True)
            rows.append(row)
    return ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--target", choices=("emulator", "native", "mock"), action="append",
                        help="default: emulator and native (mock: a fixed-answer httpx transport)")
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=RESULTS, help="directory for memory.json")
    args = parser.parse_args(argv)
    if args.one:
        target = (args.target or ["emulator"])[0]
        print(json.dumps(asyncio.run(_one(args.one, args.concurrency, target, args.url))))
        return
    result = run_all(quick=args.quick, sizes=tuple(args.sizes) if args.sizes else None,
                     concurrency=args.concurrency, targets=tuple(args.target or TARGETS))
    write(result, args.output)
    print(json.dumps(result, indent=2))


def write(result: dict[str, Any], output: Path = RESULTS) -> None:
    """Stamp ``result`` and write it to ``output/memory.json`` (``send.md`` shows the last one)."""
    import datetime as _dt

    result["generated"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    output.mkdir(parents=True, exist_ok=True)
    (output / "memory.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
