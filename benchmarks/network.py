"""Realistic network mode of the send benchmark: HTTPS through a delay proxy (#19).

``python -m benchmarks --network [--quick]`` (or ``python -m benchmarks.network``):

1. makes a test CA and a certificate for 127.0.0.1 with ``trustme`` (in a temporary
   directory, removed afterwards); every client trusts that CA through an
   :class:`ssl.SSLContext` (``ssl.create_default_context(cafile=...)``: verification and
   host name checks on), the library through its ``verify=`` option;
2. starts the fake endpoint (:mod:`benchmarks._server`) serving HTTPS with no added
   latency, and the delay proxy (:mod:`benchmarks._proxy`) in its own process in front
   of it, one port per round-trip time (20 and 40 ms): each direction delayed by half
   the round trip, and one more round trip before a new connection's first byte (the
   TCP handshake loopback skips). Both processes share CPU 0; the client runs on CPU 1;
3. runs every backend of the library (native, aiohttp, httpx), raw httpx, raw aiohttp,
   the vendor demo (``http.client``, a new HTTPS connection per message: as shipped at
   one message at a time, and given 10 and 100 threads; as written, each connection
   builds the default ``SSLContext`` from the system's CA store, and a kinder variant
   shares one context) and the floor (raw asyncio
   streams, prebuilt bytes, keep-alive TLS) at 1, 10 and 100 in flight and each round
   trip, three interleaved rounds; each run bounded by a message count and a time
   budget, after a warm-up that opens the connections (a keep-alive client pays its
   handshakes there once; the vendor demo pays one per message);
4. reports medians: messages/s, client CPU µs per message (``time.process_time`` of this
   process, all threads) and the share of the physical limit, in flight ÷ round trip
   (what a keep-alive client could reach: one round trip per message);
5. checks the targets of #19 and writes ``benchmarks/results/network.json`` / ``.md``.

A new HTTPS connection costs three round trips here (TCP, TLS 1.3, the request), so the
vendor demo as shipped reaches at most a third of one keep-alive connection's rate.
``--quick``: one round, 0.5 s per run (about a minute); the full run takes about
four minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # python benchmarks/network.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from benchmarks import clients as _clients  # noqa: E402
from benchmarks import run as _run  # noqa: E402

RTTS = (0.02, 0.04)
IN_FLIGHT = (1, 10, 100)
REPEATS = 3
VENDOR = "vendor demo (http.client, new HTTPS connection per message, N threads)"
VENDOR_SHARED = "vendor demo given one shared SSLContext (else as above)"
FLOOR = "raw asyncio streams over TLS (floor)"
BACKENDS = (_run.OURS_NATIVE, _run.OURS_AIOHTTP, _run.OURS_HTTPX)

# ------------------------------------------------------------------ TLS and the processes


@contextlib.contextmanager
def tls_files() -> Iterator[dict[str, Path]]:
    """A trustme CA and a server certificate for 127.0.0.1, as PEM files in a temporary dir."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    with tempfile.TemporaryDirectory(prefix="ihuyi-bench-tls-") as tmp:
        files = {"ca": Path(tmp) / "ca.pem", "cert": Path(tmp) / "server.pem", "key": Path(tmp) / "server.key"}
        ca.cert_pem.write_to_path(str(files["ca"]))
        cert.private_key_pem.write_to_path(str(files["key"]))
        with files["cert"].open("wb") as out:
            for blob in cert.cert_chain_pems:
                out.write(blob.bytes())
        yield files


