"""Reliability figures (#12): the fault matrix, the cancellation trial and a load run.

``python -m benchmarks.reliability [--full] [--readme] [--skip faults,cancel,load]`` (or
``python benchmarks/reliability.py``) runs the same code as the suites in
``tests/faults/`` (imported from there: one fault server, one trial, one load run)
and prints markdown tables, also written to ``benchmarks/results/reliability.md``
(with ``--readme``, the summary tables also replace the README region between the
``<!-- reliability-figures -->`` markers):

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


def _fault_summary(cases: list[trials.FaultCase], call: str) -> str:
    """One row per fault kind, both backends side by side (for the README)."""
    by: dict[tuple[str, str], trials.FaultCase] = {(c.kind, c.backend): c for c in cases}
    slot = " limiter slot |" if call == "send" else ""
    rows = [
        f"| fault | {call}: httpx | {call}: aiohttp | requests seen |{slot} wall (httpx / aiohttp) "
        "| next call |",
        "|---|---|---|---|" + ("---|" if slot else "") + "---|---|",
    ]
    for kind in FAULTS:
        pair = [by[(kind, b)] for b in BACKENDS if (kind, b) in by]
        if not pair:
            continue

        def outcome(c: trials.FaultCase) -> str:
            if c.error == "-":
                return "answered"
            reason = c.reason if c.error == "DeliveryUnknownError" else ""
            sent = f", sent={c.sent}" if c.error == "TransportError" else ""
            return f"{c.error}{f' ({reason})' if reason else ''}{sent}"

        heads = " / ".join(str(sum(c.seen.values())) for c in pair)
        slots = " / ".join(c.slot for c in pair)
        walls = " / ".join(f"{c.wall:.2f} s" for c in pair)
        nxt = "ok" if all(c.next_ok for c in pair) else "FAILS"
        cells = " | ".join(outcome(c) for c in pair)
        rows.append(
            f"| {kind} | {cells} | {heads} |{f' {slots} |' if slot else ''} {walls} | {nxt} |"
        )
    return "\n".join(rows)


async def _fault_matrix() -> tuple[str, str]:
    rows = [trials.ROW_HEADER]
    summaries = []
    with FaultServer() as server:
        for call in ("send", "balance"):
            cases = []
            for backend in BACKENDS:
                for kind in FAULTS:
                    case = await trials.run_fault_case(server, kind, backend, call=call)
                    cases.append(case)
                    rows.append(case.row())
                    print(case.row(), file=sys.stderr, flush=True)
            summaries.append(_fault_summary(cases, call))
    intro = (
        "One call per fault kind on a fresh client (`timeout=0.5`, default "
        f"deadline {trials.DEADLINE:g} s, default retries), against the loopback fault "
        "server of `tests/faults/fault_server.py`; then one call on the same client with the "
        "server healthy again. *requests seen*: request heads the server received during "
        "the faulted call."
    )
    full = "## Faults\n\n" + intro + "\n\n" + "\n".join(rows) + "\n"
    summary = "**Faults.** " + intro + "\n\n" + "\n\n".join(summaries) + "\n"
    return full, summary


def _cancellations(attempts: int) -> tuple[str, str]:
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
    intro = (
        f"{attempts} sends per backend and event loop on a "
        f"{cancellation.POOL}-connection pool ({cancellation.WORKERS} at once), each cancelled "
        f"at a random instant in [0, {cancellation.MAX_DELAY * 1000:.0f} ms] against a server "
        "answering in 0–20 ms, the styles in turn; then "
        f"{cancellation.AFTER} sends in a row. *slots kept / requests seen*: limiter "
        "reservations not given back against Submit requests the server received (kept ≥ "
        "seen: no sent request lost its slot). *sockets*: the process's TCP sockets before "
        "the client was made and after it was closed."
    )
    full = (
        "## Cancellations\n\n" + intro + " The last three columns are per backend and loop "
        "(one client), repeated on each style's row.\n\n" + cancellation.table(done) + "\n"
    )
    rows = [
        "| backend | loop | styles | cancelled / completed | sends after | "
        "slots kept / requests seen | sockets before → after |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in done:
        cancelled = sum(c["cancelled"] for c in t.outcomes.values())
        completed = sum(c["completed"] for c in t.outcomes.values())
        other = sum(t.errors.values())
        rows.append(
            f"| {t.backend} | {t.loop} | {', '.join(t.outcomes)} | {cancelled} / {completed}"
            f"{f' ({other} other)' if other else ''} | {t.after_ok}/{cancellation.AFTER} | "
            f"{t.slots_kept} / {t.server_seen} | {t.sockets_baseline} → {t.sockets_after} |"
        )
    return full, "**Cancellations.** " + intro + "\n\n" + "\n".join(rows) + "\n"


async def _load(faulted: int, healthy: int) -> tuple[str, str]:
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
    intro = (
        "`send_many` at concurrency 200 over a pool of 100 through the emulator in "
        "its own process (`tests/faults/emulator_proc.py`), one distinct number per message; "
        "faulted runs with `timeout=2` (about 5 % of Submits: dropped after or before "
        "processing, 502, HTML garbage, hung after processing), healthy runs with the "
        "default timeout."
    )
    table = "\n".join(rows)
    full = "## Load\n\n" + intro + "\n\n" + table + "\n\n" + "\n".join(details) + "\n"
    return full, "**Load.** " + intro + "\n\n" + table + "\n"


README_START = "<!-- reliability-figures -->"
README_END = "<!-- /reliability-figures -->"


def _update_readme(path: Path, summaries: list[str], header: str) -> None:
    """Put ``summaries`` in the README's figures region (between the markers), after the
    region's first paragraph (the prose pointing here), which is kept as it is."""
    text = path.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise SystemExit(f"{path}: no {README_START} … {README_END} region")
    region = text[start + len(README_START) : end].strip("\n")
    prose = region.split("\n\n", 1)[0].strip()
    source = header.split("\n\n", 1)[1].split(" Correctness", 1)[0].strip()
    body = "\n\n".join(
        [
            README_START + ("\n" + prose if prose else ""),
            source + " Full tables: `benchmarks/results/reliability.md`.",
            *(summary.strip("\n") for summary in summaries),
        ]
    )
    path.write_text(text[:start] + body + "\n" + text[end:], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability")
    parser.add_argument("--full", action="store_true", help="the issue's sizes (slower)")
    parser.add_argument(
        "--skip", default="", help="comma-separated parts to skip: faults, cancel, load"
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "reliability.md")
    parser.add_argument(
        "--readme",
        action="store_true",
        help="also put the summary tables in README.md, between the reliability-figures markers",
    )
    args = parser.parse_args(argv)
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    logging.getLogger("ihuyi_async").setLevel(logging.ERROR)  # unknown outcomes are expected here

    header = _header(args)
    parts: list[tuple[str, str]] = []
    if "faults" not in skip:
        parts.append(asyncio.run(_fault_matrix()))
    if "cancel" not in skip:
        parts.append(_cancellations(2000 if args.full else 500))
    if "load" not in skip:
        sizes = (30_000, 5_000) if args.full else (5_000, 2_000)
        parts.append(asyncio.run(_load(*sizes)))
    summaries = [summary for _, summary in parts]
    text = "\n".join([header, "## Summary\n", *summaries, *(full for full, _ in parts)])
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    if args.readme:
        _update_readme(ROOT / "README.md", summaries, header)
    return 0


if __name__ == "__main__":
    sys.exit(main())
