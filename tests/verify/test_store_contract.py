"""One contract suite over the verification stores: memory and a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio as redis

from ihuyi_async.verify import (
    Issued,
    MemoryVerifyStore,
    Policy,
    RedisVerifyStore,
    TooSoon,
    VerifyStore,
)

pytestmark = pytest.mark.anyio

POLICY = Policy(lifetime_ms=600_000, resend_ms=60_000, max_sends=5, max_attempts=5, keep=False)
T0 = 1_767_240_000_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[VerifyStore]:
    if request.param == "memory":
        yield MemoryVerifyStore()
        return
    client = redis.Redis.from_url(redis_url)
    try:
        yield RedisVerifyStore(client, prefix=redis_prefix)
    finally:
        keys = [k async for k in client.scan_iter(match=f"{redis_prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_right_code_is_approved_once(store: VerifyStore) -> None:
    assert isinstance(await store.start("n1", "h1", T0, POLICY), Issued)
    assert (await store.check("n1", "h1", T0 + 1, POLICY)).status == "approved"
    assert (await store.check("n1", "h1", T0 + 2, POLICY)).status == "not_found"


async def test_wrong_guesses_stop_after_the_budget(store: VerifyStore) -> None:
    await store.start("n1", "h1", T0, POLICY)
    answers = [await store.check("n1", "bad", T0 + i, POLICY) for i in range(5)]
    assert [(a.status, a.attempts_left) for a in answers] == [("wrong", 4 - i) for i in range(5)]
    assert (await store.check("n1", "h1", T0 + 10, POLICY)).status == "too_many_attempts"


async def test_expiry_and_resend_spacing(store: VerifyStore) -> None:
    await store.start("n1", "h1", T0, POLICY)
    refused = await store.start("n1", "h2", T0 + 59_999, POLICY)
    assert refused == TooSoon(T0 + 60_000, "resend")
    assert (await store.check("n1", "h1", T0 + 600_000, POLICY)).status == "expired"


async def test_resend_replaces_the_code_and_keeps_the_guess_count(store: VerifyStore) -> None:
    await store.start("n1", "h1", T0, POLICY)
    await store.check("n1", "bad", T0 + 1, POLICY)
    issued = await store.start("n1", "h2", T0 + 60_000, POLICY)
    assert isinstance(issued, Issued) and issued.sends == 2
    assert (await store.check("n1", "h1", T0 + 60_001, POLICY)).attempts_left == 3
    assert (await store.check("n1", "h2", T0 + 60_002, POLICY)).status == "approved"


async def test_rollback_leaves_nothing_behind(store: VerifyStore) -> None:
    issued = await store.start("n1", "h1", T0, POLICY)
    assert isinstance(issued, Issued)
    await store.rollback("n1", "h1", issued.undo)
    assert (await store.check("n1", "h1", T0 + 1, POLICY)).status == "not_found"
    assert isinstance(await store.start("n1", "h2", T0 + 2, POLICY), Issued)


async def test_fifty_concurrent_right_checks_approve_once(store: VerifyStore) -> None:
    await store.start("n1", "h1", T0, POLICY)
    statuses: list[str] = []

    async def one() -> None:
        statuses.append((await store.check("n1", "h1", T0 + 1, POLICY)).status)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(one)
    assert sorted(statuses) == ["approved"] + ["not_found"] * 49


async def test_brute_force_stops_at_the_budget_whatever_the_concurrency(store: VerifyStore) -> None:
    await store.start("n1", "right", T0, POLICY)
    statuses: list[str] = []

    async def guess(i: int) -> None:
        statuses.append((await store.check("n1", f"wrong{i}", T0 + 1, POLICY)).status)

    async with anyio.create_task_group() as tg:
        for i in range(100):
            tg.start_soon(guess, i)
    assert statuses.count("wrong") == 5
    assert statuses.count("too_many_attempts") == 95
    assert (await store.check("n1", "right", T0 + 2, POLICY)).status == "too_many_attempts"
