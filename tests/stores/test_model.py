"""Stateful property test: random sends, refunds, provider codes and clock jumps, on every
store, against a reference model written from the documented semantics (not the code).
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import anyio.from_thread
import pytest
import redis.asyncio as redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ihuyi_async._redact import content_digest
from ihuyi_async.limiter import Grant, MemoryStore, RedisStore, Refusal, Rule, RuleSet, Store

from .limiter_support import MARGIN, MIDNIGHT, STEP

RULES = (
    Rule.token_bucket("per_second", margin=MARGIN),  # turns STEP = 1.25 s apart
    Rule.per_day("per_day", 4),
    Rule.per_day("verification_per_day", 2, code=4085, kind="verification"),
    Rule.window("identical_per_minute", 2, 60, code=408, per_content=True),
    Rule.per_day("identical_per_day", 3, code=408, per_content=True),
)
DAY = 86400.0
OFFSET = 28800.0
NUMBERS = ("13800000001", "13800000002")
CONTENTS = ("", "hello", "world")
JUMPS = (0.0, 0.25, 0.5, 1.0, STEP, 1.5, 30.0, 59.5, 60.0, 3600.0, 43200.0, DAY)


def day(t: float) -> int:
    return math.floor((t + OFFSET) / DAY)


@dataclass
class Sent:
    mobile: str
    turn: float
    verification: bool
    content: str
    refunded: bool = False


@dataclass
class Model:
    """What the documentation promises, counted the slow and obvious way."""

    sent: list[Sent] = field(default_factory=list)
    turns: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    fills: list[tuple[str, str, int, str]] = field(
        default_factory=list
    )  # mobile, rule, window, content
    minute_fills: list[tuple[str, float, str]] = field(
        default_factory=list
    )  # mobile, time, content
    last_window: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def _count(self, mobile: str, rule: str, window: int, content: str) -> int:
        def counts(s: Sent) -> bool:
            if s.refunded or s.mobile != mobile or day(s.turn) != window:
                return False
            if rule == "verification_per_day":
                return s.verification
            if rule == "identical_per_day":
                return s.content == content
            return True

        limit = {"per_day": 4, "verification_per_day": 2, "identical_per_day": 3}[rule]
        filled = sum(
            limit
            for f in self.fills
            if f[:3] == (mobile, rule, window) and (f[3] == content or rule != "identical_per_day")
        )
        return sum(map(counts, self.sent)) + filled

    def _minute_log(self, mobile: str, content: str) -> list[float]:
        log = [
            s.turn
            for s in self.sent
            if not s.refunded and s.mobile == mobile and s.content == content
        ]
        log += [t for m, t, c in self.minute_fills if (m, c) == (mobile, content) for _ in range(2)]
        return sorted(log)

    def reserve(
        self, mobile: str, kind: str | None, content: str, now: float, max_delay: float
    ) -> tuple[str, float]:
        turns = self.turns[mobile]
        turn = max(now, turns[-1] + STEP) if turns else now
        checks = [("per_day", 4)]
        if kind == "verification":
            checks.append(("verification_per_day", 2))
        if content:
            checks.append(("identical_per_day", 3))
        refused: tuple[str, float] | None = None
        for name, limit in checks:
            if self._count(mobile, name, day(turn), content) >= limit:
                end = (day(turn) + 1) * DAY - OFFSET
                if refused is None or end > refused[1]:
                    refused = (name, end)
        if content:
            log = [t for t in self._minute_log(mobile, content) if t > turn - 60.0]
            if len(log) >= 2:
                free = log[len(log) - 2] + 60.0
                if refused is None or free > refused[1]:
                    refused = ("identical_per_minute", free)
        if refused is not None:
            return refused
        if turn - now > max_delay:
            return ("per_second", turn)
        self.sent.append(Sent(mobile, turn, kind == "verification", content))
        turns.append(turn)
        for name in ("per_day", "verification_per_day", "identical_per_day"):
            self.last_window[(mobile, name, content if name == "identical_per_day" else "")] = day(
                turn
            )
        return ("granted", turn)

    def refund(self, s: Sent) -> None:
        if s.refunded:
            return
        s.refunded = True
        turns = self.turns[s.mobile]
        if turns and turns[-1] == s.turn:
            turns.pop()

    def observe(self, mobile: str, code: int, content: str, now: float) -> None:
        if code == 4080:
            turns = self.turns[mobile]
            if not turns or now > turns[-1]:
                turns.append(now)
            return
        names = {
            4082: ["per_day"],
            4085: ["verification_per_day"],
            408: ["identical_per_day", "identical_per_minute"],
        }[code]
        for name in names:
            if name == "identical_per_minute":  # as if 2 identical sends went now
                self.minute_fills.append((mobile, now, content))
                continue
            key = (mobile, name, content if name == "identical_per_day" else "")
            window = max(day(now), self.last_window.get(key, day(now)))
            self.last_window[key] = window
            self.fills.append(
                (mobile, name, window, content if name == "identical_per_day" else "")
            )


class LimiterMachine(RuleBasedStateMachine):
    store_kind = "memory"
    redis_url = ""

    def __init__(self) -> None:
        super().__init__()
        self._portal_cm = anyio.from_thread.start_blocking_portal("asyncio")
        self.portal = self._portal_cm.__enter__()
        self.prefix = f"ihuyi-test:model:{uuid.uuid4().hex[:10]}:"
        self.client: Any = None
        if self.store_kind == "redis":
            self.client = self.portal.call(self._connect)
            self.store: Store = RedisStore(self.client, prefix=self.prefix)
        else:
            self.store = MemoryStore()
        self.ruleset = RuleSet(RULES)
        self.model = Model()
        self.now = MIDNIGHT - 7200.0
        self.held: list[tuple[Sent, Grant, tuple[int, ...], str]] = []

    async def _connect(self) -> Any:
        return redis.Redis.from_url(self.redis_url)

    async def _close(self) -> None:
        keys = [k async for k in self.client.scan_iter(match=f"{self.prefix}*")]
        if keys:
            await self.client.delete(*keys)
        await self.client.aclose()

    def teardown(self) -> None:
        try:
            if self.client is not None:
                self.portal.call(self._close)
        finally:
            self._portal_cm.__exit__(None, None, None)

    @rule(
        mobile=st.sampled_from(NUMBERS),
        kind=st.sampled_from([None, "verification"]),
        content=st.sampled_from(CONTENTS),
        max_delay=st.sampled_from([0.0, 1.0, STEP, 2.5]),
    )
    def send(self, mobile: str, kind: str | None, content: str, max_delay: float) -> None:
        selected = self.ruleset.select(kind, bool(content))
        digest = content_digest(content) if content else ""
        got = self.portal.call(
            self.store.reserve, self.ruleset, selected, mobile, digest, self.now, max_delay
        )
        want = self.model.reserve(mobile, kind, content, self.now, max_delay)
        if isinstance(got, Refusal):
            assert (self.ruleset.rules[got.rule].name, got.retry_at) == want
        else:
            assert ("granted", got.send_at) == want
            self.held.append((self.model.sent[-1], got, selected, digest))

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        sent, grant, selected, digest = data.draw(st.sampled_from(self.held))
        if not sent.refunded:
            self.portal.call(self.store.refund, self.ruleset, selected, sent.mobile, digest, grant)
        self.model.refund(sent)

    @rule(
        mobile=st.sampled_from(NUMBERS),
        code=st.sampled_from([4080, 4082, 4085, 408]),
        content=st.sampled_from(CONTENTS[1:]),
    )
    def provider_says(self, mobile: str, code: int, content: str) -> None:
        selected = self.ruleset.for_code(code, True)
        digest = content_digest(content)
        self.portal.call(self.store.fill, self.ruleset, selected, mobile, digest, self.now)
        self.model.observe(mobile, code, content, self.now)

    @rule(seconds=st.sampled_from(JUMPS))
    def clock_jumps(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def time_is_on_the_grid(self) -> None:
        assert self.now * 4 == int(self.now * 4)


SETTINGS = settings(max_examples=40, stateful_step_count=40, deadline=None)


def test_memory_store_agrees_with_the_model() -> None:
    run_state_machine_as_test(LimiterMachine, settings=SETTINGS)


@pytest.mark.redis
def test_redis_store_agrees_with_the_model(redis_url: str) -> None:
    class RedisMachine(LimiterMachine):
        store_kind = "redis"

    RedisMachine.redis_url = redis_url
    run_state_machine_as_test(RedisMachine, settings=settings(SETTINGS, max_examples=25))
