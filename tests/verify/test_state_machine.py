"""A hypothesis state machine: start / check / time passing against a small model (#18).

The model is written from the rules in the README ("Verification codes"), not from the
stores' code: per number the pending codes, wrong guesses, codes of this verification, last
send and expiry, and the codes sent per China day. Two numbers, short numbers (a 2-minute
lifetime, 30 s between codes, 3 guesses, 3 codes per verification, 5 a day) so that every
limit is reached within a run; time moves by seconds on a fake clock. The verifier sends
through a recording stand-in client, so the model knows each code that was texted. Run on
the memory stores and on Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import redis.asyncio as redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ihuyi_async import FakeClock
from ihuyi_async.limiter import MemoryStore, RedisStore, Store
from ihuyi_async.verify import (
    MemoryVerifyStore,
    RedisVerifyStore,
    VerificationRefusedError,
    Verifier,
    VerifyLimits,
    VerifyStore,
)

T = TypeVar("T")

NUMBERS = ("13800138000", "13900139000")
#: mostly the first number: runs then reach its limits more often
PICK = st.sampled_from(NUMBERS[:1] * 3 + NUMBERS[1:])
NOON = 1_767_240_000  # 2026-01-01 12:00:00 UTC+8
LIFETIME, RESEND, ATTEMPTS, SENDS, PER_DAY = 120, 30, 3, 3, 5
CHINA = 8 * 3600


@dataclass
class _Sent:
    smsid: str


class RecordingClient:
    """Stands in for IhuyiClient.send_template: keeps every code texted, per number."""

    def __init__(self) -> None:
        self.codes: dict[str, list[str]] = {number: [] for number in NUMBERS}

    async def send_template(
        self, mobile: str, *, template_id: int, variables: list[str], kind: str
    ) -> _Sent:
        assert (template_id, kind, len(variables)) == (1, "verification", 1)
        self.codes[mobile].append(variables[0])
        return _Sent("1" * 20)


@dataclass
class NumberModel:
    pending: list[str] = field(default_factory=list)
    attempts: int = 0
    sends: int = 0
    sent_at: int | None = None
    expires: int = 0


def china_day(now: int) -> int:
    return (now + CHINA) // 86400


class VerifierMachine(RuleBasedStateMachine):
    def __init__(self, kind: str, redis_url: str) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock(NOON)
        self.client = RecordingClient()
        self.model = {number: NumberModel() for number in NUMBERS}
        self.per_day: dict[tuple[str, int], int] = {}
        self.redis: Any = None
        self.prefix = f"ihuyi-test:verify-sm:{uuid.uuid4().hex[:12]}:"
        store: VerifyStore
        limiter_store: Store
        if kind == "redis":
            self.redis = redis.Redis.from_url(redis_url)
            store = RedisVerifyStore(self.redis, prefix=self.prefix + "codes:")
            limiter_store = RedisStore(self.redis, prefix=self.prefix + "limits:")
        else:
            store, limiter_store = MemoryVerifyStore(), MemoryStore()
        self.stores = (store, limiter_store)
        self.verifier: Verifier | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    @property
    def now(self) -> int:
        return int(self.clock.time())

    @initialize(resend=st.sampled_from(["replace", "keep"]))
    def make_verifier(self, resend: str) -> None:
        self.verifier = Verifier(
            self.client,
            template_id=1,
            clock=self.clock,
            store=self.stores[0],
            limiter_store=self.stores[1],
            limits=VerifyLimits(
                per_number_per_day=PER_DAY,
                per_source_per_hour=None,
                per_source_per_day=None,
                global_per_hour=None,
            ),
            lifetime=LIFETIME,
            resend_after=RESEND,
            max_attempts=ATTEMPTS,
            max_sends=SENDS,
            resend="keep" if resend == "keep" else "replace",
        )
        self.keep = resend == "keep"

    def expected_start(self, number: str) -> tuple[str, float] | None:
        """``(scope, retry_after)`` of the refusal the rules predict, or ``None``."""
        state, now = self.model[number], self.now
        if state.sent_at is not None and now < state.sent_at + RESEND:
            return "resend", state.sent_at + RESEND - now
        live = bool(state.pending) and now < state.expires and state.attempts < ATTEMPTS
        if live and state.sends >= SENDS:
            return "verification", state.expires - now
        if self.per_day.get((number, china_day(now)), 0) >= PER_DAY:
            return "number", (china_day(now) + 1) * 86400 - CHINA - now
        return None

    @rule(number=PICK)
    def start(self, number: str) -> None:
        assert self.verifier is not None
        expected = self.expected_start(number)
        try:
            started = self.run(self.verifier.start(number))
        except VerificationRefusedError as exc:
            assert expected is not None, f"refused ({exc.scope}), the model expected a code"
            assert exc.scope == expected[0]
            assert exc.retry_after == pytest.approx(expected[1])
            return
        assert expected is None, f"a code was issued, the model expected {expected}"
        state, now = self.model[number], self.now
        code = self.client.codes[number][-1]
        if state.pending and now < state.expires and state.attempts < ATTEMPTS:
            state.sends += 1
            state.pending = [*state.pending, code] if self.keep else [code]
        else:
            state.pending, state.attempts, state.sends = [code], 0, 1
        state.sent_at, state.expires = now, now + LIFETIME
        day = (number, china_day(now))
        self.per_day[day] = self.per_day.get(day, 0) + 1
        assert started.sends == state.sends and started.delivery == "sent"

    @rule(number=PICK, then=st.sampled_from(["previous", "latest", None]))
    def resend(self, number: str, then: str | None) -> None:
        """Wait out the resend spacing, start again, maybe guess an earlier or the newest
        code at once (steers runs into the resend rules: keep or replace)."""
        self.clock.advance(RESEND)
        self.start(number)
        if then is not None:
            self.check(number, then)

    @rule(
        number=PICK,
        which=st.sampled_from(["latest", "previous", "previous", "first", "other", "malformed"]),
    )
    def check(self, number: str, which: str) -> None:
        assert self.verifier is not None
        texted = self.client.codes[number]
        if which == "latest" and texted:
            guess = texted[-1]
        elif which == "previous" and len(texted) > 1:
            guess = texted[-2]
        elif which == "first" and texted:
            guess = texted[0]
        elif which == "malformed":
            guess = "12a"
        else:
            guess = next(g for g in ("000000", "000001", "000002", "000003") if g not in texted)
        state = self.model[number]
        allowed: tuple[tuple[str, int], ...] = ()
        if not state.pending:
            expected = ("not_found", 0)
        elif self.now >= state.expires:
            expected = ("expired", 0)
            if self.now >= state.expires + LIFETIME:  # the record may be dropped by now
                allowed = (("not_found", 0),)
        elif state.attempts >= ATTEMPTS:
            expected = ("too_many_attempts", 0)
        elif guess in state.pending:
            expected = ("approved", 0)
            state.pending, state.attempts, state.sends, state.expires = [], 0, 0, 0
        else:
            state.attempts += 1
            expected = ("wrong", ATTEMPTS - state.attempts)
        checked = self.run(self.verifier.check(number, guess))
        assert (checked.status, checked.attempts_left) in (expected, *allowed)

    # mostly short steps (resends within a code's life), now and then hours or a day
    @rule(seconds=st.integers(0, 45) | st.integers(0, 45) | st.sampled_from(
        [RESEND, LIFETIME, 2 * LIFETIME, 3600, 86400]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @invariant()
    def never_more_than_the_day_allows(self) -> None:
        assert all(count <= PER_DAY for count in self.per_day.values())

    def teardown(self) -> None:
        if self.redis is not None:
            async def clean() -> None:
                keys = [k async for k in self.redis.scan_iter(match=f"{self.prefix}*")]
                if keys:
                    await self.redis.delete(*keys)
                await self.redis.aclose()

            self.run(clean())
        self.loop.close()


def _run(kind: str, redis_url: str, examples: int) -> None:
    class Machine(VerifierMachine):
        def __init__(self) -> None:
            super().__init__(kind, redis_url)

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=40,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_the_verifier_follows_the_model_in_memory() -> None:
    _run("memory", "", 100)


@pytest.mark.redis
def test_the_verifier_follows_the_model_on_redis(redis_url: str) -> None:
    _run("redis", redis_url, 30)
