"""Send benchmark: ihuyi-async against raw httpx, raw aiohttp and the vendor's demo style.

``python -m benchmarks [--quick]`` (or ``python benchmarks/run.py``):

1. starts the fake endpoint (:mod:`benchmarks._server`) in its own process on
   127.0.0.1, one port per added latency (0 ms and 20 ms), pinned to CPU 0 when
   the machine has two or more CPUs; this process (the client) pins itself to CPU 1;
2. runs every client at 1, 10, 100 and 500 in flight and each latency, the whole
   grid repeated three times and interleaved (round 1 of every case, then round 2…);
   each run is bounded by a message count *and* a time budget, after a warm-up
   round that opens the connections;
3. reports medians: messages/s, client CPU µs per message (``time.process_time``
   of this process, all threads, over the measured part only; the server's CPU is
   in the other process) and, at 20 ms, the share of the physical limit
   (messages/s ÷ (in flight ÷ 20 ms));
4. runs the ``send_many`` memory benchmark (:mod:`benchmarks.memory`) unless
   ``--no-memory``;
5. writes ``benchmarks/results/send.json`` and ``benchmarks/results/send.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from benchmarks import clients as _clients  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
IN_FLIGHT = (1, 10, 100, 500)
LATENCIES = (0.0, 0.02)
REPEATS = 3
OURS_HTTPX = "ihuyi-async send, backend=httpx"
OURS_AIOHTTP = "ihuyi-async send, backend=aiohttp"
RAW_HTTPX = "raw httpx.AsyncClient (default pool)"
RAW_AIOHTTP = "raw aiohttp.ClientSession"
VENDOR = "vendor demo (http.client, new connection, N threads)"
FLOOR = "raw asyncio streams (floor)"


# ------------------------------------------------------------------ the server process


@contextlib.contextmanager
def fake_server(latencies: tuple[float, ...], cpu: int | None) -> Iterator[dict[float, str]]:
    cmd = [sys.executable, "-m", "benchmarks._server"]
    for latency in latencies:
        cmd += ["--latency", str(latency)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        yield {
            float(lat): f"http://127.0.0.1:{port}" for lat, port in info["ports"].items()
        }
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pin_cpus() -> tuple[int | None, int | None]:
    """(server CPU, client CPU), or Nones when the machine cannot separate them."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    server, client = cpus[0], cpus[1]
    os.sched_setaffinity(0, {client})
    return server, client


# ------------------------------------------------------------------ one run


async def _run_async(make: Any, url: str, in_flight: int, count: int, budget: float) -> dict[str, Any]:
    send, close = await make(url)
    try:
        # warm-up: open the connections (pools hold 100 by default)
        await asyncio.gather(*(send() for _ in range(min(in_flight, 100))), return_exceptions=True)
        done = 0
        errors = 0
        deadline = 0.0
        clock = time.perf_counter

        async def worker() -> None:
            nonlocal done, errors
            while done < count and clock() < deadline:
                done += 1
                try:
                    await send()
                except Exception:
                    errors += 1

        cpu0 = time.process_time()
        wall0 = clock()
        deadline = wall0 + budget
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        wall = clock() - wall0
        cpu = time.process_time() - cpu0
    finally:
        await close()
    return {"messages": done, "errors": errors, "wall": wall, "cpu": cpu}


def _run_threads(make: Any, url: str, in_flight: int, count: int, budget: float) -> dict[str, Any]:
    send = make(url)
    lock = threading.Lock()
    state = {"done": 0, "errors": 0}
    clock = time.perf_counter
    deadline = 0.0

    def worker() -> None:
        while True:
            with lock:
                if state["done"] >= count or clock() >= deadline:
                    return
                state["done"] += 1
            try:
                send()
            except Exception:
                with lock:
                    state["errors"] += 1

    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        barrier = threading.Barrier(in_flight + 1)
        warm = [pool.submit(barrier.wait) for _ in range(in_flight)]  # start every thread
        barrier.wait()
        for future in warm:
            future.result()
        send()  # warm-up
        cpu0 = time.process_time()
        wall0 = clock()
        deadline = wall0 + budget
        futures = [pool.submit(worker) for _ in range(in_flight)]
        for future in futures:
            future.result()
        wall = clock() - wall0
        cpu = time.process_time() - cpu0
    return {"messages": state["done"], "errors": state["errors"], "wall": wall, "cpu": cpu}


