"""The load run, shared by ``test_load.py`` and ``benchmarks/reliability.py``.

``send_many`` of many messages (one distinct number each, so every message can be
traced) at high concurrency through the emulator in its own process
(:mod:`faults.emulator_proc`), optionally with injected faults; then the client's
outcomes are checked against what the emulator accepted and received.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from ihuyi_async import IhuyiClient, Message

from .emulator_proc import ACCOUNT, API_KEY
from .trials import TEXT

__all__ = ["EmulatorProcess", "LoadRun", "run_load"]

TESTS_DIR = Path(__file__).resolve().parent.parent


class EmulatorProcess:
    """:mod:`faults.emulator_proc` in a subprocess; every wait bounded."""

    def __init__(self, fault_share: float = 0.0, seed: int = 0, latency: float = 0.0) -> None:
        self.fault_share = fault_share
        self.seed = seed
        self.latency = latency
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        box: list[str] = []
        stdout = self._proc.stdout
        reader = threading.Thread(target=lambda: box.append(stdout.readline()))
        reader.daemon = True
        reader.start()
        reader.join(timeout)
        if not box or not box[0]:
            raise RuntimeError(f"the emulator process did not answer within {timeout} s")
        result: dict[str, Any] = json.loads(box[0])
        return result

    def __enter__(self) -> EmulatorProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "faults.emulator_proc", "--faults", str(self.fault_share),
             "--seed", str(self.seed), "--latency", str(self.latency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        try:
            self.port = int(self._line(20)["port"])
        except BaseException:
            self._stop()
            raise
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write("stats\n")
        self._proc.stdin.flush()
        return self._line(30)

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.write("quit\n")
                proc.stdin.close()
            proc.wait(15)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(5)
        finally:
            if proc.stdout is not None:
                proc.stdout.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()


@dataclass
class LoadRun:
    """What one load run did, and what the emulator saw of it."""

    backend: str
    messages: int
    concurrency: int
    pool: int
    fault_share: float
    seconds: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)  # outcomes by status
    outcomes: int = 0
    distinct_indices: int = 0
    emulator_accepted: int = 0
    emulator_received: int = 0
    emulator_duplicates: int = 0  # numbers the emulator accepted more than once
    client_accepted: int = 0
    unknown_received: int = 0  # unknown outcomes whose message the emulator received
    unknown_accepted: int = 0  # … and accepted
    accepted_not_reported: int = 0  # emulator accepted, client said neither accepted nor unknown
    accepted_unseen: int = 0  # client accepted, emulator has no such message
    not_sent_received: int = 0  # client said not sent, emulator received it
    faults: dict[str, int] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)  # error types of non-accepted outcomes

    @property
    def balanced(self) -> bool:
        """The emulator's accepted count equals the client's accepted plus the unknown it got."""
        return self.emulator_accepted == self.client_accepted + self.unknown_accepted

    def row(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        return (
            f"| {self.backend} | {self.messages} | {self.concurrency}/{self.pool} | "
            f"{self.fault_share:.0%} | {counts} | {self.emulator_accepted} = "
            f"{self.client_accepted} + {self.unknown_accepted} | {self.not_sent_received} | "
            f"{self.emulator_duplicates} | {self.seconds:.1f} s |"
        )


ROW_HEADER = (
    "| backend | messages | concurrency/pool | faults | outcomes | emulator accepted = "
    "client accepted + unknown it accepted | not_sent it received | accepted twice | wall |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


async def run_load(
    emulator: EmulatorProcess,
    backend: str,
    messages: int,
    *,
    concurrency: int = 200,
    pool: int = 100,
    offset: int = 0,
    timeout: float | httpx.Timeout | None = None,
) -> LoadRun:
    """``send_many`` of ``messages`` distinct numbers (from ``offset``) through ``emulator``.

    :param timeout: the client's ``timeout=`` (``None``: the library's default).
    """
    run = LoadRun(backend, messages, concurrency, pool, emulator.fault_share)
    numbers = [f"135{offset + i:08d}" for i in range(messages)]
    status_of: dict[int, str] = {}
    options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    client = IhuyiClient(
        ACCOUNT,
        API_KEY,
        base_url=emulator.url,
        backend=backend,  # type: ignore[arg-type]
        **options,
        limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
    )
    start = time.monotonic()
    try:
        batch = (Message(n, TEXT, id=str(i)) for i, n in enumerate(numbers))
        async with client.send_many(batch, concurrency=concurrency) as outcomes:
            async for outcome in outcomes:
                run.outcomes += 1
                status_of[outcome.index] = outcome.status
                run.counts[outcome.status] += 1
                if outcome.error is not None:
                    reason = getattr(outcome.error, "reason", "")
                    run.errors[f"{type(outcome.error).__name__} {reason}".strip()] += 1
    finally:
        await client.aclose()
    run.seconds = time.monotonic() - start
    run.distinct_indices = len(status_of)
    seen = emulator.stats()
    wanted = set(numbers)
    accepted = Counter(m for m in seen["accepted"] if m in wanted)
    received = {m for m, _ in seen["received"] if m in wanted}
    run.faults = dict(Counter(f for m, f in seen["received"] if m in wanted and f is not None))
    mine = {n: status_of.get(i, "missing") for i, n in enumerate(numbers)}
    run.emulator_accepted = sum(accepted.values())
    run.emulator_received = sum(1 for n in numbers if n in received)
    run.emulator_duplicates = sum(1 for c in accepted.values() if c > 1)
    run.client_accepted = run.counts["accepted"]
    for n, status in mine.items():
        if status == "unknown":
            run.unknown_received += n in received
            run.unknown_accepted += n in accepted
        elif status == "accepted":
            run.accepted_unseen += n not in accepted
        elif status == "not_sent":
            run.not_sent_received += n in received
        if n in accepted and status not in ("accepted", "unknown"):
            run.accepted_not_reported += 1
    return run
