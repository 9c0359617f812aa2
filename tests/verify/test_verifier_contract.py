"""The Verifier's rules (#18), each run on the memory stores and on Redis (``backend``).

The verifier sends through the plugin's ``ihuyi_client`` to the emulator, on the emulator's
fake clock (set to a China noon, so no test crosses a day boundary by accident).
"""

from __future__ import annotations

import socket

import anyio
import pytest
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ihuyi_async import (
    AccountError,
    FakeClock,
    IhuyiClient,
    InvalidRequestError,
    LimiterUnavailableError,
    StoreUnavailableError,
)
from ihuyi_async.limiter import RedisStore, to_china_time
from ihuyi_async.testing import Emulator, faults
from ihuyi_async.verify import (
    MemoryVerifyStore,
    RedisVerifyStore,
    VerificationRefusedError,
    VerificationUnavailableError,
    Verifier,
    VerifyLimits,
)

from .verify_support import Backend, MakeVerifier

pytestmark = [pytest.mark.anyio, pytest.mark.ihuyi(client={"flavour": "json"})]

MOBILE = "13800138000"
NOON = 1_767_240_000.0  # 2026-01-01 12:00:00 UTC+8


@pytest.fixture
def clock(ihuyi_emulator: Emulator) -> FakeClock:
    clock = ihuyi_emulator.clock
    assert isinstance(clock, FakeClock)
    clock.set(NOON)
    return clock


@pytest.fixture
def make(make_verifier: MakeVerifier, clock: FakeClock) -> MakeVerifier:
    """``make_verifier`` once the clock is at noon."""
    return make_verifier


async def test_texted_code_is_approved_once_and_never_stored_in_clear(
    make: MakeVerifier, ihuyi_emulator: Emulator, backend: Backend
) -> None:
    verifier = make(length=8)
    started = await verifier.start(MOBILE, ip="10.1.2.3")
    [message] = ihuyi_emulator.messages
    assert (started.delivery, started.sends, started.smsid) == ("sent", 1, message.smsid)
    assert started.expires_at == to_china_time(NOON + 600)
    assert started.resend_at == to_china_time(NOON + 60)
    code = ihuyi_emulator.last_code_for(MOBILE)
    assert len(code) == 8 and code.isdigit()
    held = await backend.contents()
    assert held
    for secret in (code, MOBILE, "10.1.2.3"):
        assert secret not in held
    assert (await verifier.check(MOBILE, code)).status == "approved"
    assert (await verifier.check(MOBILE, code)).status == "not_found"


async def test_malformed_guesses_count_as_wrong_guesses(
    make: MakeVerifier, ihuyi_emulator: Emulator
) -> None:
    verifier = make()
    await verifier.start(MOBILE)
    guesses = ["", "12", "abcdef", "1234567", "１２３４５６"]  # none is six ASCII digits
    answers = [await verifier.check(MOBILE, guess) for guess in guesses]
    assert [(a.status, a.attempts_left) for a in answers] == [("wrong", n) for n in (4, 3, 2, 1, 0)]
    right = ihuyi_emulator.last_code_for(MOBILE)
    assert (await verifier.check(MOBILE, right)).status == "too_many_attempts"


async def test_a_spent_verification_starts_afresh_with_a_new_code(
    make: MakeVerifier, ihuyi_emulator: Emulator, clock: FakeClock
) -> None:
    verifier = make()
    await verifier.start(MOBILE)
    for _ in range(5):
        await verifier.check(MOBILE, "x")
    assert (await verifier.check(MOBILE, "x")).status == "too_many_attempts"
    clock.advance(60)
    started = await verifier.start(MOBILE)
    assert started.sends == 1
    assert (await verifier.check(MOBILE, "x")).attempts_left == 4
    code = ihuyi_emulator.last_code_for(MOBILE)
    assert (await verifier.check(MOBILE, code)).status == "approved"


async def test_a_code_expires_after_its_lifetime(
    make: MakeVerifier, ihuyi_emulator: Emulator, clock: FakeClock
) -> None:
    verifier = make(lifetime=120)
    started = await verifier.start(MOBILE)
    assert started.expires_at == to_china_time(NOON + 120)
    clock.advance(119.999)
    assert (await verifier.check(MOBILE, "x")).status == "wrong"
    clock.advance(0.001)
    code = ihuyi_emulator.last_code_for(MOBILE)
    assert (await verifier.check(MOBILE, code)).status == "expired"


