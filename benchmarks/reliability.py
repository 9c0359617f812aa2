"""Reliability figures (#12): the fault matrix, the cancellation trial and a load run.

``python -m benchmarks.reliability [--full] [--skip faults,cancel,load]`` (or
``python benchmarks/reliability.py``) runs the same code as the suites in
``tests/faults/`` (imported from there: one fault server, one trial, one load run)
and prints markdown tables, also written to ``benchmarks/results/reliability.md``:

1. **faults**: every fault kind of ``tests/faults/fault_server.py`` × both backends,
   for a send and for a balance query (``timeout=0.5``, the default deadline, the
   default retry policy): the exception and its reason, ``.sent``, the requests the
   server saw, the wall time, the limiter slot (kept / given back), and whether the
   next call on the same client works;
2. **cancellations**: random-instant cancellations in every style on a 10-connection
   pool (500 per backend by default, 2,000 with ``--full``): counts per style, sends
   that work afterwards, slots kept against requests the server saw, TCP sockets;
3. **load**: ``send_many`` at concurrency 200 over a pool of 100 through the emulator
   in its own process, with 5 % injected faults and without (5,000 / 2,000 messages
   by default; 30,000 / 5,000 with ``--full``): outcomes by status, the emulator's
   accepted count against the client's.

Wall times are what this machine did, printed, never asserted here (the tests bound
them generously). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import importlib.metadata
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the shared helpers live in tests/faults/
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from faults import cancellation, load, trials  # noqa: E402
from faults.fault_server import FAULTS, FaultServer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BACKENDS = ("httpx", "aiohttp")


def _header(args: argparse.Namespace) -> str:
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip()  # fmt: skip
    except OSError:
        commit = "?"
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("httpx", "httpcore", "aiohttp", "anyio", "trio")
    )
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    size = "full" if args.full else "default (smaller) sizes; `--full` for the issue's"
    return (
        "# Reliability figures\n\n"
        f"Produced by `python -m benchmarks.reliability{' --full' if args.full else ''}` "
        f"({size}) on {when}, commit `{commit}`; Python {platform.python_version()}, "
        f"{versions}; {os.cpu_count()} CPUs. Correctness is asserted by `tests/faults/`; "
        "the wall times here are this machine's, not claims.\n"
    )


async def _fault_matrix() -> str:
    rows = [trials.ROW_HEADER]
    with FaultServer() as server:
        for call in ("send", "balance"):
            for backend in BACKENDS:
                for kind in FAULTS:
                    case = await trials.run_fault_case(server, kind, backend, call=call)
                    rows.append(case.row())
                    print(case.row(), file=sys.stderr, flush=True)
    return (
        "## Faults\n\nOne call per fault kind on a fresh client (`timeout=0.5`, default "
        f"deadline {trials.DEADLINE:g} s, default retries), against the loopback fault "
        "server of `tests/faults/fault_server.py`; then one call on the same client with the "
        "server healthy again. *requests seen*: request heads the server received during "
        "the faulted call.\n\n" + "\n".join(rows) + "\n"
    )


def _cancellations(attempts: int) -> str:
    done: list[cancellation.CancelTrial] = []
    with FaultServer(latency=(0.0, 0.02), seed=12) as server:
        for backend, loop in (("httpx", "asyncio"), ("aiohttp", "asyncio"), ("httpx", "trio")):
            start = time.monotonic()
            trial = cancellation.run_trial(server, backend, loop=loop, attempts=attempts, seed=12)
            done.append(trial)
            print(
                f"cancellations {backend}/{loop}: {trial.attempts} in "
                f"{time.monotonic() - start:.1f} s, after {trial.after_ok}/{cancellation.AFTER}",
                file=sys.stderr,
                flush=True,
            )
    return (
        f"## Cancellations\n\n{attempts} sends per backend and event loop on a "
        f"{cancellation.POOL}-connection pool ({cancellation.WORKERS} at once), each cancelled "
        f"at a random instant in [0, {cancellation.MAX_DELAY * 1000:.0f} ms] against a server "
        "answering in 0–20 ms, the styles in turn; then "
        f"{cancellation.AFTER} sends in a row. *slots kept / requests seen*: limiter "
        "reservations not given back against Submit requests the server received (kept ≥ "
        "seen: no sent request lost its slot). *sockets*: the process's TCP sockets before "
        "the client was made and after it was closed. The last three columns are per "
        "backend and loop (one client), repeated on each style's row.\n\n"
        + cancellation.table(done)
        + "\n"
    )


async def _load(faulted: int, healthy: int) -> str:
    rows = [load.ROW_HEADER]
    details = []
    offset = 0
    for share, size in ((0.05, faulted), (0.0, healthy)):
        with load.EmulatorProcess(fault_share=share, seed=12) as emulator:
            for backend in ("aiohttp", "httpx"):
                run = await load.run_load(
                    emulator, backend, size, offset=offset, timeout=2.0 if share else None
                )
                offset += size
                rows.append(run.row())
                details.append(
                    f"- {backend}, {share:.0%} faults: faults acted {run.faults or '{}'}; "
                    f"errors {dict(run.errors) or '{}'}"
                )
                print(run.row(), file=sys.stderr, flush=True)
    return (
        "## Load\n\n`send_many` at concurrency 200 over a pool of 100 through the emulator in "
        "its own process (`tests/faults/emulator_proc.py`), one distinct number per message; "
        "faulted runs with `timeout=2` (about 5 % of Submits: dropped after or before "
        "processing, 502, HTML garbage, hung after processing), healthy runs with the "
        "default timeout.\n\n" + "\n".join(rows) + "\n\n" + "\n".join(details) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability")
    parser.add_argument("--full", action="store_true", help="the issue's sizes (slower)")
    parser.add_argument(
        "--skip", default="", help="comma-separated parts to skip: faults, cancel, load"
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "reliability.md")
    args = parser.parse_args(argv)
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    logging.getLogger("ihuyi_async").setLevel(logging.ERROR)  # unknown outcomes are expected here

    sections = [_header(args)]
    if "faults" not in skip:
        sections.append(asyncio.run(_fault_matrix()))
    if "cancel" not in skip:
        sections.append(_cancellations(2000 if args.full else 500))
    if "load" not in skip:
        sizes = (30_000, 5_000) if args.full else (5_000, 2_000)
        sections.append(asyncio.run(_load(*sizes)))
    text = "\n".join(sections)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
