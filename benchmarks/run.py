"""Send benchmark: ihuyi-async against raw httpx, raw aiohttp and the vendor's demo style.

``python -m benchmarks [--quick]`` (or ``python benchmarks/run.py``):

1. starts the fake endpoint (:mod:`benchmarks._server`) in its own process on
   127.0.0.1, one port per added latency (0 ms and 20 ms), pinned to CPU 0 when
   the machine has two or more CPUs; this process (the client) pins itself to CPU 1;
2. runs every client at 1, 10, 100 and 500 in flight and each latency, the asyncio
   clients on both event loops (``asyncio``'s own and uvloop, when installed), the whole
   grid repeated three times and interleaved (round 1 of every case, then round 2…);
   each run is bounded by a message count *and* a time budget, after a warm-up
   round that opens the connections; the instrumentation pair (#20: the native
   backend's send with telemetry off, and with the OpenTelemetry API's no-op
   providers) runs beside the plain native row at 100 in flight, 0 ms, asyncio;
3. reports medians: messages/s, client CPU µs per message (``time.process_time``
   of this process, all threads, over the measured part only; the server's CPU is
   in the other process) and, at 20 ms, the share of the physical limit
   (messages/s ÷ (in flight ÷ 20 ms));
4. runs the ``send_many`` memory benchmark (:mod:`benchmarks.memory`, into
   ``results/memory.json``) unless ``--no-memory`` (then ``send.md`` shows the last one);
5. writes ``benchmarks/results/send.json`` and ``benchmarks/results/send.md``.

``python -m benchmarks --network [--quick]`` runs the realistic network mode instead
(HTTPS through a delay proxy: :mod:`benchmarks.network`).
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
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
OURS_NATIVE = "ihuyi-async send, backend=native"
LOOPS = ("asyncio", "uvloop")
#: The benchmark's own helper processes (fake server, delay proxy) while they run: their CPU
#: over each measured part is recorded too (``peer_cpu``), to show when they were the limit.
PEERS: list[int] = []


def _peer_cpu() -> float:
    """CPU seconds used so far by the processes in :data:`PEERS` (Linux ``/proc``; else 0)."""
    total = 0
    for pid in PEERS:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime, clock ticks
    return total / os.sysconf("SC_CLK_TCK") if total else 0.0


# ------------------------------------------------------------------ the server process


@contextlib.contextmanager
def fake_server(
    latencies: tuple[float, ...], cpu: int | None, extra: tuple[str, ...] = (), scheme: str = "http"
) -> Iterator[dict[float, str]]:
    """The fake endpoint's process; yields latency -> base URL. ``extra``: more arguments."""
    cmd = [sys.executable, "-m", "benchmarks._server", *extra]
    for latency in latencies:
        cmd += ["--latency", str(latency)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        PEERS.append(proc.pid)
        yield {
            float(lat): f"{scheme}://127.0.0.1:{port}" for lat, port in info["ports"].items()
        }
    finally:
        with contextlib.suppress(ValueError):
            PEERS.remove(proc.pid)
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


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

        cpu0, peer0 = time.process_time(), _peer_cpu()
        wall0 = clock()
        deadline = wall0 + budget
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        wall = clock() - wall0
        cpu, peer = time.process_time() - cpu0, _peer_cpu() - peer0
    finally:
        await close()
    return {"messages": done, "errors": errors, "wall": wall, "cpu": cpu, "peer_cpu": peer}


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
        warm: list[Future[Any]] = [pool.submit(barrier.wait) for _ in range(in_flight)]  # start every thread
        barrier.wait()
        for future in warm:
            future.result()
        send()  # warm-up
        cpu0, peer0 = time.process_time(), _peer_cpu()
        wall0 = clock()
        deadline = wall0 + budget
        futures = [pool.submit(worker) for _ in range(in_flight)]
        for future in futures:
            future.result()
        wall = clock() - wall0
        cpu, peer = time.process_time() - cpu0, _peer_cpu() - peer0
    return {"messages": state["done"], "errors": state["errors"], "wall": wall, "cpu": cpu, "peer_cpu": peer}


async def _run_batch(make: Any, url: str, in_flight: int, count: int, budget: float) -> dict[str, Any]:
    run, close = await make(url)
    try:
        clock = time.perf_counter
        await run(in_flight, min(in_flight, 100), clock() + 60)  # warm-up: open the connections
        cpu0, peer0 = time.process_time(), _peer_cpu()
        wall0 = clock()
        done, errors = await run(in_flight, count, wall0 + budget)
        wall = clock() - wall0
        cpu, peer = time.process_time() - cpu0, _peer_cpu() - peer0
    finally:
        await close()
    return {"messages": done, "errors": errors, "wall": wall, "cpu": cpu, "peer_cpu": peer}


def run_on(loop: str, coro: Any) -> Any:
    """Run ``coro`` to completion on a new event loop: ``"asyncio"``'s own or ``"uvloop"``."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def loops_available(wanted: tuple[str, ...] = LOOPS) -> tuple[str, ...]:
    """``wanted`` without uvloop when it is not installed."""
    import importlib.util

    return tuple(x for x in wanted if x != "uvloop" or importlib.util.find_spec("uvloop") is not None)


def run_one(
    kind: str, make: Any, url: str, in_flight: int, count: int, budget: float, loop: str = "asyncio"
) -> dict[str, Any]:
    if kind == "thread":
        return _run_threads(make, url, in_flight, count, budget)
    if kind == "batch":
        return run_on(loop, _run_batch(make, url, in_flight, count, budget))  # type: ignore[no-any-return]
    return run_on(loop, _run_async(make, url, in_flight, count, budget))  # type: ignore[no-any-return]


# ------------------------------------------------------------------ the grid


def plain_cases(in_flights: tuple[int, ...]) -> Callable[[str, str, int, float], bool]:
    """Which (client, loop, in flight, latency) the plain mode runs: the telemetry pair only
    where it measures CPU (asyncio, 0 ms, beside the plain native row), at 100 in flight, or
    at the largest in flight of the run when 100 is not in it."""
    telemetry_at = 100 if 100 in in_flights else max(in_flights)

    def wanted(name: str, loop: str, in_flight: int, latency: float) -> bool:
        if name in (_clients.TELEMETRY_OFF, _clients.TELEMETRY_NOOP):
            return loop == "asyncio" and latency == 0 and in_flight == telemetry_at
        return True

    return wanted


def run_grid(
    urls: dict[float, str],
    names: list[str],
    *,
    count: int,
    budget: float,
    repeats: int,
    in_flights: tuple[int, ...],
    latencies: tuple[float, ...],
    loops: tuple[str, ...] = ("asyncio",),
    clients: dict[str, tuple[str, Any]] | None = None,
    wanted: Callable[[str, str, int, float], bool] | None = None,
) -> list[dict[str, Any]]:
    """Every case ``repeats`` times, interleaved; one row of medians per case.

    Thread clients run once per case (their loop is ``"threads"``), the others on each of
    ``loops``. Each run is bounded by ``count`` messages and ``budget`` seconds.
    """
    available = clients if clients is not None else _clients.available()
    wanted = wanted or plain_cases(in_flights)
    samples: dict[tuple[str, str, int, float], list[dict[str, Any]]] = {}
    for round_ in range(repeats):
        for latency in latencies:
            for in_flight in in_flights:
                for name in names:
                    kind, make = available[name]
                    for loop in ("threads",) if kind == "thread" else loops:
                        if not wanted(name, loop, in_flight, latency):
                            continue
                        # at 20 ms one in-flight caller cannot do more than 50/s: bound by time
                        n = count if latency == 0 else min(count, int(in_flight / latency * budget) + 1)
                        sample = run_one(kind, make, urls[latency], in_flight, n, budget, loop)
                        samples.setdefault((name, loop, in_flight, latency), []).append(sample)
                        _print_sample(round_, repeats, latency, in_flight, f"{name} [{loop}]", sample)
    return [_row(key, runs) for key, runs in samples.items()]


def _print_sample(
    round_: int, repeats: int, latency: float, in_flight: int, label: str, sample: dict[str, Any]
) -> None:
    rate = sample["messages"] / sample["wall"]
    cpu_us = sample["cpu"] / max(sample["messages"], 1) * 1e6
    print(
        f"[{round_ + 1}/{repeats}] {latency * 1000:4.0f} ms {in_flight:4d} in flight "
        f"{label:65s} {rate:9.0f} msg/s {cpu_us:8.0f} µs/msg"
        + (f"  ERRORS {sample['errors']}" if sample["errors"] else ""),
        flush=True,
    )


def _row(key: tuple[str, str, int, float], runs: list[dict[str, Any]]) -> dict[str, Any]:
    name, loop, in_flight, latency = key
    rates = [r["messages"] / r["wall"] for r in runs]
    cpus = [r["cpu"] / max(r["messages"], 1) * 1e6 for r in runs]
    rate = statistics.median(rates)
    row = {
        "client": name,
        "loop": loop,
        "in_flight": in_flight,
        "latency_ms": round(latency * 1000),
        "msg_per_s": rate,
        "cpu_us_per_msg": statistics.median(cpus),
        "messages": [r["messages"] for r in runs],
        "errors": sum(r["errors"] for r in runs),
        "runs_msg_per_s": rates,
        "runs_cpu_us_per_msg": cpus,
        "peer_cpu_us_per_msg": statistics.median(
            r.get("peer_cpu", 0.0) / max(r["messages"], 1) * 1e6 for r in runs
        ),
    }
    if latency > 0:
        row["share_of_physical_limit"] = rate / (in_flight / latency)
    return row


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
        "load_before": _load(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "versions": versions,
    }


def _load() -> float | None:
    """The 1-minute load average (other processes on a shared machine move every figure)."""
    with contextlib.suppress(OSError, AttributeError):
        return round(os.getloadavg()[0], 2)
    return None


def load_note(m: dict[str, Any]) -> str:
    if m.get("load_before") is None:
        return ""
    return f" Load average (1 min) {m['load_before']} before the run, {m.get('load_after')} after."


def _find(
    rows: list[dict[str, Any]], client: str, in_flight: int, latency_ms: int, loop: str = "asyncio"
) -> dict[str, Any] | None:
    for row in rows:
        if (
            row["client"] == client
            and row["in_flight"] == in_flight
            and row["latency_ms"] == latency_ms
            and row.get("loop", "asyncio") in (loop, "threads")
        ):
            return row
    return None


def _adder(out: list[dict[str, Any]]) -> Callable[..., None]:
    def add(name: str, value: float | None, limit: float, higher: bool, note: str | None = None) -> None:
        ok = None if value is None else (value >= limit if higher else value <= limit)
        out.append({"target": name, "value": value, "limit": limit, "met": ok, "note": note or ""})

    return add


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets of issues 8 and 19 that the plain mode measures, on this run's medians.

    Issue 8's "10x the vendor demo at 10 in flight, 20 ms" is withdrawn by issue 19 (on
    plain loopback a new connection is free, so the floor itself reached 10.04x); the
    network mode (:mod:`benchmarks.network`) measures its successor.
    """
    out: list[dict[str, Any]] = []
    add = _adder(out)
    raw_a0 = _find(rows, RAW_AIOHTTP, 100, 0)
    ours_a0 = _find(rows, OURS_AIOHTTP, 100, 0)
    if ours_a0 and raw_a0:
        add("aiohttp backend, 100 in flight, 0 ms: CPU/msg ÷ raw aiohttp's",
            ours_a0["cpu_us_per_msg"] / raw_a0["cpu_us_per_msg"], 1.25, False)
        add("aiohttp backend, 100 in flight, 0 ms: msg/s ÷ raw aiohttp's",
            ours_a0["msg_per_s"] / raw_a0["msg_per_s"], 0.8, True)
    ours_a20 = _find(rows, OURS_AIOHTTP, 100, 20)
    if ours_a20:
        add("aiohttp backend, 100 in flight, 20 ms: share of the physical limit",
            ours_a20["share_of_physical_limit"], 0.85, True)
    ours_n0 = _find(rows, OURS_NATIVE, 100, 0)
    if ours_n0 and raw_a0:
        add("native backend, 100 in flight, 0 ms, asyncio: CPU/msg ÷ raw aiohttp's",
            ours_n0["cpu_us_per_msg"] / raw_a0["cpu_us_per_msg"], 0.4, False,
            note="the 150-line prototype without validation, limiter and outcome rules: 0.32")
    for loop in LOOPS:
        ours_n20 = _find(rows, OURS_NATIVE, 100, 20, loop)
        if ours_n20:
            add(f"native backend, 100 in flight, 20 ms, {loop}: share of the physical limit",
                ours_n20["share_of_physical_limit"], 0.9, True)
    ours_h0 = _find(rows, OURS_HTTPX, 10, 0)
    raw_h0 = _find(rows, RAW_HTTPX, 10, 0)
    if ours_h0 and raw_h0:
        add("httpx backend, 10 in flight, 0 ms: CPU/msg ÷ raw httpx's",
            ours_h0["cpu_us_per_msg"] / raw_h0["cpu_us_per_msg"], 1.25, False)
    return out


def telemetry_cost(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 20: the send's client CPU with the OpenTelemetry hooks in each state, same run."""
    off = next((r for r in rows if r["client"] == _clients.TELEMETRY_OFF), None)
    if off is None:
        return []
    in_flight = off["in_flight"]
    out = []
    for name, what in (
        (_clients.TELEMETRY_OFF, "telemetry off (as without opentelemetry-api)"),
        (OURS_NATIVE, "opentelemetry-api installed, no SDK (the default)"),
        (_clients.TELEMETRY_NOOP, "opentelemetry-api, no-op providers given to instrument() (every hook runs)"),
    ):
        row = _find(rows, name, in_flight, 0)
        if row:
            out.append({
                "configuration": what,
                "in_flight": in_flight,
                "cpu_us_per_msg": row["cpu_us_per_msg"],
                "msg_per_s": row["msg_per_s"],
                "cpu_vs_off": row["cpu_us_per_msg"] / off["cpu_us_per_msg"],
            })
    return out


def _get(row: dict[str, Any] | None, key: str) -> float | None:
    return None if row is None else row[key]


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    lines = _md_head(report) + _md_table(report["rows"])
    lines += _md_targets(report["targets"], "Targets (issues 8 and 19)")
    lines.append(
        "Issue 8's \"10× the vendor demo at 10 in flight, 20 ms\" is withdrawn (issue 19): on plain "
        "loopback a new connection costs nothing, so the floor itself cannot reach it. The network "
        "mode measures its successor ([network.md](network.md))."
    )
    errors = sum(r["errors"] for r in report["rows"])
    if errors:
        lines += ["", f"**{errors} failed sends during the run** (see send.json)."]
    lines += _md_telemetry(report.get("telemetry") or [])
    lines += _md_memory(report.get("memory"))
    lines += _md_limiter()
    return "\n".join(lines) + "\n"


def _md_head(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    return [
        "# Send benchmark",
        "",
        f"Generated {report['generated']} by `{report.get('command') or 'python -m benchmarks'}` "
        f"({'quick' if report['quick'] else 'full'} mode: each run at most {report['count']:,} messages "
        f"or {report['budget']} s, median of {report['repeats']} interleaved runs).",
        "",
        f"Machine: {m['cpu']}, nproc {m['nproc']}, {m['python']}, {m['platform']}.{load_note(m)} "
        f"Fake server (raw asyncio streams, HTTP/1.1 keep-alive) in its own process"
        + (f" on CPU {report['server_cpu']}, client on CPU {report['client_cpu']}." if report["client_cpu"] is not None
           else " (no CPU pinning: fewer than 2 CPUs).")
        + " Loopback, plain HTTP.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        "",
        "Client CPU is `time.process_time()` of the client process (all threads) over the measured "
        "part, divided by messages. Share of the physical limit = msg/s ÷ (in flight ÷ 20 ms). "
        "Every client POSTs the same signed form and decodes the JSON answer; the library rows also "
        "validate, run the default limiter (a distinct number per message, so it never waits) and "
        "apply the outcome rules. The vendor demo runs N threads for N in flight. httpx, aiohttp "
        "and the library use pools of 100 connections by default, so at 500 in flight 400 wait. "
        "Loop: the event loop of the asyncio rows (`asyncio`'s own or uvloop); `threads` for the "
        "vendor demo.",
        "",
    ]


def _md_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| client | loop | in flight | 0 ms: msg/s | 0 ms: CPU µs/msg | 20 ms: msg/s | 20 ms: CPU µs/msg "
        "| 20 ms: share of limit |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    cases: list[tuple[str, str]] = []
    for row in rows:
        case = (row["client"], row.get("loop", "asyncio"))
        if case not in cases:
            cases.append(case)
    in_flights = sorted({row["in_flight"] for row in rows})
    for name, loop in cases:
        for in_flight in in_flights:
            r0 = _find(rows, name, in_flight, 0, loop)
            r20 = _find(rows, name, in_flight, 20, loop)
            if r0 is None and r20 is None:
                continue
            lines.append(
                f"| {name} | {loop} | {in_flight} | {_num(_get(r0, 'msg_per_s'))} "
                f"| {_num(_get(r0, 'cpu_us_per_msg'))} "
                f"| {_num(_get(r20, 'msg_per_s'))} | {_num(_get(r20, 'cpu_us_per_msg'))} "
                f"| {_num(_get(r20, 'share_of_physical_limit'), 2)} |"
            )
    return lines


def _md_targets(found: list[dict[str, Any]], title: str) -> list[str]:
    lines = ["", f"## {title}", "", "| target | value | limit | met | note |", "|---|---:|---:|:---:|---|"]
    for t in found:
        met = "–" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {_num(t['value'], 2)} | {t['limit']} | {met} | {t.get('note', '')} |")
    return lines + [""]


def _md_telemetry(found: list[dict[str, Any]]) -> list[str]:
    if not found:
        return []
    lines = [
        "",
        "## Instrumentation cost (issue 20)",
        "",
        f"`send`, `backend=\"native\"`, {found[0].get('in_flight', 100)} in flight, 0 ms, asyncio, same run: "
        "the OpenTelemetry "
        "hooks in three states (rows of the table above). With no SDK the hooks return one shared "
        "no-op span before building any attribute; with providers given to `instrument()` every "
        "hook runs against the API's no-op tracer and meter.",
        "",
        "| configuration | msg/s | client CPU µs/msg | CPU ÷ telemetry off |",
        "|---|---:|---:|---:|",
    ]
    lines.extend(
        f"| {t['configuration']} | {_num(t['msg_per_s'])} | {_num(t['cpu_us_per_msg'])} | {t['cpu_vs_off']:.2f} |"
        for t in found
    )
    return lines


def _md_memory(memory: dict[str, Any] | None) -> list[str]:
    lines = ["", "## Memory: `send_many` peak RSS", ""]
    if not memory or not memory.get("rows"):
        return lines + [(memory or {}).get("note", "Not run.")]
    if memory.get("generated"):
        lines += [f"Measured {memory['generated']}.", ""]
    lines += [
        memory.get("note", ""),
        "",
        "| target | messages | peak RSS MiB | accepted | seconds |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in memory["rows"]:
        lines.append(
            f"| {r.get('target', 'emulator')} | {r['messages']:,} | {r['peak_rss_mib']:.1f} | {r['accepted']:,} "
            f"| {r['seconds']:.1f} |"
        )
    incomplete = [r for r in memory["rows"] if r["accepted"] != r["messages"]]
    if incomplete:
        lines += ["", "**Not every message was accepted** in " + ", ".join(
            f"{r.get('target', 'emulator')} {r['messages']:,} ({r.get('not_accepted') or 'see memory.json'})"
            for r in incomplete
        ) + ": the growth below is not a like-for-like comparison."]
    growth = memory.get("growth")
    if isinstance(growth, dict):
        lines += [""] + [
            f"Growth from the smallest to the largest size, {target}: {value:.2f}× (target: under 1.5×)."
            for target, value in growth.items()
        ]
    elif growth is not None:
        lines += ["", f"Growth from the smallest to the largest size: {growth:.2f}×."]
    return lines


def _md_limiter() -> list[str]:
    limiter_md = RESULTS / "limiter.md"
    if not limiter_md.exists():
        return []
    # the limiter's own report (issue 4), as last written by benchmarks/limiter.py
    body = limiter_md.read_text().split("\n", 1)[1].strip()
    return [
        "",
        "## Limiter",
        "",
        "From [limiter.md](limiter.md), as last written by `python benchmarks/limiter.py` "
        "(not rerun by `python -m benchmarks`).",
        "",
        body,
    ]


def write_report(report: dict[str, Any], output: Path) -> str:
    """Write ``send.json`` and ``send.md`` into ``output``; return the Markdown."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "send.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    text = markdown(report)
    (output / "send.md").write_text(text)
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", action="store_true",
                        help="the realistic network mode instead (benchmarks/network.py; its own options)")
    parser.add_argument("--quick", action="store_true", help="small counts: about 2-3 minutes")
    parser.add_argument("--count", type=int, help="messages per run (bound)")
    parser.add_argument("--budget", type=float, help="seconds per run (bound)")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--in-flight", type=int, action="append", help="default: 1 10 100 500")
    parser.add_argument("--latency-ms", type=float, action="append", help="default: 0 20")
    parser.add_argument("--loop", action="append", choices=LOOPS, help="default: asyncio and uvloop")
    parser.add_argument("--client", action="append", help="substring of client names to run")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the send_many memory benchmark (send.md shows the last memory.json)")
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="rerun only the memory benchmark into the existing send.json, and rewrite send.md",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="directory for send.json / send.md")
    return parser


def _memory(quick: bool, output: Path) -> None:
    from benchmarks import memory as _memory

    result = _memory.run_all(quick=quick, sizes=_memory.QUICK_SIZES if quick else _memory.FULL_SIZES)
    _memory.write(result, output)


def _last_memory(output: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        result = json.loads((output / "memory.json").read_text())
        if isinstance(result, dict):
            return result
    return None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _previous(output: Path) -> dict[str, Any]:
    """The last ``send.json`` in ``output``, or ``{}``."""
    with contextlib.suppress(OSError, ValueError):
        report = json.loads((output / "send.json").read_text())
        if isinstance(report, dict):
            return report
    return {}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--network" in argv:
        from benchmarks import network

        network.main([a for a in argv if a != "--network"])
        return
    args = _parser().parse_args(argv)

    if args.memory_only:
        _memory(args.quick, args.output)
        report = _previous(args.output)
        if report:
            report["memory"] = _last_memory(args.output)
            write_report(report, args.output)
        return

    count = args.count or (2_000 if args.quick else 20_000)
    budget = args.budget or (0.35 if args.quick else 2.0)
    in_flights = tuple(args.in_flight or IN_FLIGHT)
    latencies = tuple(x / 1000 for x in (args.latency_ms or [x * 1000 for x in LATENCIES]))
    loops = loops_available(tuple(args.loop or LOOPS))
    names = list(_clients.available())
    if args.client:
        names = [n for n in names if any(s.lower() in n.lower() for s in args.client)]

    host = machine()  # before pinning: nproc counts the CPUs this process may use
    server_cpu, client_cpu = pin_cpus()
    with fake_server(latencies, server_cpu) as urls:
        rows = run_grid(urls, names, count=count, budget=budget, repeats=args.repeats,
                        in_flights=in_flights, latencies=latencies, loops=loops)

    host["load_after"] = _load()
    if not args.no_memory:
        _memory(args.quick, args.output)
    report = {
        "generated": _now(),
        "command": "python -m benchmarks " + " ".join(argv),
        "quick": args.quick,
        "count": count,
        "budget": budget,
        "repeats": args.repeats,
        "loops": list(loops),
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "machine": host,
        "rows": rows,
        "targets": targets(rows),
        "telemetry": telemetry_cost(rows),
        "memory": _last_memory(args.output),
    }
    print()
    print(write_report(report, args.output))


if __name__ == "__main__":
    main()