@pytest.mark.parametrize("resend", ["replace", "keep"])
async def test_resend_spacing_then_the_option_replaces_or_keeps(
    make: MakeVerifier, ihuyi_emulator: Emulator, clock: FakeClock, resend: str
) -> None:
    verifier = make(resend=resend, length=8)
    first = await verifier.start(MOBILE)
    first_code = ihuyi_emulator.last_code_for(MOBILE)
    clock.advance(59)
    with pytest.raises(VerificationRefusedError) as info:
        await verifier.start(MOBILE)
    assert info.value.scope == "resend"
    assert info.value.retry_after == pytest.approx(1.0)
    assert info.value.allowed_at == first.resend_at
    assert len(ihuyi_emulator.messages) == 1
    clock.advance(1)
    assert (await verifier.start(MOBILE)).sends == 2
    second_code = ihuyi_emulator.last_code_for(MOBILE)
    assert second_code != first_code
    if resend == "replace":
        assert (await verifier.check(MOBILE, first_code)).status == "wrong"
        assert (await verifier.check(MOBILE, second_code)).status == "approved"
    else:
        assert (await verifier.check(MOBILE, first_code)).status == "approved"
        assert (await verifier.check(MOBILE, second_code)).status == "not_found"


async def test_sends_per_verification_are_capped_until_it_expires(
    make: MakeVerifier, ihuyi_emulator: Emulator, clock: FakeClock
) -> None:
    verifier = make(max_sends=3)
    for _ in range(3):
        await verifier.start(MOBILE)
        clock.advance(60)
    with pytest.raises(VerificationRefusedError) as info:
        await verifier.start(MOBILE)
    assert info.value.scope == "verification"
    assert info.value.retry_after == pytest.approx(540)  # the last code's expiry
    assert len(ihuyi_emulator.messages) == 3
    clock.advance(540)
    assert (await verifier.start(MOBILE)).sends == 1


async def test_codes_per_number_per_day_then_the_next_china_day(
    make: MakeVerifier, ihuyi_emulator: Emulator, clock: FakeClock
) -> None:
    verifier = make()  # the default: 5 a day, as the provider's 4085 quota
    for _ in range(5):
        await verifier.start(MOBILE)
        code = ihuyi_emulator.last_code_for(MOBILE)
        assert (await verifier.check(MOBILE, code)).status == "approved"
        clock.advance(60)
    with pytest.raises(VerificationRefusedError) as info:
        await verifier.start(MOBILE)
    midnight = NOON + 12 * 3600
    assert info.value.scope == "number"
    assert info.value.retry_after == pytest.approx(midnight - clock.time())
    assert info.value.allowed_at == to_china_time(midnight)
    assert len(ihuyi_emulator.messages) == 5
    clock.set(midnight)
    assert (await verifier.start(MOBILE)).delivery == "sent"


async def test_one_source_cannot_pump_many_numbers(
    make: MakeVerifier, ihuyi_emulator: Emulator
) -> None:
    verifier = make()
    numbers = [f"1390013{i:04d}" for i in range(12)]
    for number in numbers[:10]:
        await verifier.start(number, ip="10.0.0.9")
    with pytest.raises(VerificationRefusedError) as info:
        await verifier.start(numbers[10], ip="10.0.0.9")
    assert info.value.scope == "source"
    assert 0 < info.value.retry_after <= 3600
    for text in (str(info.value), repr(info.value)):
        assert numbers[10] not in text and "10.0.0.9" not in text
    await verifier.start(numbers[10], ip="10.0.0.10")  # another source
    await verifier.start(numbers[11], ip="10.0.0.9", source="device-7")  # source= wins over ip=
    assert len(ihuyi_emulator.messages) == 12


async def test_the_app_wide_ceiling(make: MakeVerifier, ihuyi_emulator: Emulator) -> None:
    verifier = make(limits=VerifyLimits(global_per_hour=3))
    for i in range(3):
        await verifier.start(f"1370013{i:04d}")
    with pytest.raises(VerificationRefusedError) as info:
        await verifier.start("13700139999")
    assert info.value.scope == "global"
    assert len(ihuyi_emulator.messages) == 3


async def test_every_refusal_has_one_shape(make: MakeVerifier, clock: FakeClock) -> None:
    verifier = make(limits=VerifyLimits(per_number_per_day=1, per_source_per_hour=1))
    await verifier.start(MOBILE, ip="10.0.0.1")
    refusals: list[VerificationRefusedError] = []
    for number, ip, seconds in ((MOBILE, "10.0.0.2", 0), (MOBILE, "10.0.0.2", 60),
                                ("13900139000", "10.0.0.1", 0)):
        clock.advance(seconds)
        with pytest.raises(VerificationRefusedError) as info:
            await verifier.start(number, ip=ip)
        refusals.append(info.value)
    assert [r.scope for r in refusals] == ["resend", "number", "source"]
    for refusal in refusals:
        assert str(refusal).startswith("too many verification codes requested; try again in ")
        assert MOBILE not in repr(refusal) and "13900139000" not in repr(refusal)


