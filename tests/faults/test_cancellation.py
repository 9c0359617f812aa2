"""2,000 random-instant cancellations per backend, in every style, leave the client healthy (#12).

On a 10-connection pool against a loopback server answering in 0–20 ms, each send
is cancelled at a random instant in [0, 30 ms] (before the limiter, while waiting
for a connection, while writing, while reading, or too late): ``task.cancel()``,
``asyncio.wait_for``, ``asyncio.timeout``, a ``TaskGroup`` torn down by a failing
sibling, ``anyio.move_on_after``, and on trio (httpx backend) ``trio.move_on_after``
and a nursery cancellation. Afterwards 100 sends in a row succeed, every request
the server saw kept its limiter slot, and the process's TCP sockets return to the
baseline once the client is closed. Seeded; each trial is bounded to 20 s.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .cancellation import AFTER, ASYNCIO_STYLES, POOL, TRIO_STYLES, CancelTrial, run_trial
from .fault_server import FaultServer

ATTEMPTS = 2000
BUDGET = 20.0


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    with FaultServer(latency=(0.0, 0.02), seed=12) as srv:
        yield srv


def _check(trial: CancelTrial, styles: tuple[str, ...], attempts: int) -> None:
    why = (
        f"{trial.backend}/{trial.loop}: {trial.attempts} attempts in {trial.seconds:.1f} s, "
        f"{trial.cancelled} cancelled, errors {dict(trial.errors)}, {trial.after_ok}/{AFTER} "
        f"after ({trial.after_error or 'ok'}), slots kept {trial.slots_kept} for "
        f"{trial.server_seen} requests seen, {trial.client_connections} connections, "
        f"sockets {trial.sockets_baseline} -> {trial.sockets_after}, "
        f"server open {trial.server_open_after}; by style "
        f"{ {s: dict(c) for s, c in trial.outcomes.items()} }"
    )
    assert trial.attempts == attempts, why  # every cancellation ran within the budget
    assert set(trial.outcomes) == set(styles), why
    for style in styles:  # each style really cancelled sends, and some still completed
        counts = trial.outcomes[style]
        assert counts["cancelled"] >= 0.1 * attempts / len(styles), why
        assert counts["cancelled"] + counts["completed"] == sum(counts.values()), why
    assert not trial.errors, why  # only CancelledError (unchanged) or a result
    assert trial.after_ok == AFTER, why
    assert trial.slots_kept >= trial.server_seen, why  # a request that arrived kept its slot
    assert trial.client_connections <= POOL, why
    assert trial.server_open_after == 0, why
    assert trial.sockets_after == trial.sockets_baseline, why


@pytest.mark.parametrize("backend", ["httpx", "aiohttp", "native"])
def test_random_cancellations_on_asyncio(server: FaultServer, backend: str) -> None:
    trial = run_trial(server, backend, loop="asyncio", attempts=ATTEMPTS, seed=12, budget=BUDGET)
    _check(trial, ASYNCIO_STYLES, ATTEMPTS)


def test_random_cancellations_on_trio(server: FaultServer) -> None:
    trial = run_trial(server, "httpx", loop="trio", attempts=ATTEMPTS, seed=13, budget=BUDGET)
    _check(trial, TRIO_STYLES, ATTEMPTS)
