"""A batch killed with SIGKILL midway and resumed from its journal sends each message at most once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from ihuyi_async.testing import Emulator, EmulatorServer

N = 1500
WORKER = str(Path(__file__).with_name("batch_worker.py"))


def _accepted_lines(journal: Path) -> int:
    if not journal.exists():
        return 0
    return journal.read_text(encoding="utf-8", errors="replace").count('"status": "accepted"')


def test_sigkill_midway_then_resume_sends_each_message_at_most_once(tmp_path: Path) -> None:
    journal = tmp_path / "batch.jsonl"
    emulator = Emulator(accounts={"APIID": "APIKEY"}, balance=10**6, limits=False)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    with EmulatorServer(emulator) as server:
        proc = subprocess.Popen([sys.executable, WORKER, server.url, str(journal), str(N)], env=env)
        try:
            deadline = time.monotonic() + 60
            while _accepted_lines(journal) < N // 4:
                assert proc.poll() is None, "the batch ended before it could be killed"
                assert time.monotonic() < deadline, "the batch made no progress"
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        killed_at = len(emulator.messages)
        assert 0 < killed_at < N

        subprocess.run([sys.executable, WORKER, server.url, str(journal), str(N)], env=env,
                       check=True, timeout=300)

    sent = Counter(m.content for m in emulator.messages)
    assert max(sent.values()) == 1, "a message was sent twice"
    last: dict[str, str] = {}
    for line in journal.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line torn by the kill
        last[entry["id"]] = entry["status"]
    assert len(last) == N
    assert set(last.values()) <= {"accepted", "pending", "unknown"}
    accepted = sum(1 for s in last.values() if s == "accepted")
    # every message the journal calls accepted arrived; the rest were on the wire at the kill
    assert accepted <= len(emulator.messages) <= N
    assert N - accepted <= 20  # at most one batch of in-flight sends is left to reconcile