async def _run_batch(make: Any, url: str, in_flight: int, count: int, budget: float) -> dict[str, Any]:
    run, close = await make(url)
    try:
        clock = time.perf_counter
        await run(in_flight, min(in_flight, 100), clock() + 60)  # warm-up: open the connections
        cpu0 = time.process_time()
        wall0 = clock()
        done, errors = await run(in_flight, count, wall0 + budget)
        wall = clock() - wall0
        cpu = time.process_time() - cpu0
    finally:
        await close()
    return {"messages": done, "errors": errors, "wall": wall, "cpu": cpu}


def run_one(kind: str, make: Any, url: str, in_flight: int, count: int, budget: float) -> dict[str, Any]:
    if kind == "thread":
        return _run_threads(make, url, in_flight, count, budget)
    if kind == "batch":
        return asyncio.run(_run_batch(make, url, in_flight, count, budget))
    return asyncio.run(_run_async(make, url, in_flight, count, budget))


# ------------------------------------------------------------------ the grid


def run_grid(
    urls: dict[float, str],
    names: list[str],
    *,
    count: int,
    budget: float,
    repeats: int,
    in_flights: tuple[int, ...],
    latencies: tuple[float, ...],
) -> list[dict[str, Any]]:
    available = _clients.available()
    samples: dict[tuple[str, int, float], list[dict[str, Any]]] = {}
    for round_ in range(repeats):
        for latency in latencies:
            for in_flight in in_flights:
                for name in names:
                    kind, make = available[name]
                    # at 20 ms one in-flight caller cannot do more than 50/s: bound by time
                    n = count if latency == 0 else min(count, int(in_flight / latency * budget) + 1)
                    sample = run_one(kind, make, urls[latency], in_flight, n, budget)
                    samples.setdefault((name, in_flight, latency), []).append(sample)
                    rate = sample["messages"] / sample["wall"]
                    cpu_us = sample["cpu"] / max(sample["messages"], 1) * 1e6
                    print(
                        f"[{round_ + 1}/{repeats}] {latency * 1000:4.0f} ms {in_flight:4d} in flight "
                        f"{name:55s} {rate:9.0f} msg/s {cpu_us:8.0f} µs/msg"
                        + (f"  ERRORS {sample['errors']}" if sample["errors"] else ""),
                        flush=True,
                    )
    rows = []
    for (name, in_flight, latency), runs in samples.items():
        rates = [r["messages"] / r["wall"] for r in runs]
        cpus = [r["cpu"] / max(r["messages"], 1) * 1e6 for r in runs]
        rate = statistics.median(rates)
        row = {
            "client": name,
            "in_flight": in_flight,
            "latency_ms": round(latency * 1000),
            "msg_per_s": rate,
            "cpu_us_per_msg": statistics.median(cpus),
            "messages": [r["messages"] for r in runs],
            "errors": sum(r["errors"] for r in runs),
            "runs_msg_per_s": rates,
            "runs_cpu_us_per_msg": cpus,
        }
        if latency > 0:
            row["share_of_physical_limit"] = rate / (in_flight / latency)
        rows.append(row)
    return rows


