"""The emulator on loopback in a process of its own, with probabilistic faults, for load runs.

``python -m faults.emulator_proc [--faults 0.05] [--seed 0] [--latency 0.25]`` (``tests/`` on the path):
serves an :class:`~ihuyi_async.testing.Emulator` (wall clock, per-number limits
off, a large balance) with :class:`~ihuyi_async.testing.EmulatorServer`, prints
``{"port": N}`` on one line, then answers commands read from stdin, one per line:

* ``stats``: one JSON line: ``accepted`` (the numbers of every accepted message, in
  order) and ``received`` (``[number, fault kind or null]`` of every Submit received);
* ``quit`` or end of input: stop.

Only the public testing API is used (``Emulator``, ``EmulatorServer``, ``faults``).
"""

from __future__ import annotations

import argparse
import json
import sys

from ihuyi_async import SystemClock
from ihuyi_async.testing import Emulator, EmulatorServer, faults

ACCOUNT = "load-apiid"
API_KEY = "load-apikey"


def build(fault_share: float, seed: int, latency: float = 0.0) -> Emulator:
    emulator = Emulator({ACCOUNT: API_KEY}, 10**9, clock=SystemClock(), limits=False, seed=seed)
    if fault_share > 0:
        # About fault_share of all Submits: each entry draws in turn (first win acts).
        share = fault_share / 5
        for fault in (
            faults.disconnect(processed=True),  # accepted, answer lost: unknown
            faults.disconnect(processed=False),  # dropped before the model: unknown
            faults.http_error(502),  # a gateway error: unknown
            faults.garbage(),  # 200 with HTML: unknown
            faults.hang(processed=True),  # accepted, never answered: read timeout, unknown
        ):
            emulator.faults.add(fault, times=None, probability=share, method="Submit")
    if latency > 0:  # every other Submit answers normally, ``latency`` seconds late
        emulator.faults.add(faults.latency(latency), times=None, method="Submit")
    return emulator


def stats(emulator: Emulator) -> dict[str, object]:
    return {
        "accepted": [m.mobile for m in emulator.messages],
        "received": [
            [r.fields.get("mobile", ""), r.fault] for r in emulator.requests if r.method == "Submit"
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--faults", type=float, default=0.0, help="share of faulted Submits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each answer")
    args = parser.parse_args()
    emulator = build(args.faults, args.seed, args.latency)
    with EmulatorServer(emulator) as server:
        sys.stdout.write(json.dumps({"port": server.port}) + "\n")
        sys.stdout.flush()
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                sys.stdout.write(json.dumps(stats(emulator)) + "\n")
                sys.stdout.flush()
            elif command == "quit":
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
