"""The cancellation trial, shared by ``test_cancellation.py`` and ``benchmarks/reliability.py``.

Many sends on one client (a 10-connection pool) against :class:`FaultServer` with a
small random latency, each cancelled at a random instant in one of the styles a
user has: ``task.cancel()``, ``asyncio.wait_for``, ``asyncio.timeout``, a
``TaskGroup`` torn down by a failing sibling, an anyio cancel scope, and on trio
a ``trio.move_on_after`` / nursery cancellation. Afterwards: do sends still work,
do the limiter's kept slots cover every request the server saw, and do the open
TCP sockets return to the baseline. Seeded; bounded by count and time.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import httpx

from ihuyi_async import FakeClock, IhuyiClient
from ihuyi_async.limiter import Limiter

from .fault_server import FaultServer
from .trials import ACCOUNT, API_KEY, TEXT

__all__ = ["ASYNCIO_STYLES", "TRIO_STYLES", "CancelTrial", "run_trial", "tcp_sockets"]

ASYNCIO_STYLES: tuple[str, ...] = ("task.cancel", "wait_for", "anyio.move_on_after")
if sys.version_info >= (3, 11):
    ASYNCIO_STYLES += ("asyncio.timeout", "TaskGroup")
TRIO_STYLES = ("trio.move_on_after", "trio nursery cancel")
POOL = 10
WORKERS = 20  # more than the pool: some cancellations land while waiting for a connection
MAX_DELAY = 0.03  # cancel instants: uniform in [0, 30 ms]; the server answers in 0–20 ms
AFTER = 100  # sends in a row that must succeed afterwards


class _Boom(Exception):
    """The failing sibling of a TaskGroup."""


def tcp_sockets() -> int:
    """TCP sockets open in this process (both ends of loopback connections count)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            with open(table) as fh:
                next(fh)
                inodes.update(line.split()[9] for line in fh)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