# ------------------------------------------------------------------ report


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        nproc = str(os.cpu_count())
    versions = {}
    for dist in ("ihuyi-async", "httpx", "httpcore", "aiohttp", "anyio", "httpx-aiohttp", "uvloop"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    return {
        "cpu": model,
        "nproc": nproc,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "versions": versions,
    }


def _find(rows: list[dict[str, Any]], client: str, in_flight: int, latency_ms: int) -> dict[str, Any] | None:
    for row in rows:
        if row["client"] == client and row["in_flight"] == in_flight and row["latency_ms"] == latency_ms:
            return row
    return None


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, evaluated on this run's medians."""
    out: list[dict[str, Any]] = []

    def add(
        name: str, value: float | None, limit: float, higher: bool, note: str | None = None
    ) -> None:
        ok = None if value is None else (value >= limit if higher else value <= limit)
        out.append({"target": name, "value": value, "limit": limit, "met": ok, "note": note or ""})

    ours_a0 = _find(rows, OURS_AIOHTTP, 100, 0)
    raw_a0 = _find(rows, RAW_AIOHTTP, 100, 0)
    if ours_a0 and raw_a0:
        add("aiohttp backend, 100 in flight, 0 ms: CPU/msg ÷ raw aiohttp's",
            ours_a0["cpu_us_per_msg"] / raw_a0["cpu_us_per_msg"], 1.25, False)
        add("aiohttp backend, 100 in flight, 0 ms: msg/s ÷ raw aiohttp's",
            ours_a0["msg_per_s"] / raw_a0["msg_per_s"], 0.8, True)
    ours_a20 = _find(rows, OURS_AIOHTTP, 100, 20)
    if ours_a20:
        add("aiohttp backend, 100 in flight, 20 ms: share of the physical limit",
            ours_a20["share_of_physical_limit"], 0.85, True)
    ours_h0 = _find(rows, OURS_HTTPX, 10, 0)
    raw_h0 = _find(rows, RAW_HTTPX, 10, 0)
    if ours_h0 and raw_h0:
        add("httpx backend, 10 in flight, 0 ms: CPU/msg ÷ raw httpx's",
            ours_h0["cpu_us_per_msg"] / raw_h0["cpu_us_per_msg"], 1.25, False)
    # "10x the vendor demo style at 10 in flight, 20 ms", read both ways: against the demo as
    # shipped (synchronous, one message at a time) and against the demo given 10 threads. The
    # ceiling is what the floor client (prebuilt bytes, no HTTP library) reaches in the same run.
    floor10 = _find(rows, FLOOR, 10, 20)
    for vendor_in_flight, how in ((1, "one message at a time (as shipped)"), (10, "given 10 threads")):
        vendor = _find(rows, VENDOR, vendor_in_flight, 20)
        if vendor is None:
            continue
        ceiling = floor10["msg_per_s"] / vendor["msg_per_s"] if floor10 else None
        for ours in (OURS_HTTPX, OURS_AIOHTTP):
            row = _find(rows, ours, 10, 20)
            if row:
                add(
                    f"{ours}, 10 in flight, 20 ms: msg/s ÷ vendor demo's, {how}",
                    row["msg_per_s"] / vendor["msg_per_s"],
                    10.0,
                    True,
                    note=None if ceiling is None else f"ceiling (raw streams floor ÷ vendor): {ceiling:.2f}",
                )
    return out


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    rows = report["rows"]
    m = report["machine"]
    lines = [
        "# Send benchmark",
        "",
        f"Generated {report['generated']} by `python -m benchmarks{' --quick' if report['quick'] else ''}` "
        f"({'quick' if report['quick'] else 'full'} mode: each run at most {report['count']:,} messages "
        f"or {report['budget']} s, median of {report['repeats']} interleaved runs).",
        "",
        f"Machine: {m['cpu']}, nproc {m['nproc']}, {m['python']}, {m['platform']}. "
        f"Fake server (raw asyncio streams, HTTP/1.1 keep-alive) in its own process"
        + (f" on CPU {report['server_cpu']}, client on CPU {report['client_cpu']}." if report["client_cpu"] is not None
           else " (no CPU pinning: fewer than 2 CPUs).")
        + " Loopback.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        "",
        "Client CPU is `time.process_time()` of the client process (all threads) over the measured "
        "part, divided by messages. Share of the physical limit = msg/s ÷ (in flight ÷ 20 ms). "
        "Every client POSTs the same signed form and decodes the JSON answer; the library rows also "
        "validate, run the default limiter (a distinct number per message, so it never waits) and "
        "apply the outcome rules. The vendor demo runs N threads for N in flight. httpx, aiohttp "
        "and the library use pools of 100 connections by default, so at 500 in flight 400 wait.",
        "",
        "| client | in flight | 0 ms: msg/s | 0 ms: CPU µs/msg | 20 ms: msg/s | 20 ms: CPU µs/msg | 20 ms: share of limit |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    names: list[str] = []
    for row in rows:
        if row["client"] not in names:
            names.append(row["client"])
    for name in names:
        for in_flight in IN_FLIGHT:
            r0 = _find(rows, name, in_flight, 0)
            r20 = _find(rows, name, in_flight, 20)
            if r0 is None and r20 is None:
                continue
            lines.append(
                f"| {name} | {in_flight} | {_num(r0 and r0['msg_per_s'])} | {_num(r0 and r0['cpu_us_per_msg'])} "
                f"| {_num(r20 and r20['msg_per_s'])} | {_num(r20 and r20['cpu_us_per_msg'])} "
                f"| {_num(r20 and r20['share_of_physical_limit'], 2)} |"
            )
    lines += [
        "",
        "## Targets (issue 8)",
        "",
        "| target | value | limit | met | note |",
        "|---|---:|---:|:---:|---|",
    ]
    for t in report["targets"]:
        met = "–" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(
            f"| {t['target']} | {_num(t['value'], 2)} | {t['limit']} | {met} | {t.get('note', '')} |"
        )
    errors = sum(r["errors"] for r in rows)
    if errors:
        lines += ["", f"**{errors} failed sends during the run** (see send.json)."]
    memory = report.get("memory")
    lines += ["", "## Memory: `send_many` peak RSS", ""]
    if memory and memory.get("rows"):
        lines += [
            memory.get("note", ""),
            "",
            "| messages | peak RSS MiB | accepted | seconds |",
            "|---:|---:|---:|---:|",
        ]
        for r in memory["rows"]:
            lines.append(f"| {r['messages']:,} | {r['peak_rss_mib']:.1f} | {r['accepted']:,} | {r['seconds']:.1f} |")
        if "growth" in memory:
            lines += ["", f"Growth from the smallest to the largest size: {memory['growth']:.2f}×."]
    else:
        lines.append((memory or {}).get("note", "Not run."))
    limiter_md = RESULTS / "limiter.md"
    if limiter_md.exists():
        # the limiter's own report (issue 4), as last written by benchmarks/limiter.py
        body = limiter_md.read_text().split("\n", 1)[1].strip()
        lines += [
            "",
            "## Limiter",
            "",
            "From [limiter.md](limiter.md), as last written by `python benchmarks/limiter.py` "
            "(not rerun by `python -m benchmarks`).",
            "",
            body,
        ]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], output: Path) -> str:
    """Write ``send.json`` and ``send.md`` into ``output``; return the Markdown."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "send.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    text = markdown(report)
    (output / "send.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts: about 1-2 minutes")
    parser.add_argument("--count", type=int, help="messages per run (bound)")
    parser.add_argument("--budget", type=float, help="seconds per run (bound)")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--in-flight", type=int, action="append", help="default: 1 10 100 500")
    parser.add_argument("--latency-ms", type=float, action="append", help="default: 0 20")
    parser.add_argument("--client", action="append", help="substring of client names to run")
    parser.add_argument("--no-memory", action="store_true", help="skip the send_many memory benchmark")
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="rerun only the memory benchmark into the existing send.json, and rewrite send.md",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="directory for send.json / send.md")
    args = parser.parse_args(argv)

    if args.memory_only:
        from benchmarks import memory as _memory

        report = json.loads((args.output / "send.json").read_text())
        report["memory"] = _memory.run_all(
            quick=args.quick, sizes=_memory.QUICK_SIZES if args.quick else _memory.FULL_SIZES
        )
        write_report(report, args.output)
        return

    count = args.count or (2_000 if args.quick else 20_000)
    budget = args.budget or (0.35 if args.quick else 2.0)
    in_flights = tuple(args.in_flight or IN_FLIGHT)
    latencies = tuple(x / 1000 for x in (args.latency_ms or [x * 1000 for x in LATENCIES]))
    names = list(_clients.available())
    if args.client:
        names = [n for n in names if any(s.lower() in n.lower() for s in args.client)]

    host = machine()  # before pinning: nproc counts the CPUs this process may use
    server_cpu, client_cpu = pin_cpus()
    with fake_server(latencies, server_cpu) as urls:
        rows = run_grid(urls, names, count=count, budget=budget, repeats=args.repeats,
                        in_flights=in_flights, latencies=latencies)

    memory: dict[str, Any] | None = None
    if not args.no_memory:
        from benchmarks import memory as _memory

        memory = _memory.run_all(
            quick=args.quick, sizes=_memory.QUICK_SIZES if args.quick else _memory.FULL_SIZES
        )

    report = {
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "count": count,
        "budget": budget,
        "repeats": args.repeats,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "machine": host,
        "rows": rows,
        "targets": targets(rows),
        "memory": memory,
    }
    print()
    print(write_report(report, args.output))


if __name__ == "__main__":
    main()
