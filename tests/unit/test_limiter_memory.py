"""The limiter on the memory store, on asyncio and trio: API, bounds, exports, isolation."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

import ihuyi_async.limiter as limiter_pkg
from ihuyi_async import FakeClock, LimiterUnavailableError, LocalRateLimitError, SystemClock
from ihuyi_async.limiter import (
    Grant,
    Limiter,
    MemoryStore,
    Refusal,
    Rule,
    RuleSet,
    Store,
    provider_rules,
)

pytestmark = pytest.mark.anyio

NOON = 1767240000.0
MOBILE = "13800138000"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_all_is_sorted_and_complete() -> None:
    assert limiter_pkg.__all__ == sorted(limiter_pkg.__all__)
    for name in limiter_pkg.__all__:
        obj = getattr(limiter_pkg, name)
        if isinstance(obj, type):
            assert obj.__module__ == "ihuyi_async.limiter"


def test_the_limiter_stands_alone() -> None:
    """No module of the package imports the client, the transport, testing or httpx;
    redis only inside RedisStore (an optional extra)."""
    package = Path(limiter_pkg.__file__).parent
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert not any(
                    bad in name for bad in ("_client", "_transport", "testing", "httpx")
                ), (
                    path.name,
                    name,
                )
                if name.startswith("redis"):
                    assert node.col_offset > 0, f"{path.name} imports redis at module level"


def test_defaults() -> None:
    limiter = Limiter()
    assert isinstance(limiter.clock, SystemClock) and isinstance(limiter.store, MemoryStore)
    assert (limiter.max_wait, limiter.wait, limiter.fail_open) == (5.0, True, False)
    clock = FakeClock()
    assert Limiter(clock=clock).clock is clock
    assert "per_second" in repr(limiter)
    with pytest.raises(ValueError):
        Limiter(max_wait=-1)
    with pytest.raises(ValueError):
        Limiter(max_wait=7200)
    with pytest.raises(TypeError):
        Limiter(store=object())  # type: ignore[arg-type]


async def test_acquire_and_reservation(anyio_backend: str) -> None:
    clock = FakeClock(NOON, auto_advance=True)
    limiter = Limiter(clock=clock)
    first = await limiter.acquire(MOBILE)
    second = await limiter.acquire(MOBILE)
    assert first.waited == 0.0 and second.waited == pytest.approx(1.2)  # 1 s + the margin
    assert clock.time() == second.send_at
    assert "138****8000" in repr(second) and MOBILE not in repr(second)
    assert second.counted and not second.refunded
    with pytest.raises(TypeError):
        await limiter.acquire(13800138000)  # type: ignore[arg-type]
    stats = limiter.statistics()
    assert (stats.acquired, stats.refused, stats.waiting, stats.tracked_numbers) == (2, 0, 0, 1)


async def test_refusal_repr_and_message(anyio_backend: str) -> None:
    limiter = Limiter(clock=FakeClock(NOON), wait=False)
    await limiter.acquire(MOBILE)
    with pytest.raises(LocalRateLimitError) as info:
        await limiter.acquire(MOBILE)
    exc = info.value
    assert exc.local and exc.code == 4080 and exc.rule == "per_second"
    assert MOBILE not in str(exc) and MOBILE not in repr(exc)
    assert str(exc) == (
        "refused locally: more than 1 message per second to 138****8000 (rule per_second, "
        "provider code 4080); next allowed at 12:00:02 China time, in 1.2 s"
    )
    assert limiter.statistics().refused == 1


async def test_a_local_refusal_says_which_rule_in_its_own_words(anyio_backend: str) -> None:
    """Not the provider's "发送超限([20]条),已加入黑名单" (blacklisted) for a local refusal (#13)."""
    clock = FakeClock(NOON + 123.0)  # 12:02:03 China time
    limiter = Limiter(clock=clock, wait=False)
    for _ in range(2):
        await limiter.acquire(MOBILE, content="same")
        clock.advance(2.0)
    with pytest.raises(LocalRateLimitError) as info:
        await limiter.acquire(MOBILE, content="same")
    exc = info.value
    assert (exc.code, exc.rule, exc.retry_after) == (408, "identical_per_minute", 56.0)
    assert exc.message == "3rd identical message to 138****8000 within a minute"
    assert str(exc) == (
        "refused locally: 3rd identical message to 138****8000 within a minute "
        "(rule identical_per_minute, provider code 408); next allowed at 12:03:03 China time, "
        "in 56 s"
    )
    assert "黑名单" not in str(exc) and MOBILE not in str(exc)
    for _ in range(3):
        await limiter.acquire(MOBILE, content=f"other {clock.time()}")
        clock.advance(2.0)
    with pytest.raises(LocalRateLimitError) as info:
        await limiter.acquire(MOBILE)
    assert str(info.value) == (
        "refused locally: 6th message to 138****8000 today, China time (rule per_day, "
        "provider code 4082); next allowed at 2026-01-02 00:00:00 China time, in 11 h 58 min"
    )


def test_refusal_text_of_a_hand_built_error() -> None:
    exc = LocalRateLimitError(4086, rule="mine", mobile=MOBILE, retry_after=725.0)
    assert str(exc) == (
        "refused locally: a send to 138****8000 (rule mine, provider code 4086); "
        "next allowed in 12 min 5 s"
    )