@dataclass
class CancelTrial:
    """What one trial did (one backend, one event loop)."""

    backend: str
    loop: str
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)  # style -> outcome counts
    attempts: int = 0
    seconds: float = 0.0
    after_ok: int = 0
    after_error: str = ""
    server_seen: int = 0  # Submit heads during the cancellation phase
    slots_kept: int = 0  # limiter reservations not given back, same phase
    client_connections: int = 0  # server-side open connections before aclose
    sockets_baseline: int = 0
    sockets_after: int = 0
    server_open_after: int = 0

    @property
    def cancelled(self) -> int:
        return sum(c["cancelled"] for c in self.outcomes.values())

    @property
    def errors(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counts in self.outcomes.values():
            for key, n in counts.items():
                if key not in ("cancelled", "completed"):
                    total[key] += n
        return total


def _error_key(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or str(exc)[:60]
    return f"{type(exc).__name__}: {reason}"


# ------------------------------------------------------------------ one cancelled send per style


async def _task_cancel(send: Callable[[], Awaitable[object]], delay: float) -> str:
    task = asyncio.ensure_future(send())
    await asyncio.sleep(delay)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return "cancelled"
    return "completed"


async def _wait_for(send: Callable[[], Awaitable[object]], delay: float) -> str:
    try:
        await asyncio.wait_for(send(), delay)
    except TimeoutError:
        return "cancelled"
    return "completed"


if sys.version_info >= (3, 11):

    async def _asyncio_timeout(send: Callable[[], Awaitable[object]], delay: float) -> str:
        try:
            async with asyncio.timeout(delay):
                await send()
        except TimeoutError:
            return "cancelled"
        return "completed"

    async def _task_group(send: Callable[[], Awaitable[object]], delay: float) -> str:
        done = False

        async def run() -> None:
            nonlocal done
            await send()
            done = True

        async def sibling() -> None:
            await asyncio.sleep(delay)
            if not done:
                raise _Boom

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(run())
                tg.create_task(sibling())
        except builtins.BaseExceptionGroup as group:
            rest = group.split(_Boom)[1]
            if rest is not None:
                raise rest.exceptions[0] if len(rest.exceptions) == 1 else rest from None
            return "cancelled"
        return "completed"


async def _move_on_after(send: Callable[[], Awaitable[object]], delay: float) -> str:
    with anyio.move_on_after(delay) as scope:
        await send()
    return "cancelled" if scope.cancelled_caught else "completed"


async def _trio_move_on_after(send: Callable[[], Awaitable[object]], delay: float) -> str:
    import trio

    with trio.move_on_after(delay) as scope:
        await send()
    return "cancelled" if scope.cancelled_caught else "completed"


async def _trio_nursery(send: Callable[[], Awaitable[object]], delay: float) -> str:
    import trio

    done = False

    async def run() -> None:
        nonlocal done
        await send()
        done = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.sleep(delay)
        nursery.cancel_scope.cancel()
    return "completed" if done else "cancelled"


_STYLES: dict[str, Callable[[Callable[[], Awaitable[object]], float], Awaitable[str]]] = {
    "task.cancel": _task_cancel,
    "wait_for": _wait_for,
    "anyio.move_on_after": _move_on_after,
    "trio.move_on_after": _trio_move_on_after,
    "trio nursery cancel": _trio_nursery,
}
if sys.version_info >= (3, 11):
    _STYLES["asyncio.timeout"] = _asyncio_timeout
    _STYLES["TaskGroup"] = _task_group


# ------------------------------------------------------------------ the trial


async def _trial(
    server: FaultServer,
    backend: str,
    loop: str,
    styles: tuple[str, ...],
    attempts: int,
    seed: int,
    budget: float,
) -> CancelTrial:
    trial = CancelTrial(backend=backend, loop=loop)
    trial.outcomes = {style: Counter() for style in styles}
    trial.sockets_baseline = tcp_sockets()
    rng = random.Random(seed)
    plan = [(styles[i % len(styles)], rng.uniform(0, MAX_DELAY)) for i in range(attempts)]
    rng.shuffle(plan)
    limiter = Limiter(clock=FakeClock(), wait=False)
    client = IhuyiClient(
        ACCOUNT,
        API_KEY,
        base_url=server.url,
        backend=backend,  # type: ignore[arg-type]
        timeout=2.0,
        limits=httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL),
        limiter=limiter,
    )
    serial = iter(range(10**8))
    server.reset_counts()

    def mobile() -> str:
        return f"137{next(serial):08d}"

    end = time.monotonic() + budget
    start = time.monotonic()

    async def worker(items: list[tuple[str, float]]) -> None:
        for style, delay in items:
            if time.monotonic() > end:
                return
            number = mobile()

            def send(number: str = number) -> Awaitable[object]:
                return client.send(number, TEXT)

            try:
                outcome = await _STYLES[style](send, delay)
            except Exception as exc:
                outcome = _error_key(exc)
            trial.outcomes[style][outcome] += 1
            trial.attempts += 1

    try:
        async with anyio.create_task_group() as tg:
            for w in range(WORKERS):
                tg.start_soon(worker, plan[w::WORKERS])
        trial.seconds = time.monotonic() - start
        await anyio.sleep(0.1)  # let connections that were mid-answer settle
        trial.server_seen = server.count("Submit")
        stats = limiter.statistics()
        trial.slots_kept = stats.acquired - stats.refunded
        for _ in range(AFTER):
            try:
                with anyio.fail_after(5):
                    await client.send(mobile(), TEXT)
            except Exception as exc:
                trial.after_error = _error_key(exc)
                break
            trial.after_ok += 1
        trial.client_connections = server.open_connections
    finally:
        with anyio.move_on_after(10, shield=True):
            await client.aclose()
    for _ in range(200):  # bounded: 2 s for both ends of every connection to close
        trial.server_open_after = server.open_connections
        trial.sockets_after = tcp_sockets()
        if trial.server_open_after == 0 and trial.sockets_after <= trial.sockets_baseline:
            break
        await anyio.sleep(0.01)
    return trial


def run_trial(
    server: FaultServer,
    backend: str,
    *,
    loop: str = "asyncio",
    styles: tuple[str, ...] | None = None,
    attempts: int = 2000,
    seed: int = 12,
    budget: float = 20.0,
) -> CancelTrial:
    """Run one trial in a new event loop (``loop``: ``"asyncio"`` or ``"trio"``)."""
    chosen = styles or (TRIO_STYLES if loop == "trio" else ASYNCIO_STYLES)

    async def main() -> CancelTrial:
        return await _trial(server, backend, loop, chosen, attempts, seed, budget)

    return anyio.run(main, backend=loop)


def table(trials: list[CancelTrial]) -> str:
    """The trials as a markdown table."""
    rows = [
        "| backend | loop | style | cancelled | completed | other | sends after | "
        "slots kept / requests seen | sockets before → after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in trials:
        for style, counts in t.outcomes.items():
            other = ", ".join(
                f"{k} ×{v}" for k, v in counts.items() if k not in ("cancelled", "completed")
            )
            rows.append(
                f"| {t.backend} | {t.loop} | {style} | {counts['cancelled']} | "
                f"{counts['completed']} | {other or '0'} | "
                f"{t.after_ok}/{AFTER}{' (' + t.after_error + ')' if t.after_error else ''} | "
                f"{t.slots_kept} / {t.server_seen} | {t.sockets_baseline} → {t.sockets_after} |"
            )
    return "\n".join(rows)
