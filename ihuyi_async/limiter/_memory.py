"""MemoryStore: the counts of one process, in plain dicts, bounded in memory.

Owns the in-process algorithms, one small class per rule kind (:class:`_TokenBucket`
for GCRA buckets, :class:`_FixedWindow`, :class:`_RollingWindow`), the per-number
state they read and write, and the two-generation sweep that forgets idle numbers
without a background task. Nothing here awaits: every operation runs to completion
between two checkpoints of the event loop, which makes it atomic for any number of
tasks of one loop.

**State.** Each tracked number holds one ``list`` of *cells*; every rule that counts
per number owns one or two cells at its ``slot`` (the rule kinds below say which).
Identical-content rules keep a second list per ``(number, digest)``. One list per
number, not one object per rule, keeps a tracked number under 200 bytes.
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from collections.abc import Callable
from typing import Any

from ._rules import Rule, RuleSet
from ._store import Grant, Refusal, Store

__all__ = ["MAX_SCHEDULE_AHEAD", "MemoryStore"]

#: Longest wait (seconds) a reservation may be scheduled ahead; bounds how long idle
#: state must be kept beyond the rules' own horizon.
MAX_SCHEDULE_AHEAD = 3600.0

_NEVER = -math.inf

#: The state of one key (a number, or a number and a content digest): each rule's
#: cells at the rule's ``slot``.
Cells = list[Any]


class _TokenBucket:
    """A GCRA token bucket. One cell: the theoretical arrival time (TAT) of the turn
    after the last one given out (``-inf``: never used, the bucket is full).

    A send may go at ``TAT - tolerance`` (``tolerance = (limit - 1) * interval`` is the
    burst); taking a turn moves the TAT one ``interval`` past ``max(TAT, send)``.
    """

    __slots__ = ("index", "interval", "limit", "per_content", "slot", "tolerance")
    blank: tuple[Any, ...] = (_NEVER,)

    def __init__(self, index: int, rule: Rule, slot: int) -> None:
        self.index = index
        self.per_content = rule.per_content
        self.slot = slot
        self.limit = rule.limit
        self.interval = rule.interval  # period + margin
        self.tolerance = (rule.limit - 1) * self.interval

    def earliest(self, cells: Cells) -> float:
        """Earliest time the bucket holds a token."""
        turn: float = cells[self.slot] - self.tolerance
        return turn

    def take(self, cells: Cells, send: float) -> float:
        """Take the turn at ``send``; returns the TAT before (the refund's undo value)."""
        before: float = cells[self.slot]
        cells[self.slot] = (before if before > send else send) + self.interval
        return before

    def give_back(self, cells: Cells, send: float, before: float) -> None:
        """Undo :meth:`take`, unless a later turn was taken since (turns never move)."""
        if cells[self.slot] == (before if before > send else send) + self.interval:
            cells[self.slot] = before

    def fill(self, cells: Cells, now: float) -> None:
        """Empty the bucket as of ``now``."""
        empty = now + self.limit * self.interval
        if cells[self.slot] < empty:
            cells[self.slot] = empty


class _FixedWindow:
    """At most ``limit`` sends per aligned window. Two cells: the index of the window
    last counted in (``floor((t + offset) / period)``; ``-inf``: none) and its count.
    """

    __slots__ = ("_last_index", "index", "limit", "offset", "per_content", "period", "slot")
    blank: tuple[Any, ...] = (_NEVER, 0)

    def __init__(self, index: int, rule: Rule, slot: int) -> None:
        self.index = index
        self.per_content = rule.per_content
        self.slot = slot
        self.limit = rule.limit
        self.period = rule.period
        self.offset = rule.offset
        # the window index last stored, shared by every number counted in that window
        self._last_index = _NEVER

    def blocked_until(self, cells: Cells, send: float) -> float:
        """When the window admits a send at ``send`` again (``-inf``: it admits it now)."""
        window: float = cells[self.slot]
        if window >= (send + self.offset) // self.period and cells[self.slot + 1] >= self.limit:
            return (window + 1.0) * self.period - self.offset
        return _NEVER

    def take(self, cells: Cells, send: float, now: float) -> None:
        """Count a send at ``send`` (``now`` is not needed)."""
        index = (send + self.offset) // self.period
        if cells[self.slot] >= index:
            cells[self.slot + 1] += 1
            return
        if index == self._last_index:  # the window every number shares: one float object
            index = self._last_index
        else:
            self._last_index = index
        cells[self.slot] = index
        cells[self.slot + 1] = 1

    def give_back(self, cells: Cells, send: float) -> None:
        """Uncount a send at ``send`` while its window is still the one counted."""
        if cells[self.slot] == (send + self.offset) // self.period and cells[self.slot + 1] > 0:
            cells[self.slot + 1] -= 1

    def fill(self, cells: Cells, now: float) -> None:
        """Add ``limit`` sends to the window holding ``now`` (or to a later one counted)."""
        index = (now + self.offset) // self.period
        if cells[self.slot] >= index:
            cells[self.slot + 1] += self.limit
        else:
            cells[self.slot] = index
            cells[self.slot + 1] = self.limit


class _RollingWindow:
    """At most ``limit`` sends in any ``period`` seconds. One cell: the sorted tuple of
    the send times that may still matter (older ones are dropped when a send is taken).
    """

    __slots__ = ("index", "limit", "per_content", "period", "slot")
    blank: tuple[Any, ...] = ((),)

    def __init__(self, index: int, rule: Rule, slot: int) -> None:
        self.index = index
        self.per_content = rule.per_content
        self.slot = slot
        self.limit = rule.limit
        self.period = rule.period

    def blocked_until(self, cells: Cells, send: float) -> float:
        """When the window admits a send at ``send`` again (``-inf``: it admits it now)."""
        log: tuple[float, ...] = cells[self.slot]
        n = len(log)
        limit = self.limit
        if n >= limit and n - bisect_right(log, send - self.period) >= limit:
            return log[n - limit] + self.period
        return _NEVER

    def take(self, cells: Cells, send: float, now: float) -> None:
        """Log a send at ``send``, dropping the times that ended before ``now``."""
        log: tuple[float, ...] = cells[self.slot]
        cutoff = now - self.period
        if log and log[0] <= cutoff:
            log = log[bisect_right(log, cutoff) :]
        if not log or log[-1] <= send:
            cells[self.slot] = (*log, send)
        else:
            items = list(log)
            insort(items, send)
            cells[self.slot] = tuple(items)

    def give_back(self, cells: Cells, send: float) -> None:
        """Drop one logged send at ``send``."""
        log: tuple[float, ...] = cells[self.slot]
        if send in log:
            items = list(log)
            items.remove(send)
            cells[self.slot] = tuple(items)

    def fill(self, cells: Cells, now: float) -> None:
        """Log ``limit`` sends at ``now``."""
        log: tuple[float, ...] = cells[self.slot]
        active = [t for t in log if t > now - self.period]
        cells[self.slot] = tuple(sorted(active + [now] * self.limit))


_Window = _FixedWindow | _RollingWindow
_KINDS: dict[str, type[_TokenBucket] | type[_FixedWindow] | type[_RollingWindow]] = {
    "token_bucket": _TokenBucket,
    "fixed_window": _FixedWindow,
    "rolling_window": _RollingWindow,
}


class _Table:
    """The state of one rule set: per-key cells in two generations of dicts.

    Numbers untouched for a whole generation (the rules' horizon plus
    :data:`MAX_SCHEDULE_AHEAD`) are dropped at the next rotation, so memory holds at
    most two generations of numbers.
    """

    __slots__ = (
        "blank",
        "blank_content",
        "_rules",
        "_selections",
        "content_cur",
        "content_old",
        "cur",
        "generation",
        "old",
        "rotate_at",
    )

    def __init__(self, rules: RuleSet) -> None:
        blank: tuple[list[Any], list[Any]] = ([], [])
        self._rules: list[_TokenBucket | _Window] = []
        for index, rule in enumerate(rules.rules):
            cells = blank[rule.per_content]
            kind = _KINDS[rule.algorithm]
            self._rules.append(kind(index, rule, len(cells)))
            cells.extend(kind.blank)
        self.blank, self.blank_content = blank
        self._selections: dict[tuple[int, ...], _Selection] = {}
        self.generation = rules.horizon + MAX_SCHEDULE_AHEAD
        self.cur: dict[str, Cells] = {}
        self.old: dict[str, Cells] = {}
        self.content_cur: dict[tuple[str, str], Cells] = {}
        self.content_old: dict[tuple[str, str], Cells] = {}
        self.rotate_at = _NEVER

    def selection(self, selected: tuple[int, ...]) -> _Selection:
        """The rules of one selection, ready to apply (cached: a limiter uses a handful)."""
        found = self._selections.get(selected)
        if found is None:
            found = _Selection(self, [self._rules[i] for i in selected])
            if len(self._selections) < 256:
                self._selections[selected] = found
        return found

    def rotate(self, now: float) -> None:
        """Start a new generation: what was not touched during the last one is dropped."""
        if now >= self.rotate_at + self.generation:
            self.old, self.content_old = {}, {}
        else:
            self.old, self.content_old = self.cur, self.content_cur
        self.cur, self.content_cur = {}, {}
        self.rotate_at = now + self.generation

    def number_cells(self, mobile: str) -> Cells:
        """The number's cells, brought into the current generation (created blank)."""
        cells = self.cur.get(mobile)
        if cells is None:
            cells = self.old.pop(mobile, None) if self.old else None
            if cells is None:
                cells = self.blank.copy()
            self.cur[mobile] = cells
        return cells

    def content_cells(self, mobile: str, digest: str) -> Cells:
        """The cells of a number and content, brought into the current generation."""
        key = (mobile, digest)
        cells = self.content_cur.get(key)
        if cells is None:
            cells = self.content_old.pop(key, None)
            if cells is None:
                cells = self.blank_content.copy()
            self.content_cur[key] = cells
        return cells

    def existing(self, mobile: str, digest: str) -> tuple[Cells | None, Cells | None]:
        """The cells of the number and of the content, ``None`` where there are none."""
        key = (mobile, digest)
        return (
            self.cur.get(mobile) or self.old.get(mobile),
            self.content_cur.get(key) or self.content_old.get(key),
        )

    @property
    def tracked(self) -> int:
        return len(self.cur) + len(self.old)


class _Selection:
    """The rules that count one kind of send, applied to a table's state: the
    operations of :class:`Store` for one selection of rules."""

    __slots__ = ("buckets", "content", "number", "table", "windows")

    def __init__(self, table: _Table, rules: list[_TokenBucket | _Window]) -> None:
        self.table = table
        self.buckets = tuple(r for r in rules if isinstance(r, _TokenBucket))
        self.windows = tuple(r for r in rules if not isinstance(r, _TokenBucket))
        self.number = any(not r.per_content for r in rules)
        self.content = any(r.per_content for r in rules)

    def _cells(self, mobile: str, digest: str, now: float) -> tuple[Cells, Cells]:
        table = self.table
        if now >= table.rotate_at:
            table.rotate(now)
        cells = (table.cur.get(mobile) or table.number_cells(mobile)) if self.number else []
        return cells, (table.content_cells(mobile, digest) if self.content else cells)

    def reserve(self, mobile: str, digest: str, now: float, max_delay: float) -> Grant | Refusal:
        """Take one unit of every rule, or nothing (see :meth:`Store.reserve`)."""
        cells, content = self._cells(mobile, digest, now)
        send, waits_for = now, -1  # the buckets' earliest common turn, and whose it is
        for bucket in self.buckets:
            turn = bucket.earliest(content if bucket.per_content else cells)
            if turn > send:
                send, waits_for = turn, bucket.index
        refused, until = -1, _NEVER  # the window that blocks that turn longest
        for window in self.windows:
            at = window.blocked_until(content if window.per_content else cells, send)
            if at > until:
                refused, until = window.index, at
        if refused >= 0:
            return Refusal(refused, now, until, until)
        if send - now > max_delay:
            return Refusal(waits_for, now, send, send)
        return Grant(send, now, self._take(cells, content, send, now))

    def reserve_now(self, mobile: str, digest: str, now: float) -> tuple[float, ...] | None:
        """:meth:`reserve` with ``max_delay=0`` that answers ``None`` as soon as one rule
        refuses (no reason built); a grant (always at ``now``) answers its undo values.
        Grants and state changes are the same as :meth:`reserve`'s."""
        table = self.table
        if now >= table.rotate_at:
            table.rotate(now)
        cells = table.cur.get(mobile) if self.number else []
        if cells is None and mobile not in table.old:
            # a number never seen (or forgotten): every rule admits its first send
            if not self.content:
                cells = content = table.cur[mobile] = table.blank.copy()
                return self._take(cells, content, now, now)
            key = (mobile, digest)
            if key not in table.content_cur and key not in table.content_old:
                cells = table.cur[mobile] = table.blank.copy()
                content = table.content_cur[key] = table.blank_content.copy()
                return self._take(cells, content, now, now)
        if cells is None:
            cells = table.number_cells(mobile)
        content = table.content_cells(mobile, digest) if self.content else cells
        for bucket in self.buckets:  # bucket.earliest(), inlined: the hot refusal path
            if (content if bucket.per_content else cells)[bucket.slot] - bucket.tolerance > now:
                return None
        for window in self.windows:
            if window.blocked_until(content if window.per_content else cells, now) != _NEVER:
                return None
        return self._take(cells, content, now, now)

    def _take(self, cells: Cells, content: Cells, send: float, now: float) -> tuple[float, ...]:
        """Take one unit of every rule for a send at ``send``; the buckets' undo values."""
        undo: tuple[float, ...] = ()
        for bucket in self.buckets:
            undo += (bucket.take(content if bucket.per_content else cells, send),)
        for window in self.windows:
            window.take(content if window.per_content else cells, send, now)
        return undo

    def refund(self, mobile: str, digest: str, send_at: float, undo: tuple[float, ...]) -> None:
        """Give back what a grant took, as far as it is still held (see :class:`Store`)."""
        cells, content = self.table.existing(mobile, digest)
        for bucket, before in zip(self.buckets, undo, strict=True):
            state = content if bucket.per_content else cells
            if state is not None:
                bucket.give_back(state, send_at, before)
        for window in self.windows:
            state = content if window.per_content else cells
            if state is not None:
                window.give_back(state, send_at)

    def fill(self, mobile: str, digest: str, now: float) -> None:
        """Make every rule refuse from ``now`` (see :meth:`Store.fill`)."""
        cells, content = self._cells(mobile, digest, now)
        for rule in (*self.buckets, *self.windows):
            rule.fill(content if rule.per_content else cells, now)

    def peek(self, mobile: str, digest: str, now: float) -> float:
        """Earliest time a reservation would be granted without waiting; changes nothing."""
        cells, content = self.table.existing(mobile, digest)
        cells = cells or self.table.blank
        content = content or self.table.blank_content
        t = now
        for _ in range(32):
            send = t
            for bucket in self.buckets:
                send = max(send, bucket.earliest(content if bucket.per_content else cells))
            blocked = max(
                (w.blocked_until(content if w.per_content else cells, send) for w in self.windows),
                default=_NEVER,
            )
            if blocked == _NEVER:
                return send
            t = blocked
        return t  # pragma: no cover - rules that keep blocking 32 times in a row


class MemoryStore(Store):
    """Counts kept in this process: the default store.

    Safe for any number of concurrent tasks of one event loop (no operation awaits,
    so each is atomic); not shared between processes — use :class:`RedisStore` for
    that. Memory is bounded without a background task: the state of a number that
    has not been touched for one *generation* (the longest rule window, one day by
    default, plus one hour) is dropped at the next lazy rotation, so past days and
    idle buckets are forgotten; a tracked number costs one small ``list`` (under
    200 bytes with the default rules, dict entry included).

    Time is whatever the limiter passes (its clock). Offers the synchronous
    :meth:`nowait_reserver` (the fast path of :meth:`Limiter.acquire` and
    :meth:`Limiter.try_acquire`), unless a subclass overrides :meth:`reserve` alone.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_tables",)

    def __init__(self) -> None:
        self._tables: dict[RuleSet, _Table] = {}

    def _table(self, rules: RuleSet) -> _Table:
        table = self._tables.get(rules)
        if table is None:
            table = self._tables[rules] = _Table(rules)
        return table

    @property
    def tracked_numbers(self) -> int:
        """How many numbers currently hold state (both generations, all rule sets)."""
        return sum(t.tracked for t in self._tables.values())

    def tracked(self, rules: RuleSet) -> int:
        """How many numbers hold state for ``rules`` (both generations)."""
        return self._table(rules).tracked

    def nowait_reserver(
        self, rules: RuleSet, selected: tuple[int, ...]
    ) -> Callable[[str, str, float], tuple[float, ...] | None] | None:
        cls = type(self)
        if cls.reserve is not MemoryStore.reserve and cls.nowait_reserver is MemoryStore.nowait_reserver:
            return None  # a subclass that changed reserve alone: every reserve goes through it
        return self._table(rules).selection(selected).reserve_now

    async def reserve(
        self,
        rules: RuleSet,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        now: float,
        max_delay: float,
    ) -> Grant | Refusal:
        return self._table(rules).selection(selected).reserve(mobile, digest, now, max_delay)

    async def refund(
        self,
        rules: RuleSet,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        grant: Grant,
    ) -> None:
        selection = self._table(rules).selection(selected)
        selection.refund(mobile, digest, grant.send_at, grant.undo)

    async def fill(
        self,
        rules: RuleSet,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        now: float,
    ) -> None:
        self._table(rules).selection(selected).fill(mobile, digest, now)

    async def peek(
        self,
        rules: RuleSet,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        now: float,
    ) -> float:
        return self._table(rules).selection(selected).peek(mobile, digest, now)

    def __repr__(self) -> str:
        return f"MemoryStore(tracked_numbers={self.tracked_numbers})"
