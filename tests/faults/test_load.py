"""``send_many`` at concurrency 200 through the emulator in its own process (#12).

Every message gets exactly one outcome; with about 5 % injected faults the
emulator's accepted count equals the client's accepted count plus the unknown
outcomes it did accept (each message has its own number, so every one is traced);
nothing reported ``not_sent`` reached the emulator; nothing was accepted twice;
and against a healthy emulator there is no ``not_sent`` at all (concurrency 200
over a pool of 100), even when every answer takes longer than the connect timeout
(waiting for a pooled connection is not a connect timeout).
Marked ``slow`` (runs in CI); the whole file stays under ~90 s on a 2-core machine.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .load import EmulatorProcess, LoadRun, run_load

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

#: Messages of the faulted runs: the aiohttp backend at full size; httpx costs
#: several times the client CPU per message, so a quarter as many keep the file within budget.
FAULTED = {"aiohttp": 20_000, "httpx": 5_000}
HEALTHY = 5_000
CONCURRENCY = 200
POOL = 100


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def faulty() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(fault_share=0.05, seed=12) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def healthy() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(fault_share=0.0) as emulator:
        yield emulator


def _check_books(run: LoadRun) -> str:
    why = f"{run.row()} faults {run.faults}, errors {dict(run.errors)}"
    assert run.outcomes == run.messages and run.distinct_indices == run.messages, why
    assert run.emulator_duplicates == 0, why  # never sent twice
    assert run.accepted_unseen == 0, why  # every accepted outcome is a message the emulator has
    assert run.accepted_not_reported == 0, why  # every message it accepted is accepted or unknown
    assert run.not_sent_received == 0, why  # "not sent" is never a message that arrived
    assert run.balanced, why
    return why


@pytest.mark.parametrize("backend", ["aiohttp", "httpx"])
async def test_load_with_faults(faulty: EmulatorProcess, backend: str) -> None:
    size = FAULTED[backend]
    offset = 0 if backend == "aiohttp" else FAULTED["aiohttp"]
    run = await run_load(
        faulty, backend, size, concurrency=CONCURRENCY, pool=POOL, offset=offset, timeout=2.0
    )
    why = _check_books(run)
    assert set(run.counts) <= {"accepted", "unknown", "not_sent"}, why
    assert 0.02 * size <= run.counts["unknown"] <= 0.08 * size, why  # the faults acted
    assert sum(run.faults.values()) >= 0.02 * size, why


@pytest.mark.parametrize("backend", ["aiohttp", "httpx"])
async def test_load_without_faults_sends_everything(healthy: EmulatorProcess, backend: str) -> None:
    offset = 0 if backend == "aiohttp" else HEALTHY
    run = await run_load(
        healthy, backend, HEALTHY, concurrency=CONCURRENCY, pool=POOL, offset=offset
    )
    why = _check_books(run)
    assert run.counts["not_sent"] == 0, why
    assert run.counts == {"accepted": HEALTHY}, why


@pytest.fixture(scope="module")
def slow_answers() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(fault_share=0.0, latency=SLOW) as emulator:
        yield emulator


SLOW = 0.25  # every answer 250 ms late: a send waits about that long for a pooled connection
SLOW_MESSAGES = 2_000


@pytest.mark.parametrize("backend", ["aiohttp", "httpx"])
async def test_waiting_for_a_pooled_connection_is_not_a_connect_timeout(
    slow_answers: EmulatorProcess, backend: str
) -> None:
    """Connect timeout 0.1 s, answers 0.25 s late, 200 sends at once over 100 connections:
    the waits for a free connection are bounded by the pool timeout and the deadline, so
    nothing ends ``not_sent``."""
    offset = 2 * HEALTHY + (0 if backend == "aiohttp" else SLOW_MESSAGES)
    run = await run_load(
        slow_answers,
        backend,
        SLOW_MESSAGES,
        concurrency=CONCURRENCY,
        pool=POOL,
        offset=offset,
        timeout=httpx.Timeout(3.0, connect=0.1),
    )
    why = _check_books(run)
    assert run.counts == {"accepted": SLOW_MESSAGES}, why
