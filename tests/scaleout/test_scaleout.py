"""Scaling out on taskiq + RabbitMQ: 10,000 SMS jobs, 4 workers, one killed with SIGKILL.

The example app (``sms_tasks.py``, ``scaleout_worker.py``, ``scaleout_producer.py``) runs
as it would in production, each part in its own process: the emulator on loopback as
the provider (``python -m ihuyi_async.testing serve``), four workers each with its own
``IhuyiClient`` sharing one Redis limiter and one Redis key store, and a producer that
enqueues 10,000 jobs plus 100 repeated deliveries of some of them. Midway one worker is
killed with SIGKILL; RabbitMQ hands its unacknowledged messages to the other three.

Checked against what the emulator accepted: each message at most once; every delivery
ended accepted, rejected or unknown (reconciled against the 10,000 ids, none lost); the
emulator refused nothing (no 4080/4082: the shared limiter kept every number within
1 per second and 5 a day across the workers); every accepted job's smsid is the one the
emulator gave. RabbitMQ and Redis must answer: without them the test fails, never skips.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis
from scaleout_jobs import finished_key, outcomes_key, plan, started_key

pytestmark = [pytest.mark.redis, pytest.mark.slow]

HERE = Path(__file__).parent
JOBS, REPEATS, WORKERS, SEED = 10_000, 100, 4, 20261201
CONCURRENCY = int(os.environ.get("SCALEOUT_CONCURRENCY", "16"))  # jobs per worker at once (and RabbitMQ's prefetch)
LEASE = 10.0  # seconds a dead worker's claim blocks its key (the client needs > 4 + 5)
KILLED = "w1"
AMQP = ("127.0.0.1", 5672)
MARKER = re.compile(r"\[(sms-\d{5})\]")


def _require_rabbitmq() -> None:
    """RabbitMQ answers AMQP on 127.0.0.1:5672, or the test fails (``.ci/run`` starts it)."""
    try:
        with socket.create_connection(AMQP, timeout=2) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            sock.settimeout(5)
            answer = sock.recv(8)
    except OSError as exc:
        pytest.fail(f"RabbitMQ does not answer on {AMQP[0]}:{AMQP[1]} ({exc}); .ci/run starts it")
    if not answer.startswith(b"\x01"):  # Connection.Start
        pytest.fail(f"something other than RabbitMQ answers on {AMQP[0]}:{AMQP[1]}: {answer!r}")


def _read_line(proc: subprocess.Popen[str], within: float) -> str:
    """The process's next line on stdout, or fail after ``within`` seconds."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], within)
    if not ready:
        pytest.fail(f"{proc.args!r} printed nothing in {within:g} s")
    return proc.stdout.readline().strip()


