"""MemoryStore: the counts of one process, in plain dicts, bounded in memory.

Owns the in-process algorithms (GCRA token buckets, fixed and rolling windows)
and the two-generation sweep that forgets idle numbers without a background task.
Nothing here awaits: every operation runs to completion between two checkpoints
of the event loop, which makes it atomic for any number of tasks of one loop.
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from collections.abc import Callable
from typing import Any

from ._rules import RuleSet
from ._store import Grant, Refusal, Store

__all__ = ["MemoryStore"]

_BUCKET = 0
_FIXED = 1
_ROLLING = 2
_ALG = {"token_bucket": _BUCKET, "fixed_window": _FIXED, "rolling_window": _ROLLING}

#: Longest wait (seconds) a reservation may be scheduled ahead; bounds how long idle
#: state must be kept beyond the rules' own horizon.
MAX_SCHEDULE_AHEAD = 3600.0

# One compiled rule: (algorithm, scope 0=number 1=content, slot, limit, period, offset,
# burst tolerance, rule index); a bucket's period is its rule's interval (period + margin).
_Op = tuple[int, int, int, int, float, float, float, int]
_Plan = tuple[tuple[_Op, ...], bool, bool]
_State = list[object]
#: What a reserve function returns: ``(send_at, undo)`` when granted (``undo`` a tuple of
#: the buckets' states before), ``(rule_index, retry_at)`` when refused (``retry_at`` is
#: also when the rule resets). Tell them apart by ``type(result[1]) is tuple``; plain
#: tuples keep the refusal path free of object construction.
_Result = tuple[float, tuple[float, ...]] | tuple[int, float]
_Reserver = Callable[[str, str, float, float], _Result]
#: The eager variant: ``(send_at, undo)`` when granted, ``None`` when refused.
_EagerReserver = Callable[[str, str, float, float], "tuple[float, tuple[float, ...]] | None"]


class _Table:
    """The state of one rule set: per-number lists in two generations of dicts.

    Each tracked number holds one ``list``: a bucket's theoretical arrival time
    (1 slot), a fixed window's index and count (2 slots), a rolling window's sorted
    tuple of send times (1 slot). Identical-content rules keep a second list per
    ``(number, digest)``. Numbers untouched for a whole generation (the rules'
    horizon plus :data:`MAX_SCHEDULE_AHEAD`) are dropped at the next rotation, so
    memory holds at most two generations of numbers.
    """

    __slots__ = (
        "_blank_con",
        "_blank_num",
        "_last_idx",
        "_ops",
        "_plans",
        "_reservers",
        "_eager",
        "_envs",
        "cold",
        "ccur",
        "cur",
        "generation",
        "old",
        "rotate_at",
        "rules",
    )

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        ops: list[_Op] = []
        blank: tuple[list[object], list[object]] = ([], [])
        for index, rule in enumerate(rules.rules):
            alg = _ALG[rule.algorithm]
            scope = 1 if rule.per_content else 0
            layout = blank[scope]
            slot = len(layout)
            if alg == _BUCKET:
                layout.append(-math.inf)
            elif alg == _FIXED:
                layout.extend((-math.inf, 0))
            else:
                layout.append(())
            period = rule.interval  # a bucket's turns are spaced by period + margin
            tol = (rule.limit - 1) * period
            ops.append((alg, scope, slot, rule.limit, period, rule.offset, tol, index))
        self._ops: tuple[_Op, ...] = tuple(ops)
        self._blank_num, self._blank_con = blank
        self._plans: dict[tuple[int, ...], _Plan] = {}
        self._reservers: dict[tuple[int, ...], _Reserver] = {}
        self._eager: dict[tuple[int, ...], _EagerReserver] = {}
        # the globals of the compiled functions: ``CUR`` and ``ROT`` mirror ``cur`` and
        # ``rotate_at`` (one global lookup instead of an attribute lookup on the hot path)
        self._envs: list[dict[str, object]] = []
        self._last_idx: list[float] = [-math.inf] * len(ops)
        self.generation = rules.horizon + MAX_SCHEDULE_AHEAD
        self.cur: dict[str, _State] = {}
        self.old: dict[str, _State] = {}
        self.ccur: dict[tuple[str, str], _State] = {}
        self.cold: dict[tuple[str, str], _State] = {}
        self.rotate_at = -math.inf

    # -- bookkeeping -------------------------------------------------------------------

    def plan(self, selected: tuple[int, ...]) -> _Plan:
        plan = self._plans.get(selected)
        if plan is None:
            ops = tuple(self._ops[i] for i in selected)
            plan = (ops, any(o[1] == 0 for o in ops), any(o[1] == 1 for o in ops))
            if len(self._plans) < 256:
                self._plans[selected] = plan
        return plan

    def rotate(self, now: float) -> None:
        """Start a new generation: what was not touched during the last one is dropped."""
        if now >= self.rotate_at + self.generation:
            self.old = {}
            self.cold = {}
        else:
            self.old = self.cur
            self.cold = self.ccur
        self.cur = {}
        self.ccur = {}
        self.rotate_at = now + self.generation
        for env in self._envs:
            env["CUR"] = self.cur
            env["ROT"] = self.rotate_at

    def number_state(self, mobile: str) -> _State:
        st = self.cur.get(mobile)
        if st is None:
            st = self.old.pop(mobile, None)
            if st is None:
                st = self._blank_num.copy()
            self.cur[mobile] = st
        return st

    def content_state(self, mobile: str, digest: str) -> _State:
        key = (mobile, digest)
        st = self.ccur.get(key)
        if st is None:
            st = self.cold.pop(key, None)
            if st is None:
                st = self._blank_con.copy()
            self.ccur[key] = st
        return st

    def _existing(self, mobile: str, digest: str, content: bool) -> _State | None:
        if content:
            key = (mobile, digest)
            return self.ccur.get(key) or self.cold.get(key)
        return self.cur.get(mobile) or self.old.get(mobile)

    @property
    def tracked(self) -> int:
        return len(self.cur) + len(self.old)

    # -- the algorithms ------------------------------------------------------------------

    def reserve(
        self,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        now: float,
        max_delay: float,
    ) -> _Result:
        """Take one unit of every selected rule, or return why not (see :class:`Store`)."""
        fn = self._reservers.get(selected)
        if fn is None:
            fn = self.reserver(selected)
        return fn(mobile, digest, now, max_delay)

    def reserver(self, selected: tuple[int, ...]) -> _Reserver:
        """The compiled reserve function of one selection of rules (cached)."""
        return self._reservers.get(selected) or self._compiled(self._reservers, selected, False)

    def eager_reserver(self, selected: tuple[int, ...]) -> _EagerReserver:
        """The variant for "take it now or not at all" callers (``try_acquire``).

        Only called with ``max_delay=0``; returns ``None`` for any refusal, as soon as a
        bucket has no token (without evaluating the windows, and without building the
        reason). Grants and state changes are identical to :meth:`reserver`'s.
        """
        return self._eager.get(selected) or self._compiled(self._eager, selected, True)

    def _compiled(
        self, cache: dict[tuple[int, ...], Any], selected: tuple[int, ...], eager: bool
    ) -> Callable[[str, str, float, float], Any]:
        keep = len(cache) < 256  # beyond: a one-off that reads the table, registers nothing
        fn = _compile(self, selected, eager=eager, live=keep)
        if keep:
            cache[selected] = fn
        return fn

    # long: the specification the compiled functions are checked against; goes with them (#15)
    def reserve_interpreted(
        self,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        now: float,
        max_delay: float,
    ) -> _Result:
        """The same algorithm as :meth:`reserve`, interpreted rule by rule.

        The readable specification the compiled functions are generated from and
        tested against; not used on the fast path.
        """
        if now >= self.rotate_at:
            self.rotate(now)
        ops, has_num, has_con = self._plans.get(selected) or self.plan(selected)
        st: _State = self.number_state(mobile) if has_num else []
        cst: _State = self.content_state(mobile, digest) if has_con else []
        send = now
        bucket = -1
        refused = -1
        refused_at = -math.inf
        for alg, scope, slot, limit, period, offset, tol, index in ops:
            s = cst if scope else st
            if alg == _BUCKET:
                e = s[slot] - tol  # type: ignore[operator]
                if e > send:
                    send = e
                    bucket = index
            elif alg == _FIXED:
                idx = (send + offset) // period
                si: float = s[slot]  # type: ignore[assignment]
                if si >= idx and s[slot + 1] >= limit:  # type: ignore[operator]
                    end = (si + 1.0) * period - offset
                    if end > refused_at:
                        refused, refused_at = index, end
            else:
                log: tuple[float, ...] = s[slot]  # type: ignore[assignment]
                n = len(log)
                if n >= limit and n - bisect_right(log, send - period) >= limit:
                    at = log[n - limit] + period
                    if at > refused_at:
                        refused, refused_at = index, at
        if refused >= 0:
            return refused, refused_at
        if send - now > max_delay:
            return bucket, send
        undo: tuple[float, ...] = ()
        last_idx = self._last_idx
        for alg, scope, slot, _limit, period, offset, _tol, index in ops:
            s = cst if scope else st
            if alg == _BUCKET:
                before: float = s[slot]  # type: ignore[assignment]
                s[slot] = (before if before > send else send) + period
                undo += (before,)
            elif alg == _FIXED:
                idx = (send + offset) // period
                si = s[slot]  # type: ignore[assignment]
                if si >= idx:
                    s[slot + 1] += 1  # type: ignore[operator]
                else:
                    if last_idx[index] == idx:
                        idx = last_idx[index]
                    else:
                        last_idx[index] = idx
                    s[slot] = idx
                    s[slot + 1] = 1
            else:
                log = s[slot]  # type: ignore[assignment]
                cutoff = now - period
                if log and log[0] <= cutoff:
                    log = log[bisect_right(log, cutoff) :]
                if not log or log[-1] <= send:
                    s[slot] = (*log, send)
                else:
                    items = list(log)
                    insort(items, send)
                    s[slot] = tuple(items)
        return send, undo

    def refund(
        self,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        send_at: float,
        undo: tuple[float, ...],
    ) -> None:
        ops = self.plan(selected)[0]
        st = self._existing(mobile, digest, False)
        cst = self._existing(mobile, digest, True)
        u = 0
        for alg, scope, slot, _limit, period, offset, _tol, _index in ops:
            s = cst if scope else st
            if alg == _BUCKET:
                before = undo[u]
                u += 1
                if s is not None and s[slot] == (before if before > send_at else send_at) + period:
                    s[slot] = before
            elif s is None:
                continue
            elif alg == _FIXED:
                if s[slot] == (send_at + offset) // period and s[slot + 1] > 0:  # type: ignore[operator]
                    s[slot + 1] -= 1  # type: ignore[operator]
            else:
                log: tuple[float, ...] = s[slot]  # type: ignore[assignment]
                if send_at in log:
                    items = list(log)
                    items.remove(send_at)
                    s[slot] = tuple(items)

    def fill(self, selected: tuple[int, ...], mobile: str, digest: str, now: float) -> None:
        if now >= self.rotate_at:
            self.rotate(now)
        ops, has_num, has_con = self.plan(selected)
        st: _State = self.number_state(mobile) if has_num else []
        cst: _State = self.content_state(mobile, digest) if has_con else []
        for alg, scope, slot, limit, period, offset, _tol, _index in ops:
            s = cst if scope else st
            if alg == _BUCKET:
                empty = now + limit * period
                if s[slot] < empty:  # type: ignore[operator]
                    s[slot] = empty
            elif alg == _FIXED:
                idx = (now + offset) // period
                if s[slot] >= idx:  # type: ignore[operator]
                    s[slot + 1] += limit  # type: ignore[operator]
                else:
                    s[slot] = idx
                    s[slot + 1] = limit
            else:
                log: tuple[float, ...] = s[slot]  # type: ignore[assignment]
                active = [t for t in log if t > now - period]
                s[slot] = tuple(sorted(active + [now] * limit))

    def peek(self, selected: tuple[int, ...], mobile: str, digest: str, now: float) -> float:
        ops = self.plan(selected)[0]
        st = self._existing(mobile, digest, False) or self._blank_num
        cst = self._existing(mobile, digest, True) or self._blank_con
        t = now
        for _ in range(32):
            send = t
            for alg, scope, slot, _limit, _period, _offset, tol, _index in ops:
                if alg == _BUCKET:
                    e = (cst if scope else st)[slot] - tol  # type: ignore[operator]
                    if e > send:
                        send = e
            blocked = -math.inf
            for alg, scope, slot, limit, period, offset, _tol, _index in ops:
                s = cst if scope else st
                if alg == _FIXED:
                    si: float = s[slot]  # type: ignore[assignment]
                    if si >= (send + offset) // period and s[slot + 1] >= limit:  # type: ignore[operator]
                        blocked = max(blocked, (si + 1.0) * period - offset)
                elif alg == _ROLLING:
                    log: tuple[float, ...] = s[slot]  # type: ignore[assignment]
                    n = len(log)
                    if n >= limit and n - bisect_right(log, send - period) >= limit:
                        blocked = max(blocked, log[n - limit] + period)
            if blocked == -math.inf:
                return send
            t = blocked
        return t  # pragma: no cover - rules that keep blocking 32 times in a row


# long: generates every rule kind's code; to be replaced by one plain class per kind (#15)
def _compile(
    table: _Table, selected: tuple[int, ...], *, eager: bool = False, live: bool = True
) -> Callable[[str, str, float, float], Any]:
    """Generate straight-line Python for one selection of rules (as ``dataclasses`` does).

    The generated function does exactly what :meth:`_Table.reserve_interpreted` does for
    these rules, with the rules' constants inlined: one dict lookup for the number,
    no loop, no per-call allocation beyond the state it stores and the result tuple.
    A number seen for the first time (no content rules selected) takes a shortcut:
    every rule admits a first send, so its state is built in one expression.
    """
    ops, has_num, has_con = table.plan(selected)
    env: dict[str, object] = {
        "T": table,
        "bisect_right": bisect_right,
        "insort": insort,
        "ninf": -math.inf,
        "LI": table._last_idx,
    }
    if live:  # kept for good: `rotate()` republishes CUR and ROT into its globals
        env["CUR"], env["ROT"] = table.cur, table.rotate_at
        table._envs.append(env)
        cur_ref, rot_ref = "CUR", "ROT"
    else:  # a one-off beyond the cache: reads the table's attributes, registers nothing
        cur_ref, rot_ref = "T.cur", "T.rotate_at"
    lines = [
        "def reserve(mobile, digest, now, max_delay):",
        f"    if now >= {rot_ref}:",
        "        T.rotate(now)",
    ]
    add = lines.append
    buckets = [o for o in ops if o[0] == _BUCKET]
    if has_num:
        add(f"    st = {cur_ref}.get(mobile)")
        add("    if st is None:")
        if has_con:
            add("        st = T.number_state(mobile)")
        else:
            add("        st = T.old.pop(mobile, None) if T.old else None")
            add("        if st is None:")
            fresh: list[str] = [_const(v) for v in table._blank_num]
            for k, (alg, _scope, slot, _limit, period, offset, _tol, index) in enumerate(ops):
                if alg == _BUCKET:
                    fresh[slot] = f"now + {period!r}"
                elif alg == _FIXED:
                    add(f"            w{k} = (now + {offset!r}) // {period!r}")
                    add(f"            if w{k} == LI[{index}]:")
                    add(f"                w{k} = LI[{index}]")
                    add("            else:")
                    add(f"                LI[{index}] = w{k}")
                    fresh[slot] = f"w{k}"
                    fresh[slot + 1] = "1"
                else:
                    fresh[slot] = "(now,)"
            add(f"            {cur_ref}[mobile] = [{', '.join(fresh)}]")
            add(f"            return now, ({'ninf, ' * len(buckets)})")
            add(f"        {cur_ref}[mobile] = st")
    if has_con:
        add("    cst = T.content_state(mobile, digest)")
    add("    send = now")
    add("    bucket = -1")
    for k, (alg, scope, slot, _limit, _period, _offset, tol, index) in enumerate(ops):
        if alg == _BUCKET:
            s = "cst" if scope else "st"
            add(f"    v{k} = {s}[{slot}]")
            expr = f"v{k} - {tol!r}" if tol else f"v{k}"
            add(f"    if {expr} > send:")
            add(f"        send = {expr}")
            add(f"        bucket = {index}")
    if eager and buckets:
        add("    if send > now:")  # no token now: refused, whichever window would also refuse
        add("        return None")
    add("    refused = -1")
    add("    rat = ninf")
    for k, (alg, scope, slot, limit, period, offset, _tol, index) in enumerate(ops):
        s = "cst" if scope else "st"
        if alg == _FIXED:
            add(f"    w{k} = (send + {offset!r}) // {period!r}")
            add(f"    s{k} = {s}[{slot}]")
            add(f"    if s{k} >= w{k} and {s}[{slot + 1}] >= {limit}:")
            add(f"        at = (s{k} + 1.0) * {period!r} - {offset!r}")
            add("        if at > rat:")
            add(f"            refused = {index}")
            add("            rat = at")
        elif alg == _ROLLING:
            add(f"    g{k} = {s}[{slot}]")
            add(f"    n = len(g{k})")
            add(f"    if n >= {limit} and n - bisect_right(g{k}, send - {period!r}) >= {limit}:")
            add(f"        at = g{k}[n - {limit}] + {period!r}")
            add("        if at > rat:")
            add(f"            refused = {index}")
            add("            rat = at")
    add("    if refused >= 0:")
    add("        return None" if eager else "        return refused, rat")
    if not eager:  # the eager variant has no delay (max_delay 0, send == now here)
        add("    if send - now > max_delay:")
        add("        return bucket, send")
    for k, (alg, scope, slot, _limit, period, _offset, _tol, index) in enumerate(ops):
        s = "cst" if scope else "st"
        if alg == _BUCKET:
            add(f"    {s}[{slot}] = (v{k} if v{k} > send else send) + {period!r}")
        elif alg == _FIXED:
            add(f"    if s{k} >= w{k}:")
            add(f"        {s}[{slot + 1}] += 1")
            add("    else:")
            add(f"        if w{k} == LI[{index}]:")
            add(f"            w{k} = LI[{index}]")
            add("        else:")
            add(f"            LI[{index}] = w{k}")
            add(f"        {s}[{slot}] = w{k}")
            add(f"        {s}[{slot + 1}] = 1")
        else:
            add(f"    cutoff = now - {period!r}")
            add(f"    if g{k} and g{k}[0] <= cutoff:")
            add(f"        g{k} = g{k}[bisect_right(g{k}, cutoff):]")
            add(f"    if not g{k} or g{k}[-1] <= send:")
            add(f"        {s}[{slot}] = (*g{k}, send)")
            add("    else:")
            add(f"        items = list(g{k})")
            add("        insort(items, send)")
            add(f"        {s}[{slot}] = tuple(items)")
    undo = "".join(f"v{k}, " for k, o in enumerate(ops) if o[0] == _BUCKET)
    add(f"    return send, ({undo})")
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<ihuyi_async.limiter plan {selected}>", "exec"), env)  # noqa: S102
    fn: Callable[[str, str, float, float], Any] = env["reserve"]  # type: ignore[assignment]
    fn.__doc__ = source
    return fn


def _const(value: object) -> str:
    if value == -math.inf:
        return "ninf"
    return repr(value)


class MemoryStore(Store):
    """Counts kept in this process: the default store.

    Safe for any number of concurrent tasks of one event loop (no operation awaits,
    so each is atomic); not shared between processes — use :class:`RedisStore` for
    that. Memory is bounded without a background task: the state of a number that
    has not been touched for one *generation* (the longest rule window, one day by
    default, plus one hour) is dropped at the next lazy rotation, so past days and
    idle buckets are forgotten; a tracked number costs one small ``list`` (under
    200 bytes with the default rules, dict entry included).

    Time is whatever the limiter passes (its clock).

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

    async def reserve(
        self,
        rules: RuleSet,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        now: float,
        max_delay: float,
    ) -> Grant | Refusal:
        first, second = self._table(rules).reserve(selected, mobile, digest, now, max_delay)
        if isinstance(second, tuple):
            return Grant(first, now, second)
        return Refusal(int(first), now, second, second)

    async def refund(
        self,
        rules: RuleSet,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        grant: Grant,
    ) -> None:
        self._table(rules).refund(selected, mobile, digest, grant.send_at, grant.undo)

    async def fill(
        self,
        rules: RuleSet,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        now: float,
    ) -> None:
        self._table(rules).fill(selected, mobile, digest, now)

    async def peek(
        self,
        rules: RuleSet,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        now: float,
    ) -> float:
        return self._table(rules).peek(selected, mobile, digest, now)

    def __repr__(self) -> str:
        return f"MemoryStore(tracked_numbers={self.tracked_numbers})"
