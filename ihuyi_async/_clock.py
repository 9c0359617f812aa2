"""Time, injectable: the wall clock in production, a virtual clock in tests.

One time base everywhere: Unix seconds (``float``), as ``time.time()`` gives.
The client signs with it, the limiter counts windows and calendar days with it,
the emulator checks the dynamic password's ``time`` against it. Waiting goes
through :meth:`Clock.sleep` so a test clock can make waits instantaneous.
"""

from __future__ import annotations

import heapq
import itertools
import time as _time
from typing import Protocol, runtime_checkable

import anyio
import anyio.lowlevel

__all__ = ["Clock", "FakeClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What the library needs of a clock."""

    def time(self) -> float:
        """Current Unix time in seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time (cancellable)."""
        ...


class SystemClock:
    """The real wall clock (``time.time``) and ``anyio.sleep``."""

    __slots__ = ()

    def time(self) -> float:
        return _time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


class FakeClock:
    """A virtual clock for tests.

    Time only moves when the test says so (:meth:`advance`, :meth:`set`) or, with
    ``auto_advance=True``, when a task sleeps: the clock then jumps to the
    sleeper's deadline at once, so a test of "one message per second" over
    1,000 messages runs in milliseconds.

    Caveat of ``auto_advance``: the jump happens when a task *starts* sleeping, so
    with several tasks sleeping at once, a task woken early may find the clock
    already moved on to a later sleeper's deadline. Tests that check the exact
    time of concurrent waits (e.g. "one message per second" through a batch)
    should drive the clock themselves: ``advance(1)`` whenever
    ``anyio.wait_all_tasks_blocked()`` returns.

    :param start: initial Unix time (default: 2026-01-01 12:00:00 UTC+8).
    :param auto_advance: jump the clock to a sleeper's deadline instead of waiting.
    """

    __slots__ = ("_now", "_waiters", "_seq", "auto_advance")

    def __init__(self, start: float = 1767240000.0, *, auto_advance: bool = False) -> None:
        self._now = float(start)
        self._waiters: list[tuple[float, int, anyio.Event]] = []
        self._seq = itertools.count()
        self.auto_advance = auto_advance

    def time(self) -> float:
        return self._now

    def set(self, now: float) -> None:
        """Set the time (may move backwards, as a wall clock can) and wake due sleepers."""
        self._now = float(now)
        self._wake()

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every sleeper whose deadline passed."""
        if seconds < 0:
            raise ValueError("advance() takes a non-negative number of seconds")
        self.set(self._now + seconds)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        deadline = self._now + seconds
        if self.auto_advance:
            if deadline > self._now:
                self.set(deadline)
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._waiters, (deadline, next(self._seq), event))
        await event.wait()

    def _wake(self) -> None:
        while self._waiters and self._waiters[0][0] <= self._now:
            heapq.heappop(self._waiters)[2].set()

    @property
    def sleepers(self) -> int:
        """How many tasks are waiting on this clock."""
        return len(self._waiters)

    def __repr__(self) -> str:
        return f"FakeClock(time={self._now!r}, sleepers={len(self._waiters)})"