async def test_a_send_the_provider_refuses_leaves_no_code_no_window_no_count(
    make: MakeVerifier, ihuyi_emulator: Emulator
) -> None:
    verifier = make(limits=VerifyLimits(per_number_per_day=1))
    ihuyi_emulator.set_balance(None, 0)
    with pytest.raises(AccountError):
        await verifier.start(MOBILE)
    assert (await verifier.check(MOBILE, "000000")).status == "not_found"
    ihuyi_emulator.set_balance(None, 10)
    started = await verifier.start(MOBILE)  # not a resend, and the day's one code is still there
    assert started.sends == 1
    code = ihuyi_emulator.last_code_for(MOBILE)
    assert (await verifier.check(MOBILE, code)).status == "approved"


async def test_a_provider_rate_limit_is_a_refusal_and_keeps_the_pending_code(
    make: MakeVerifier, ihuyi_emulator: Emulator, clock: FakeClock
) -> None:
    verifier = make(limits=VerifyLimits(per_number_per_day=None), max_sends=10)
    for _ in range(5):  # the provider's (and the client limiter's) 5 codes a day
        await verifier.start(MOBILE)
        clock.advance(60)
    fifth = ihuyi_emulator.last_code_for(MOBILE)
    with pytest.raises(VerificationRefusedError) as info:
        await verifier.start(MOBILE)
    assert info.value.scope == "provider"
    assert len(ihuyi_emulator.messages) == 5
    assert (await verifier.check(MOBILE, fifth)).status == "approved"


async def test_an_unknown_outcome_keeps_the_code_and_the_window(
    make: MakeVerifier, ihuyi_emulator: Emulator
) -> None:
    verifier = make()
    ihuyi_emulator.faults.add(faults.disconnect(), times=1, method="submit")  # went, answer lost
    started = await verifier.start(MOBILE)
    assert (started.delivery, started.smsid) == ("unknown", None)
    with pytest.raises(VerificationRefusedError) as info:
        await verifier.start(MOBILE)
    assert info.value.scope == "resend"
    code = ihuyi_emulator.last_code_for(MOBILE)  # it did arrive
    assert (await verifier.check(MOBILE, code)).status == "approved"


async def test_send_false_applies_every_limit_and_texts_nothing(
    make: MakeVerifier, ihuyi_emulator: Emulator
) -> None:
    verifier = make()
    started = await verifier.start(MOBILE, send=False)
    assert (started.delivery, started.smsid) == ("not_sent", None)
    with pytest.raises(VerificationRefusedError):
        await verifier.start(MOBILE, send=False)
    assert ihuyi_emulator.requests == []


async def test_workers_share_codes_and_purposes_stay_apart(
    make: MakeVerifier, ihuyi_emulator: Emulator, backend: Backend
) -> None:
    worker_a = make(limits=VerifyLimits(per_number_per_day=1))
    worker_b = make(store=backend.twin())  # another worker: its own store object, same data
    reset = worker_a.for_purpose("reset")
    await worker_a.start(MOBILE)
    code = ihuyi_emulator.last_code_for(MOBILE)
    assert (await reset.check(MOBILE, code)).status == "not_found"
    with pytest.raises(VerificationRefusedError) as info:  # the number's limits are shared
        await reset.start(MOBILE)
    assert info.value.scope == "number"
    assert (await worker_b.check(MOBILE, code)).status == "approved"
    assert (await worker_a.check(MOBILE, code)).status == "not_found"


async def test_fifty_concurrent_checks_of_the_right_code_approve_exactly_once(
    make: MakeVerifier, ihuyi_emulator: Emulator
) -> None:
    verifier = make()
    await verifier.start(MOBILE)
    code = ihuyi_emulator.last_code_for(MOBILE)
    statuses: list[str] = []

    async def check() -> None:
        statuses.append((await verifier.check(MOBILE, code)).status)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(check)
    assert sorted(statuses) == ["approved"] + ["not_found"] * 49