@contextlib.contextmanager
def delay_proxy(upstream: str, rtts: tuple[float, ...], cpu: int | None) -> Iterator[dict[float, str]]:
    """The delay proxy's process in front of ``upstream`` (a base URL); yields rtt -> base URL."""
    port = upstream.rsplit(":", 1)[1]
    cmd = [sys.executable, "-m", "benchmarks._proxy", "--upstream", port]
    for rtt in rtts:
        cmd += ["--rtt", str(rtt)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        _run.PEERS.append(proc.pid)
        yield {float(rtt): f"https://127.0.0.1:{p}" for rtt, p in info["ports"].items()}
    finally:
        with contextlib.suppress(ValueError):
            _run.PEERS.remove(proc.pid)
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def client_context(ca: Path) -> ssl.SSLContext:
    """What every client trusts: the test CA only, verification and host name checks on."""
    return ssl.create_default_context(cafile=str(ca))


def network_clients(context: ssl.SSLContext, ca: Path) -> dict[str, tuple[str, Any]]:
    """The network mode's rows: name -> (kind, maker bound to ``context``); the vendor
    demo as written builds its own context per connection (trusting ``ca`` too)."""
    plain = _clients.available()
    chosen = {
        name: plain[name]
        for name in (*BACKENDS, _run.RAW_HTTPX, _run.RAW_AIOHTTP)
        if name in plain
    }
    chosen[VENDOR_SHARED] = ("thread", _clients.make_vendor)
    chosen[FLOOR] = ("async", _clients.make_raw_streams)
    made = {name: (kind, functools.partial(make, context=context)) for name, (kind, make) in chosen.items()}
    made[VENDOR] = ("thread", functools.partial(_clients.make_vendor, cafile=str(ca)))
    order = [n for n in made if n not in (VENDOR, VENDOR_SHARED, FLOOR)] + [VENDOR, VENDOR_SHARED, FLOOR]
    return {name: made[name] for name in order}


# ------------------------------------------------------------------ targets and report


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The network targets of #19, on this run's medians."""
    out: list[dict[str, Any]] = []
    add = _run._adder(out)
    floor10 = _run._find(rows, FLOOR, 10, 20)
    for vendor, label in ((VENDOR, "vendor demo's"), (VENDOR_SHARED, "vendor demo's (shared SSLContext)")):
        shipped = _run._find(rows, vendor, 1, 20)
        threads10 = _run._find(rows, vendor, 10, 20)
        for name in BACKENDS:
            row = _run._find(rows, name, 10, 20)
            if row is None:
                continue
            if shipped:
                ceiling = f"floor ÷ vendor: {floor10['msg_per_s'] / shipped['msg_per_s']:.1f}" if floor10 else None
                add(f"{name}, 10 in flight, 20 ms: msg/s ÷ {label} as shipped (1 at a time)",
                    row["msg_per_s"] / shipped["msg_per_s"], 20.0, True, note=ceiling)
            if threads10:
                add(f"{name}, 10 in flight, 20 ms: msg/s ÷ {label} with 10 threads",
                    row["msg_per_s"] / threads10["msg_per_s"], 1.0, True)
                floor_cpu = (f"the floor's: {floor10['cpu_us_per_msg'] / threads10['cpu_us_per_msg']:.2f}"
                             if floor10 else None)
                add(f"{name}, 10 in flight, 20 ms: CPU/msg ÷ {label} with 10 threads",
                    row["cpu_us_per_msg"] / threads10["cpu_us_per_msg"], 0.1, False, note=floor_cpu)
    for rtt_ms in (round(r * 1000) for r in RTTS):
        floor = _run._find(rows, FLOOR, 100, rtt_ms)
        for name in (_run.OURS_NATIVE, _run.OURS_AIOHTTP):
            row = _run._find(rows, name, 100, rtt_ms)
            if row:
                add(f"{name}, 100 in flight, {rtt_ms} ms: share of the physical limit",
                    row["share_of_physical_limit"], 0.85, True,
                    note=f"the floor's: {floor['share_of_physical_limit']:.2f}" if floor else None)
    return out


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    rtts = report["rtts_ms"]
    lines = [
        "# Send benchmark, realistic network mode",
        "",
        f"Generated {report['generated']} by `{report['command']}` ({'quick' if report['quick'] else 'full'} "
        f"mode: each run at most {report['count']:,} messages or {report['budget']} s, median of "
        f"{report['repeats']} interleaved runs).",
        "",
        f"Machine: {m['cpu']}, nproc {m['nproc']}, {m['python']}, {m['platform']}.{_run.load_note(m)} "
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        "",
        "The fake endpoint serves HTTPS (stdlib `ssl`, TLS 1.3, a `trustme` certificate for 127.0.0.1) "
        "behind a delay proxy in its own process: each direction delayed by half the round trip, and one "
        "more round trip before a new connection's first byte (the TCP handshake). Server and proxy "
        + (f"on CPU {report['server_cpu']}, client on CPU {report['client_cpu']}. "
           if report["client_cpu"] is not None else "unpinned (fewer than 2 CPUs). ")
        + "Every client verifies the certificate against the test CA. A keep-alive client opens its "
        "connections in the warm-up; the vendor demo opens a new HTTPS connection per message (three "
        "round trips: TCP, TLS, the request). As written (the demo's `HTTPConnection` made "
        "`HTTPSConnection(host, port)`), each connection builds the default `SSLContext`, reading the "
        "system's CA store (`ssl.create_default_context()`, plus the test CA); the row \"given one shared "
        "SSLContext\" is the kinder variant a user could write, every connection reusing one context. "
        "Client CPU: `time.process_time()` of the client process "
        "(all threads) over the measured part, per message; server + proxy CPU: theirs over the same "
        "part (from `/proc`, 10 ms ticks), per message: when it times msg/s nears one CPU, the test "
        "rig, not the client, is the limit (the floor row shows the rig's ceiling). Share of the "
        "physical limit: msg/s ÷ (in flight ÷ round trip).",
        "",
        "| client | loop | in flight | " + " | ".join(
            f"{r} ms: msg/s | {r} ms: CPU µs/msg | {r} ms: share of limit | {r} ms: server + proxy CPU µs/msg"
            for r in rtts
        ) + " |",
        "|---|---|---:|" + "---:|---:|---:|---:|" * len(rtts),
    ]
    rows = report["rows"]
    cases: list[tuple[str, str]] = []
    for row in rows:
        if (row["client"], row["loop"]) not in cases:
            cases.append((row["client"], row["loop"]))
    for name, loop in cases:
        for in_flight in report["in_flights"]:
            found = [_run._find(rows, name, in_flight, r, loop) for r in rtts]
            if not any(found):
                continue
            cells = " | ".join(
                f"{_run._num(_run._get(r, 'msg_per_s'), 1)} | {_run._num(_run._get(r, 'cpu_us_per_msg'))} "
                f"| {_run._num(_run._get(r, 'share_of_physical_limit'), 2)} "
                f"| {_run._num(_run._get(r, 'peer_cpu_us_per_msg'))}"
                for r in found
            )
            lines.append(f"| {name} | {loop} | {in_flight} | {cells} |")
    lines += _run._md_targets(report["targets"], "Targets (issue 19, realistic network)")
    errors = sum(r["errors"] for r in rows)
    if errors:
        lines.append(f"**{errors} failed sends during the run** (see network.json).")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], output: Path) -> str:
    output.mkdir(parents=True, exist_ok=True)
    (output / "network.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    text = markdown(report)
    (output / "network.md").write_text(text)
    return text


# ------------------------------------------------------------------ main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks --network", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round, short runs: about a minute")
    parser.add_argument("--count", type=int, help="messages per run (bound)")
    parser.add_argument("--budget", type=float, help="seconds per run (bound)")
    parser.add_argument("--repeats", type=int, help=f"default {REPEATS} ({1} with --quick)")
    parser.add_argument("--in-flight", type=int, action="append", help="default: 1 10 100")
    parser.add_argument("--rtt-ms", type=float, action="append", help="default: 20 40")
    parser.add_argument("--loop", action="append", choices=_run.LOOPS, help="default: asyncio")
    parser.add_argument("--client", action="append", help="substring of client names to run")
    parser.add_argument("--output", type=Path, default=_run.RESULTS, help="directory for network.json / .md")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    count = args.count or (2_000 if args.quick else 20_000)
    budget = args.budget or (0.5 if args.quick else 1.5)
    repeats = args.repeats or (1 if args.quick else REPEATS)
    in_flights = tuple(args.in_flight or IN_FLIGHT)
    rtts = tuple(x / 1000 for x in (args.rtt_ms or [r * 1000 for r in RTTS]))
    loops = _run.loops_available(tuple(args.loop or ("asyncio",)))

    host = _run.machine()
    server_cpu, client_cpu = _run.pin_cpus()
    with tls_files() as files:
        clients = network_clients(client_context(files["ca"]), files["ca"])
        names = list(clients)
        if args.client:
            names = [n for n in names if any(s.lower() in n.lower() for s in args.client)]
        tls_args = ("--certfile", str(files["cert"]), "--keyfile", str(files["key"]))
        with _run.fake_server((0.0,), server_cpu, tls_args, scheme="https") as direct, \
                delay_proxy(direct[0.0], rtts, server_cpu) as urls:
            rows = _run.run_grid(
                urls, names, count=count, budget=budget, repeats=repeats, in_flights=in_flights,
                latencies=rtts, loops=loops, clients=clients, wanted=lambda *_: True,
            )
    host["load_after"] = _run._load()
    report = {
        "generated": _run._now(),
        "command": "python -m benchmarks --network " + " ".join(argv),
        "quick": args.quick,
        "count": count,
        "budget": budget,
        "repeats": repeats,
        "in_flights": list(in_flights),
        "rtts_ms": [round(r * 1000) for r in rtts],
        "loops": list(loops),
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "machine": host,
        "rows": rows,
        "targets": targets(rows),
    }
    print()
    print(write_report(report, args.output))
    return report


if __name__ == "__main__":
    main()
