"""Smoke tests of the benchmark modes (#19, #20): tiny counts, loopback only.

They check that each mode runs end to end and reports what it claims to (rows for
each loop, the instrumentation pair, the network rows and targets, the memory
benchmark's native target), not any figure. The delay proxy's one timing claim is
checked as a lower bound only (the proxy must add its round trips, to within its timer
tolerance; a busy machine can only make it slower).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import clients, memory, network, run

ROOT = Path(__file__).resolve().parents[2]
RTT = 0.05


def _bench(*args: str, timeout: float = 60) -> None:
    out = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]


async def _timed_requests(port: int) -> tuple[float, float, bytes]:
    request = (
        f"POST {clients.SUBMIT_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1\r\n\r\nx"
    ).encode()
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        body = await asyncio.wait_for(reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])), 10)
        first = time.perf_counter() - started
        started = time.perf_counter()
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        second = time.perf_counter() - started
    finally:
        writer.close()
    return first, second, body


def test_delay_proxy_adds_the_handshake_and_the_round_trip() -> None:
    with run.fake_server((0.0,), None) as direct, network.delay_proxy(direct[0.0], (RTT,), None) as urls:
        port = int(urls[RTT].rsplit(":", 1)[1])
        first, second, body = asyncio.run(_timed_requests(port))
    assert json.loads(body)["code"] == 2  # the bytes pass through unchanged
    # each direction is delivered to within half a millisecond of its due time
    assert first >= 2 * RTT - 0.0015  # TCP handshake + the request's round trip
    assert second >= RTT - 0.0015  # a reused connection: one round trip


def test_plain_mode_runs_both_loops_and_the_instrumentation_pair(tmp_path: Path) -> None:
    _bench("-m", "benchmarks", "--quick", "--budget", "0.1", "--count", "40", "--repeats", "1",
           "--in-flight", "4", "--latency-ms", "0", "--client", "send, backend=native", "--no-memory",
           "--output", str(tmp_path))
    report = json.loads((tmp_path / "send.json").read_text())
    cases = {(r["client"], r["loop"]) for r in report["rows"]}
    assert (run.OURS_NATIVE, "asyncio") in cases
    assert (run.OURS_NATIVE, "uvloop") in cases
    assert (clients.TELEMETRY_OFF, "asyncio") in cases
    assert (clients.TELEMETRY_NOOP, "asyncio") in cases
    assert all(r["errors"] == 0 and min(r["messages"]) > 0 for r in report["rows"])
    configurations = [t["configuration"] for t in report["telemetry"]]
    assert [c.split(" ")[0].rstrip(",") for c in configurations] == [
        "telemetry", "opentelemetry-api", "opentelemetry-api"
    ]
    assert report["telemetry"][0]["cpu_vs_off"] == 1.0
    assert "## Instrumentation cost (issue 20)" in (tmp_path / "send.md").read_text()


def test_network_mode_runs_over_tls_through_the_proxy(tmp_path: Path) -> None:
    _bench("-m", "benchmarks", "--network", "--quick", "--budget", "0.1", "--count", "20",
           "--in-flight", "1", "--in-flight", "10", "--rtt-ms", "20",
           "--client", "send, backend=native", "--client", "vendor", "--client", "floor",
           "--output", str(tmp_path))
    report = json.loads((tmp_path / "network.json").read_text())
    names = {r["client"] for r in report["rows"]}
    assert names == {run.OURS_NATIVE, network.VENDOR, network.VENDOR_SHARED, network.FLOOR}
    assert all(r["errors"] == 0 and min(r["messages"]) > 0 for r in report["rows"])
    assert all(0 < r["share_of_physical_limit"] < 1.01 for r in report["rows"])
    assert {t["target"] for t in report["targets"]} >= {
        f"{run.OURS_NATIVE}, 10 in flight, 20 ms: msg/s ÷ vendor demo's as shipped (1 at a time)",
        f"{run.OURS_NATIVE}, 10 in flight, 20 ms: CPU/msg ÷ vendor demo's with 10 threads",
        f"{run.OURS_NATIVE}, 10 in flight, 20 ms: CPU/msg ÷ vendor demo's (shared SSLContext) with 10 threads",
    }
    assert "## Targets (issue 19, realistic network)" in (tmp_path / "network.md").read_text()


def test_memory_benchmark_runs_on_the_native_backend(tmp_path: Path) -> None:
    result = memory.run_all(sizes=(300,), targets=("native",))  # one size: one child process
    memory.write(result, tmp_path)
    written = json.loads((tmp_path / "memory.json").read_text())
    assert [(r["target"], r["messages"], r["accepted"], r["not_accepted"]) for r in written["rows"]] == [
        ("native", 300, 300, {})
    ]
    assert written["growth"] == {"native": 1.0}
    assert written["rows"][0]["peak_rss_mib"] > 0