@pytest.mark.parametrize("concurrency", [1, 8, 150])
async def test_brute_force_stops_at_the_budget_whatever_the_concurrency(
    make: MakeVerifier, ihuyi_emulator: Emulator, concurrency: int
) -> None:
    verifier = make()
    await verifier.start(MOBILE)
    code = ihuyi_emulator.last_code_for(MOBILE)
    guesses = [g for g in (f"{i:06d}" for i in range(151)) if g != code][:150]
    gate = anyio.CapacityLimiter(concurrency)
    statuses: list[str] = []

    async def guess(value: str) -> None:
        async with gate:
            statuses.append((await verifier.check(MOBILE, value)).status)

    async with anyio.create_task_group() as tg:
        for value in guesses:
            tg.start_soon(guess, value)
    assert statuses.count("wrong") == 5
    assert statuses.count("too_many_attempts") == 145
    assert (await verifier.check(MOBILE, code)).status == "too_many_attempts"


def test_bad_construction_is_a_value_error(ihuyi_client: IhuyiClient) -> None:
    cases: list[dict[str, object]] = [
        {"secret": "short"},
        {"length": 3},
        {"length": 11},
        {"length": 9},  # a template variable holds 8 characters at most
        {"resend": "sometimes"},
        {"lifetime": 0},
        {"max_attempts": 0},
    ]
    for options in cases:
        with pytest.raises(ValueError):
            Verifier(ihuyi_client, template_id=1, **options)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exactly one"):
        Verifier(ihuyi_client)
    with pytest.raises(ValueError, match="{code}"):
        Verifier(ihuyi_client, content="您的验证码是")
    assert Verifier(ihuyi_client, content="验证码：{code}", length=10).length == 10
    assert "s" * 16 not in repr(Verifier(ihuyi_client, template_id=1, secret="s" * 16))


def test_stores_are_named_in_the_repr(ihuyi_client: IhuyiClient) -> None:
    verifier = Verifier(ihuyi_client, template_id=1, store=MemoryVerifyStore())
    assert "MemoryVerifyStore" in repr(verifier)
    assert RedisVerifyStore.__module__ == "ihuyi_async.verify"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.redis
@pytest.mark.parametrize("gone", ["codes", "limits"])
async def test_redis_unreachable_fails_closed(
    gone: str,
    ihuyi_client: IhuyiClient,
    ihuyi_emulator: Emulator,
    clock: FakeClock,
    redis_url: str,
    redis_prefix: str,
) -> None:
    live = redis.Redis.from_url(redis_url)
    # no retries: a refused connection fails at once (redis-py retries with real sleeps)
    dead = redis.Redis(
        host="127.0.0.1", port=_free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    store = RedisVerifyStore(dead if gone == "codes" else live, prefix=f"{redis_prefix}verify:")
    limits = RedisStore(dead if gone == "limits" else live, prefix=f"{redis_prefix}limits:")
    verifier = Verifier(
        ihuyi_client, template_id=1, clock=clock, store=store, limiter_store=limits
    )
    try:
        with pytest.raises(StoreUnavailableError) as info:
            await verifier.start(MOBILE)
        assert MOBILE not in str(info.value)
        assert ihuyi_emulator.requests == []  # nothing sent
        if gone == "codes":
            assert isinstance(info.value, VerificationUnavailableError)
            with pytest.raises(VerificationUnavailableError):  # nothing approved either
                await verifier.check(MOBILE, "123456")
        else:
            assert isinstance(info.value, LimiterUnavailableError)
            # the issued code was rolled back: no pending code, no record but the secret
            assert (await verifier.check(MOBILE, "123456")).status == "not_found"
            held = {k.decode() async for k in live.scan_iter(match=f"{redis_prefix}*")}
            assert held == {f"{redis_prefix}verify:secret"}
    finally:
        keys = [k async for k in live.scan_iter(match=f"{redis_prefix}*")]
        if keys:
            await live.delete(*keys)
        await live.aclose()
        await dead.aclose()


async def test_an_invalid_number_stores_and_sends_nothing(
    make: MakeVerifier, ihuyi_emulator: Emulator, backend: Backend
) -> None:
    verifier = make()
    for bad in ("12345", "1380013800a", "+1 555 0100", ""):
        with pytest.raises(InvalidRequestError):
            await verifier.start(bad)
        with pytest.raises(InvalidRequestError):
            await verifier.check(bad, "123456")
    assert ihuyi_emulator.requests == []
    assert await backend.contents() == ""


async def test_retry_after_is_exact_on_a_clock_between_milliseconds(
    make: MakeVerifier, clock: FakeClock
) -> None:
    clock.set(NOON + 0.0006)  # rounds up to the next millisecond
    verifier = make()
    await verifier.start(MOBILE)
    with pytest.raises(VerificationRefusedError) as info:
        await verifier.start(MOBILE)
    assert info.value.retry_after == 60.0  # so Retry-After: ceil() is 60, not 61
