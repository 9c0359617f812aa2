"""The limiter contract, run against every store (memory and a real Redis).

All time is a FakeClock: nothing sleeps for real; Redis receives the clock's time.
The provider's rules run with a per-second margin of 0.25 s (``limiter_support``): turns
are ``STEP`` = 1.25 s apart, exact in floats and in Redis's microseconds.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import time
from collections.abc import Callable, Iterator

import anyio
import pytest

from ihuyi_async import FakeClock, LocalRateLimitError, RateLimitedError
from ihuyi_async.limiter import CHINA_TZ, Limiter, Reservation, Rule, provider_rules, to_china_time

from .limiter_support import MIDNIGHT, NOON, STEP, MakeLimiter, rules

pytestmark = pytest.mark.anyio

MOBILE = "13800138000"
OTHER = "13900139000"


def china(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=CHINA_TZ)


async def until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    """Let the event loop (and Redis round trips) run until ``predicate`` holds.

    Polls because the awaited work is socket I/O, not time: no FakeClock time passes.
    """
    with anyio.fail_after(seconds):
        while not predicate():  # noqa: ASYNC110 - waiting on Redis replies, not on time
            await anyio.sleep(0.001)


async def refused(limiter: Limiter, mobile: str = MOBILE, **kw: object) -> LocalRateLimitError:
    with pytest.raises(LocalRateLimitError) as info:
        await limiter.acquire(mobile, **kw)  # type: ignore[arg-type]
    return info.value


@pytest.fixture(params=["UTC", "America/Los_Angeles"])
def host_tz(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with the host's time zone set to UTC, then to Los Angeles."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    try:
        yield request.param
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


# -- 1 per second, 5 per day ---------------------------------------------------------------


async def test_thousand_concurrent_sends_one_per_second_five_per_day(
    make_limiter: MakeLimiter,
) -> None:
    clock = FakeClock(NOON)
    limiter = make_limiter(clock=clock)
    granted: list[tuple[float, Reservation]] = []
    errors: list[LocalRateLimitError] = []

    async def send() -> None:
        try:
            res = await limiter.acquire(MOBILE)
        except LocalRateLimitError as exc:
            errors.append(exc)
        else:
            granted.append((clock.time(), res))

    async with anyio.create_task_group() as tg:
        for _ in range(1000):
            tg.start_soon(send)
        await until(lambda: len(granted) + len(errors) + clock.sleepers == 1000)
        assert (len(granted), clock.sleepers, len(errors)) == (1, 4, 995)
        for turn in range(1, 5):
            clock.advance(1.0)
            await anyio.wait_all_tasks_blocked()
            assert len(granted) == turn  # not yet: one second, the margin still to go
            clock.advance(STEP - 1.0)
            await until(functools.partial(lambda n: len(granted) == n, turn + 1))
            assert clock.sleepers == 4 - turn
    assert [t for t, _ in granted] == [NOON + i * STEP for i in range(5)]
    assert [r.send_at for _, r in granted] == [NOON + i * STEP for i in range(5)]
    times = [t for t, _ in granted]
    assert all(
        b - a >= STEP for a, b in zip(times, times[1:], strict=False)
    )  # never 2 within 1 s + margin
    for exc in errors:
        assert isinstance(exc, RateLimitedError) and exc.local
        assert (exc.code, exc.rule) == (4082, "per_day")
        assert exc.resets_at == china(2026, 1, 2)
        assert exc.retry_after == 43200.0
        assert exc.mobile_masked == "138****8000"
    # the next day has 5 new sends
    clock.set(MIDNIGHT)
    for i in range(5):
        res = await limiter.acquire(MOBILE, wait=False)
        assert res.send_at == MIDNIGHT + i * STEP
        clock.advance(STEP)
    assert (await refused(limiter)).resets_at == china(2026, 1, 3)


async def test_wait_false_and_max_wait_refuse_with_4080(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON, auto_advance=True)
    limiter = make_limiter(clock=clock, max_wait=2.0)
    await limiter.acquire(MOBILE)
    exc = await refused(limiter, wait=False)
    assert (exc.code, exc.rule, exc.retry_after) == (4080, "per_second", STEP)
    assert exc.resets_at == to_china_time(NOON + STEP)
    assert await limiter.try_acquire(MOBILE) is None
    assert await limiter.acquire(OTHER, wait=False)  # other numbers are independent


async def test_turns_beyond_max_wait_are_refused_at_once(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON)
    limiter = make_limiter(clock=clock, max_wait=2 * STEP)
    done: list[float] = []
    errors: list[LocalRateLimitError] = []

    async def send() -> None:
        try:
            done.append((await limiter.acquire(MOBILE)).send_at)
        except LocalRateLimitError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(send)
        await until(lambda: len(done) + len(errors) + clock.sleepers == 4)
        assert [(e.code, e.retry_after) for e in errors] == [(4080, 3 * STEP)]
        clock.advance(2 * STEP)
    assert done == [NOON, NOON + STEP, NOON + 2 * STEP]


async def test_burst_capacity(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON)
    limiter = make_limiter(
        [Rule.token_bucket("burst", capacity=3, per=2.0)], clock=clock, wait=False
    )
    for _ in range(3):
        await limiter.acquire(MOBILE)
    assert (await refused(limiter)).retry_after == 2.0
    clock.advance(2)
    await limiter.acquire(MOBILE)
    assert (await refused(limiter)).retry_after == 2.0


async def test_burst_capacity_with_a_margin(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON)
    rule = Rule.token_bucket("burst", capacity=3, per=2.0, margin=0.5)
    limiter = make_limiter([rule], clock=clock, wait=False)
    for _ in range(3):
        await limiter.acquire(MOBILE)
    assert (await refused(limiter)).retry_after == 2.5
    clock.advance(2)
    assert (await refused(limiter)).retry_after == 0.5
    clock.advance(0.5)
    await limiter.acquire(MOBILE)
    assert await limiter.next_allowed_at(MOBILE) == to_china_time(NOON + 5.0)


async def test_default_rules_space_turns_by_one_second_and_the_margin(
    make_limiter: MakeLimiter,
) -> None:
    """The provider counts 1/s on arrival: the default turns keep PER_SECOND_MARGIN apart."""
    clock = FakeClock(NOON, auto_advance=True)
    limiter = make_limiter(provider_rules(), clock=clock)
    turns = [(await limiter.acquire(MOBILE)).send_at for _ in range(5)]  # the day's 5
    gaps = [b - a for a, b in zip(turns, turns[1:], strict=False)]
    assert gaps == pytest.approx([1.2] * 4, abs=1e-6)
    assert (await limiter.next_allowed_at(OTHER)) == to_china_time(clock.time())


async def test_margin_zero_spaces_turns_by_exactly_the_period(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON, auto_advance=True)
    limiter = make_limiter(provider_rules(per_second_margin=0), clock=clock)
    assert [(await limiter.acquire(MOBILE)).send_at for _ in range(5)] == [
        NOON + i for i in range(5)
    ]


async def test_midnight_china_time_resets_the_day(make_limiter: MakeLimiter, host_tz: str) -> None:
    # the host's own midnight is elsewhere: the quota must not care
    assert time.localtime(MIDNIGHT).tm_hour != 0
    clock = FakeClock(MIDNIGHT - 10)
    limiter = make_limiter(clock=clock, wait=False)
    for _ in range(5):
        await limiter.acquire(MOBILE)
        clock.advance(STEP)
    clock.set(MIDNIGHT - 1)  # 23:59:59
    exc = await refused(limiter)
    assert (exc.code, exc.rule, exc.retry_after) == (4082, "per_day", 1.0)
    assert exc.resets_at == china(2026, 1, 2)
    assert await limiter.next_allowed_at(MOBILE) == china(2026, 1, 2)
    clock.set(MIDNIGHT)  # 00:00:00
    for i in range(5):
        assert (await limiter.acquire(MOBILE)).send_at == MIDNIGHT + i * STEP
        clock.advance(STEP)
    assert (await refused(limiter)).resets_at == china(2026, 1, 3)


async def test_rolling_day_option(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(MIDNIGHT - 10)
    limiter = make_limiter(rules(rolling_day=True), clock=clock, wait=False)
    for _ in range(5):
        await limiter.acquire(MOBILE)
        clock.advance(STEP)
    clock.set(MIDNIGHT + 3600)  # a new calendar day, but not 24 hours later
    exc = await refused(limiter)
    assert (exc.code, exc.rule) == (4082, "per_day")
    assert exc.resets_at == china(2026, 1, 2, 23, 59, 50)
    clock.set(MIDNIGHT + 86400 - 10)
    await limiter.acquire(MOBILE)


async def test_a_send_waiting_across_midnight_counts_in_the_new_day(
    make_limiter: MakeLimiter,
) -> None:
    clock = FakeClock(MIDNIGHT - 4.5, auto_advance=True)
    limiter = make_limiter(clock=clock)
    sends = [(await limiter.acquire(MOBILE)).send_at for _ in range(4)]
    assert clock.time() == MIDNIGHT - 0.75
    sends.append(
        (await limiter.acquire(MOBILE)).send_at
    )  # asked at 23:59:59.25, goes at 00:00:00.5
    assert sends == [MIDNIGHT - 4.5 + i * STEP for i in range(5)]  # 4 yesterday, 1 today
    clock.set(MIDNIGHT + 10)
    for _ in range(4):
        await limiter.acquire(MOBILE)
    assert (await refused(limiter)).resets_at == china(2026, 1, 3)


# -- verification and identical content -----------------------------------------------------


async def test_verification_quota(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON, auto_advance=True)
    limiter = make_limiter(rules(per_day=10), clock=clock)
    for i in range(5):
        await limiter.acquire(MOBILE, kind="verification", content=f"code {i}")
    exc = await refused(limiter, kind="verification", content="code 9")
    assert (exc.code, exc.rule, exc.resets_at) == (4085, "verification_per_day", china(2026, 1, 2))
    await limiter.acquire(MOBILE, content="a notice")  # other kinds still go
    clock.set(MIDNIGHT)
    await limiter.acquire(MOBILE, kind="verification")


async def test_verification_60s_rule_as_the_provider_recommends(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON)
    chosen = [
        *rules(),
        Rule.token_bucket("verify_60s", per=60, code=4085, kind="verification"),
    ]
    limiter = make_limiter(chosen, clock=clock, wait=True)
    await limiter.acquire(MOBILE, kind="verification")
    exc = await refused(limiter, kind="verification")  # a 60 s turn is beyond max_wait
    assert (exc.code, exc.rule, exc.retry_after) == (4085, "verify_60s", 60.0)
    clock.advance(STEP)
    await limiter.acquire(MOBILE)


async def test_identical_content_two_per_minute(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON)
    limiter = make_limiter(clock=clock, wait=False)
    await limiter.acquire(MOBILE, content="same")
    clock.advance(STEP)
    await limiter.acquire(MOBILE, content="same")
    clock.advance(STEP)
    exc = await refused(limiter, content="same")
    assert (exc.code, exc.rule, exc.retry_after) == (408, "identical_per_minute", 60.0 - 2 * STEP)
    assert exc.resets_at == china(2026, 1, 1, 12, 1, 0)
    await limiter.acquire(MOBILE, content="different")
    await limiter.acquire(OTHER, content="same")
    clock.set(NOON + 60)
    await limiter.acquire(MOBILE, content="same")


async def test_identical_content_twenty_per_day(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON)
    limiter = make_limiter(rules(per_day=None, identical_per_minute=None), clock=clock, wait=False)
    for _ in range(20):
        await limiter.acquire(MOBILE, content="again")
        clock.advance(STEP)
    exc = await refused(limiter, content="again")
    assert (exc.code, exc.rule, exc.resets_at) == (408, "identical_per_day", china(2026, 1, 2))
    await limiter.acquire(MOBILE, content="other text")
    clock.set(MIDNIGHT)
    await limiter.acquire(MOBILE, content="again")


# -- refunds ---------------------------------------------------------------------------------


async def test_refund_gives_the_day_slot_back_once(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON)
    limiter = make_limiter(clock=clock, wait=False)
    reservations = []
    for _ in range(5):
        reservations.append(await limiter.acquire(MOBILE))
        clock.advance(STEP)
    await refused(limiter)
    assert await reservations[2].refund() is True
    assert reservations[2].refunded
    assert await reservations[2].refund() is False  # idempotent
    await limiter.acquire(MOBILE)
    clock.advance(STEP)
    exc = await refused(limiter)  # the second refund gave nothing back
    assert exc.code == 4082
    assert limiter.statistics().refunded == 1


async def test_a_reservation_that_is_not_refunded_stays_counted(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON)
    limiter = make_limiter(rules(per_second=False, per_day=2), clock=clock)
    await limiter.acquire(MOBILE)
    await limiter.acquire(MOBILE)
    clock.advance(3600)
    assert (await refused(limiter)).code == 4082


async def test_refund_gives_the_bucket_turn_back(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON)
    limiter = make_limiter(clock=clock, wait=False)
    res = await limiter.acquire(MOBILE)
    await refused(limiter)
    await res.refund()
    assert (await limiter.acquire(MOBILE)).send_at == NOON


async def test_refund_of_identical_content(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON)
    limiter = make_limiter(clock=clock, wait=False)
    await limiter.acquire(MOBILE, content="x")
    clock.advance(STEP)
    second = await limiter.acquire(MOBILE, content="x")
    clock.advance(STEP)
    await refused(limiter, content="x")
    await second.refund()
    await limiter.acquire(MOBILE, content="x")


async def test_refund_of_yesterday_does_not_free_today(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(MIDNIGHT - STEP)
    limiter = make_limiter(rules(per_day=1), clock=clock, wait=False)
    yesterday = await limiter.acquire(MOBILE)
    clock.set(MIDNIGHT)
    await limiter.acquire(MOBILE)
    await yesterday.refund()
    clock.advance(5)
    assert (await refused(limiter)).code == 4082


async def test_cancelled_waiter_refunds_exactly(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON)
    limiter = make_limiter(clock=clock)
    results: dict[int, Reservation] = {}
    scopes = {i: anyio.CancelScope() for i in (1, 2, 3)}

    async def waiter(i: int) -> None:
        with scopes[i]:
            results[i] = await limiter.acquire(MOBILE)

    results[0] = await limiter.acquire(MOBILE)
    async with anyio.create_task_group() as tg:
        for i in (1, 2, 3):  # turns at +1, +2, +3 steps, in the order of the calls
            tg.start_soon(waiter, i)
            await until(functools.partial(lambda n: clock.sleepers == n, i))
        # the last in line leaves: its turn and its day slot come back exactly
        scopes[3].cancel()
        await until(lambda: limiter.statistics().waiting == 2)
        assert await limiter.next_allowed_at(MOBILE) == to_china_time(NOON + 3 * STEP)
        # the middle one leaves: its day slot comes back; later turns do not move
        scopes[1].cancel()
        await until(lambda: limiter.statistics().waiting == 1)
        assert await limiter.next_allowed_at(MOBILE) == to_china_time(NOON + 3 * STEP)
        clock.advance(2 * STEP)
    assert sorted(results) == [0, 2]
    assert [results[0].send_at, results[2].send_at] == [NOON, NOON + 2 * STEP]
    assert limiter.statistics().refunded == 2
    # 2 sends counted: 3 more fit in the day
    for _ in range(3):
        clock.advance(STEP)
        await limiter.acquire(MOBILE, wait=False)
    clock.advance(STEP)
    assert (await refused(limiter)).code == 4082


# -- what the provider says ---------------------------------------------------------------------


@pytest.mark.parametrize("code", [4080, 4086])
async def test_observe_per_second_codes(make_limiter: MakeLimiter, code: int) -> None:
    clock = FakeClock(NOON)
    limiter = make_limiter(clock=clock, wait=False)
    assert await limiter.observe_provider_code(MOBILE, code) == ("per_second",)
    exc = await refused(limiter)
    assert (exc.code, exc.retry_after) == (4080, STEP)
    assert await limiter.next_allowed_at(MOBILE) == to_china_time(NOON + STEP)
    clock.advance(STEP)
    await limiter.acquire(MOBILE)


async def test_observe_4082_fills_the_day(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON)
    limiter = make_limiter(clock=clock, wait=False)
    res = await limiter.acquire(MOBILE)
    clock.advance(1)
    assert await limiter.observe_provider_code(MOBILE, 4082) == ("per_day",)
    await res.refund()  # refunding what we counted does not reopen what the provider closed
    exc = await refused(limiter)
    assert (exc.code, exc.resets_at) == (4082, china(2026, 1, 2))
    assert await limiter.next_allowed_at(MOBILE) == china(2026, 1, 2)
    clock.set(MIDNIGHT)
    await limiter.acquire(MOBILE)


async def test_observe_4085_fills_verification_only(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON)
    limiter = make_limiter(clock=clock, wait=False)
    assert await limiter.observe_provider_code(MOBILE, 4085) == ("verification_per_day",)
    assert (await refused(limiter, kind="verification")).code == 4085
    await limiter.acquire(MOBILE)


async def test_observe_408_fills_identical_content(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON)
    limiter = make_limiter(clock=clock, wait=False)
    assert await limiter.observe_provider_code(MOBILE, 408) == ()  # no content, nothing to fill
    names = await limiter.observe_provider_code(MOBILE, 408, content="spam")
    assert set(names) == {"identical_per_minute", "identical_per_day"}
    exc = await refused(limiter, content="spam")
    assert (exc.code, exc.rule, exc.resets_at) == (408, "identical_per_day", china(2026, 1, 2))
    await limiter.acquire(MOBILE, content="ham")


@pytest.mark.parametrize("code", [0, 2, 4030, 4051, 40722])
async def test_observe_other_codes_is_a_no_op(make_limiter: MakeLimiter, code: int) -> None:
    limiter = make_limiter(wait=False)
    assert await limiter.observe_provider_code(MOBILE, code, content="x") == ()
    await limiter.acquire(MOBILE, content="x")


async def test_next_allowed_at(make_limiter: MakeLimiter) -> None:
    clock = FakeClock(NOON)
    limiter = make_limiter(clock=clock, wait=False)
    assert await limiter.next_allowed_at(MOBILE) == china(2026, 1, 1, 12)
    await limiter.acquire(MOBILE, content="hi")
    assert await limiter.next_allowed_at(MOBILE) == to_china_time(NOON + STEP)
    clock.advance(STEP)
    await limiter.acquire(MOBILE, content="hi")
    # identical content waits for the rolling minute, other content only for the bucket
    assert await limiter.next_allowed_at(MOBILE, content="hi") == china(2026, 1, 1, 12, 1)
    assert await limiter.next_allowed_at(MOBILE, content="yo") == to_china_time(NOON + 2 * STEP)
    assert (await limiter.next_allowed_at(MOBILE)).tzinfo == CHINA_TZ