@contextmanager
def _started(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process (stdout piped, stderr to ``log``), ended when the block ends."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            args, cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=err, text=True
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()


def _wait_for(what: str, ready: Callable[[], bool], within: float, logs: Path) -> None:
    """Poll ``ready()`` every 50 ms (bounded by ``within`` seconds)."""
    deadline = time.monotonic() + within
    while not ready():
        if time.monotonic() > deadline:
            tails = {p.name: p.read_text()[-1500:] for p in sorted(logs.glob("*.log"))}
            pytest.fail(f"not {what} after {within:g} s; logs: {json.dumps(tails, indent=1)}")
        time.sleep(0.05)


def _text_hash(client: redis.Redis, key: str) -> dict[str, str]:
    """``HGETALL`` through a ``decode_responses=True`` client: keys and values are ``str``."""
    return cast("dict[str, str]", client.hgetall(key))


def _text_set(client: redis.Redis, key: str) -> set[str]:
    """``SMEMBERS`` through a ``decode_responses=True`` client: the members are ``str``."""
    return cast("set[str]", client.smembers(key))


def _delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for at in range(0, len(keys), 1000):
        client.delete(*keys[at : at + 1000])


def test_ten_thousand_jobs_four_workers_one_killed(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    _require_rabbitmq()
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    store.ping()  # no Redis: the test fails here
    queue = f"ihuyi-scaleout-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "SCALEOUT_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/",
        "SCALEOUT_QUEUE": queue,
        "SCALEOUT_REDIS_URL": redis_url,
        "SCALEOUT_PREFIX": redis_prefix,
        "SCALEOUT_CONCURRENCY": str(CONCURRENCY),
        "SCALEOUT_LEASE": str(LEASE),
    }
    jobs = {job.job_id: job for job in plan(SEED, JOBS)}
    py = sys.executable
    try:
        with ExitStack() as stack:
            emulator = stack.enter_context(
                _started(
                    [py, "-m", "ihuyi_async.testing", "serve", "--port", "0", "--quiet",
                     "--balance", str(2 * JOBS)],
                    env,
                    tmp_path / "emulator.log",
                )
            )
            port = int(_read_line(emulator, 30))
            base = f"http://127.0.0.1:{port}"
            env["SCALEOUT_EMULATOR_URL"] = base
            workers = {
                f"w{n}": stack.enter_context(
                    _started(
                        [py, "scaleout_worker.py"],
                        {**env, "SCALEOUT_WORKER": f"w{n}"},
                        tmp_path / f"w{n}.log",
                    )
                )
                for n in range(WORKERS)
            }
            for proc in workers.values():
                assert _read_line(proc, 60) == "ready"
            started_at = time.monotonic()
            producer = stack.enter_context(
                _started(
                    [py, "scaleout_producer.py", "produce", str(SEED), str(JOBS), str(REPEATS)],
                    env,
                    tmp_path / "producer.log",
                )
            )
            outcomes = outcomes_key(redis_prefix)
            _wait_for("halfway", lambda: store.hlen(outcomes) >= JOBS // 2, 60, tmp_path)
            workers[KILLED].send_signal(signal.SIGKILL)
            assert workers[KILLED].wait(timeout=10) == -signal.SIGKILL
            done_at_kill = store.hlen(outcomes)

            produced = json.loads(_read_line(producer, 60))
            assert producer.wait(timeout=30) == 0
            assert produced["enqueued"] == JOBS + REPEATS
            live = [w for w in workers if w != KILLED]

            def settled() -> bool:
                if store.hlen(outcomes) < JOBS + REPEATS:
                    return False
                return all(
                    store.scard(started_key(w, redis_prefix)) == store.scard(finished_key(w, redis_prefix))
                    for w in live
                )

            _wait_for("every delivery settled", settled, 75, tmp_path)
            wall = time.monotonic() - started_at
            for w in live:
                workers[w].send_signal(signal.SIGTERM)
            for w in live:
                assert workers[w].wait(timeout=30) == 0, (tmp_path / f"{w}.log").read_text()[-2000:]
            cleanup = subprocess.run(
                [py, "scaleout_producer.py", "cleanup"],
                cwd=HERE, env=env, capture_output=True, text=True, timeout=60,
            )
            assert cleanup.returncode == 0, cleanup.stderr
            left = json.loads(cleanup.stdout)
            accepted_at_emulator = httpx.get(f"{base}/api/messages", timeout=30).json()
            requests = httpx.get(f"{base}/api/requests", timeout=30).json()
        record = {k: json.loads(v) for k, v in _text_hash(store, outcomes).items()}
        killed_started = _text_set(store, started_key(KILLED, redis_prefix))
    finally:
        _delete_prefix(store, redis_prefix)
        store.close()

    # -- nothing lost: every delivery (10,000 jobs, 100 repeats) has an outcome ---------------
    assert left == {"ready": 0, "consumers": 0}  # the queue is empty
    repeats = {d.removesuffix("#dup") for d in record if d.endswith("#dup")}
    assert set(record) == set(jobs) | {f"{j}#dup" for j in repeats} and len(repeats) == REPEATS
    kinds = Counter(o["o"] for o in record.values())
    assert set(kinds) <= {"accepted", "rejected", "unknown"}, kinds

    # -- at most once at the provider, and what each job says is what the provider got ---------
    by_job: dict[str, dict[str, Any]] = {}
    for message in accepted_at_emulator:
        match = MARKER.search(message["content"])
        assert match is not None, message
        job_id = match.group(1)
        assert job_id not in by_job, f"{job_id} accepted twice by the emulator"
        assert (message["mobile"], message["content"]) == (jobs[job_id].mobile, jobs[job_id].content)
        by_job[job_id] = message
    for delivery, outcome in record.items():
        job_id = delivery.removesuffix("#dup")
        if outcome["o"] == "accepted":
            assert by_job[job_id]["smsid"] == outcome["smsid"], delivery
        elif outcome["o"] == "rejected":
            assert job_id not in by_job, delivery
            assert outcome["local"] and outcome["code"] in (4080, 4082), outcome
        else:  # unknown: only a job the killed worker was sending, and it never resent
            assert outcome["reason"] == "owner_lost", outcome
            assert killed_started & {job_id, f"{job_id}#dup"}, delivery
    for job_id in repeats:  # a repeat never sends again: one of the two sent, the other replays
        first, again = record[job_id], record[f"{job_id}#dup"]
        assert first["o"] == again["o"], (first, again)
        if first["o"] == "accepted":
            assert first["smsid"] == again["smsid"] and (first["replayed"] or again["replayed"])

    # -- the per-number limits held across the workers: the emulator refused nothing -----------
    submits = [r for r in requests if r["method"] == "Submit"]
    assert Counter(r["code"] for r in submits) == Counter({2: len(accepted_at_emulator)})
    times: dict[str, list[float]] = defaultdict(list)
    gaps: list[float] = []
    for message in accepted_at_emulator:
        times[message["mobile"]].append(_seconds(message["time"]))
    for mobile, sent in times.items():
        assert len(sent) <= 5, mobile
        sent.sort()
        gaps.extend(b - a for a, b in zip(sent, sent[1:], strict=False))
    assert min(gaps) >= 1.0
    per_number = Counter(job.mobile for job in jobs.values())
    accepted_jobs = Counter(
        jobs[d].mobile for d, o in record.items() if "#" not in d and o["o"] == "accepted"
    )
    for mobile, count in per_number.items():
        if count == 1:  # a number of its own: never refused
            assert record[next(j for j in jobs if jobs[j].mobile == mobile)]["o"] != "rejected"
        else:  # a hot number: at most 5 a day, however many workers sent to it
            assert accepted_jobs[mobile] <= 5, mobile

    # -- the kill happened midway and its jobs went to the others -----------------------------
    redelivered = sum(1 for d in killed_started if record[d]["w"] != KILLED)
    replayed = sum(1 for o in record.values() if o.get("replayed"))
    assert done_at_kill < JOBS and redelivered > 0
    figures = {
        "jobs": JOBS,
        "repeated deliveries": REPEATS,
        "workers": WORKERS,
        "outcomes at the kill": done_at_kill,
        "redelivered (started on the killed worker, ended on another)": redelivered,
        "accepted": kinds["accepted"],
        "rejected (local 4080/4082)": kinds["rejected"],
        "replayed by key": replayed,
        "unknown": kinds["unknown"],
        "unknown that reached the emulator": sum(
            1 for d, o in record.items() if o["o"] == "unknown" and d.removesuffix("#dup") in by_job
        ),
        "accepted by the emulator": len(accepted_at_emulator),
        "closest two sends to one number (s)": round(min(gaps), 3),
        "enqueue seconds": produced["seconds"],
        "wall seconds": round(wall, 1),
    }
    print("\nscale-out figures:", json.dumps(figures, ensure_ascii=False, indent=1))
    assert wall < 80, figures


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