async def test_memory_is_bounded_idle_numbers_are_dropped(anyio_backend: str) -> None:
    clock = FakeClock(NOON)
    store = MemoryStore()
    limiter = Limiter(store=store, clock=clock, wait=False)
    for i in range(1000):
        await limiter.acquire(f"138{i:08d}", content="x")
    assert store.tracked_numbers == 1000
    for day in range(1, 31):  # a month of new numbers every day
        clock.set(NOON + day * 86400)
        for i in range(100):
            await limiter.acquire(f"139{day:02d}{i:06d}")
        if day >= 4:  # at most two generations (2 x 25 h) of numbers are kept
            assert store.tracked_numbers <= 400
    table = store._table(RuleSet(()))  # another rule set gets its own table
    assert table.tracked == 0
    assert "MemoryStore(tracked_numbers=" in repr(store)


async def test_state_of_a_busy_number_survives_rotation(anyio_backend: str) -> None:
    clock = FakeClock(NOON)
    limiter = Limiter(provider_rules(per_day=2), clock=clock, wait=False)
    await limiter.acquire(MOBILE)
    clock.advance(90000 - 1)  # just before the first generation ends
    await limiter.acquire(MOBILE)
    clock.advance(2)  # rotation: the number was touched, it is kept
    await limiter.acquire(MOBILE)
    with pytest.raises(LocalRateLimitError):
        await limiter.acquire(MOBILE)


class _Down(Store):
    """A store whose backend is always unreachable."""

    async def reserve(self, *args: Any) -> Grant | Refusal:
        raise LimiterUnavailableError("down")

    async def refund(self, *args: Any) -> None:
        raise LimiterUnavailableError("down")

    async def fill(self, *args: Any) -> None:
        raise LimiterUnavailableError("down")

    async def peek(self, *args: Any) -> float:
        raise LimiterUnavailableError("down")


async def test_a_custom_store_and_fail_open(anyio_backend: str) -> None:
    clock = FakeClock(NOON)
    closed = Limiter(store=_Down(), clock=clock)
    with pytest.raises(LimiterUnavailableError):
        await closed.acquire(MOBILE)
    opened = Limiter(store=_Down(), clock=clock, fail_open=True)
    res = await opened.acquire(MOBILE)
    assert not res.counted and res.send_at == NOON
    assert (await opened.next_allowed_at(MOBILE)).timestamp() == NOON
    await opened.aclose()


async def test_custom_rules(anyio_backend: str) -> None:
    clock = FakeClock(NOON)
    rules = [
        Rule.token_bucket("tb", capacity=2, per=10),
        Rule.window("w", 3, 60, code=4086, rolling=False),
    ]
    limiter = Limiter(rules, clock=clock, wait=False)
    await limiter.acquire(MOBILE)
    await limiter.acquire(MOBILE)
    clock.advance(10)
    await limiter.acquire(MOBILE)
    clock.advance(10)
    with pytest.raises(LocalRateLimitError) as info:
        await limiter.acquire(MOBILE)
    assert (info.value.code, info.value.rule, info.value.retry_after) == (4086, "w", 40.0)


async def test_fast_path_matches_the_async_interface(anyio_backend: str) -> None:
    store = MemoryStore()
    rules = RuleSet(provider_rules())
    sel = rules.select(None, False)
    grant = await store.reserve(rules, sel, MOBILE, "", NOON, 0.0)
    assert isinstance(grant, Grant) and grant.send_at == NOON and "Grant(" in repr(grant)
    refusal = await store.reserve(rules, sel, MOBILE, "", NOON, 0.0)
    assert isinstance(refusal, Refusal) and rules.rules[refusal.rule].name == "per_second"
    assert "Refusal(" in repr(refusal)
    await store.refund(rules, sel, MOBILE, "", grant)
    assert await store.peek(rules, sel, MOBILE, "", NOON) == NOON


# ------------------------------------------------------------------ the synchronous fast path (#19)


class _DownNow(MemoryStore):
    """A store whose synchronous reserver finds the store unreachable."""

    def nowait_reserver(self, rules: RuleSet, selected: tuple[int, ...]) -> Any:
        def reserve_now(mobile: str, digest: str, now: float) -> Any:
            raise LimiterUnavailableError("the store is down")

        return reserve_now


@pytest.mark.parametrize("content", ["", "您好"])
async def test_a_synchronous_reserver_that_finds_the_store_down_fails_open_if_asked(content: str) -> None:
    opened = Limiter(store=_DownNow(), clock=FakeClock(NOON), fail_open=True)
    res = await opened.acquire("13800138000", content=content)
    assert not res.counted and opened.statistics().failed_open == 1
    assert not (await opened.try_acquire("13800138000", content=content)).counted  # type: ignore[union-attr]
    closed = Limiter(store=_DownNow(), clock=FakeClock(NOON))
    with pytest.raises(LimiterUnavailableError):
        await closed.acquire("13800138000", content=content)
    with pytest.raises(LimiterUnavailableError):
        await closed.try_acquire("13800138000", content=content)


class _CountingReserve(MemoryStore):
    """A subclass that changes ``reserve`` alone (a wrapper for logging, say)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def reserve(self, *args: Any) -> Any:
        self.calls += 1
        return await super().reserve(*args)


async def test_a_subclass_that_overrides_reserve_alone_sees_every_reserve() -> None:
    store = _CountingReserve()
    assert store.nowait_reserver(RuleSet(provider_rules()), (0,)) is None
    limiter = Limiter(store=store, clock=FakeClock(NOON, auto_advance=True))
    await limiter.acquire("13800138000")
    await limiter.acquire("13800138001", content="您好", kind="verification")
    assert store.calls == 2
    assert MemoryStore().nowait_reserver(RuleSet(provider_rules()), (0,)) is not None
