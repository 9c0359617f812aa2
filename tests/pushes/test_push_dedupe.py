"""One contract suite over both dedupe stores: memory, and a real Redis.

Redis tests use their own key prefix, delete their keys, and fail (never skip)
when no server can be reached. Time is passed in, as the receiver does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from redis.asyncio import Redis

from ihuyi_async.pushes import ClaimState, DedupeStore, MemoryDedupe, RedisDedupe

pytestmark = pytest.mark.anyio

T0 = 1_767_240_000.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[DedupeStore]:
    if request.param == "memory":
        yield MemoryDedupe()
        return
    redis_url: str = request.getfixturevalue("redis_url")
    redis_prefix: str = request.getfixturevalue("redis_prefix")
    client = Redis.from_url(redis_url)
    try:
        yield RedisDedupe(client, prefix=redis_prefix)
    finally:
        keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_first_claim_wins_then_in_progress(store: DedupeStore) -> None:
    assert await store.claim("k", "a", now=T0, lease=60) is ClaimState.CLAIMED
    assert await store.claim("k", "b", now=T0 + 1, lease=60) is ClaimState.IN_PROGRESS
    assert await store.claim("other", "b", now=T0 + 1, lease=60) is ClaimState.CLAIMED


async def test_complete_marks_done_for_the_window(store: DedupeStore) -> None:
    await store.claim("k", "a", now=T0, lease=60)
    await store.complete("k", "a", now=T0 + 5, ttl=1800)
    assert await store.claim("k", "b", now=T0 + 1804, lease=60) is ClaimState.DONE
    assert await store.claim("k", "b", now=T0 + 1805, lease=60) is ClaimState.CLAIMED


async def test_release_frees_the_item_only_for_its_owner(store: DedupeStore) -> None:
    await store.claim("k", "a", now=T0, lease=60)
    await store.release("k", "intruder")
    assert await store.claim("k", "b", now=T0, lease=60) is ClaimState.IN_PROGRESS
    await store.release("k", "a")
    assert await store.claim("k", "b", now=T0, lease=60) is ClaimState.CLAIMED


async def test_release_never_removes_a_handled_item(store: DedupeStore) -> None:
    await store.claim("k", "a", now=T0, lease=60)
    await store.complete("k", "a", now=T0, ttl=60)
    await store.release("k", "a")
    assert await store.claim("k", "b", now=T0, lease=60) is ClaimState.DONE


async def test_a_claim_lapses_after_its_lease(store: DedupeStore) -> None:
    await store.claim("k", "dead", now=T0, lease=120)
    assert await store.claim("k", "b", now=T0 + 119.5, lease=120) is ClaimState.IN_PROGRESS
    assert await store.claim("k", "b", now=T0 + 120, lease=120) is ClaimState.CLAIMED


async def test_complete_with_zero_ttl_forgets(store: DedupeStore) -> None:
    await store.claim("k", "a", now=T0, lease=60)
    await store.complete("k", "a", now=T0, ttl=0)
    assert await store.claim("k", "b", now=T0, lease=60) is ClaimState.CLAIMED


async def test_stores_satisfy_the_protocol(store: DedupeStore) -> None:
    assert isinstance(store, DedupeStore)


def test_memory_store_evicts_expired_entries() -> None:
    async def main() -> None:
        store = MemoryDedupe()
        for i in range(100):
            await store.claim(f"k{i}", "a", now=T0, lease=10)
            await store.complete(f"k{i}", "a", now=T0, ttl=30)
        assert len(store) == 100
        await store.claim("new", "a", now=T0 + 31, lease=10)
        assert len(store) == 1
        assert repr(store) == "MemoryDedupe(entries=1)"

    anyio.run(main)


@pytest.mark.redis
async def test_redis_keys_are_prefixed_digests_with_a_ttl(
    redis_url: str, redis_prefix: str
) -> None:
    store = RedisDedupe.from_url(redis_url, prefix=redis_prefix)
    client = Redis.from_url(redis_url)
    try:
        await store.claim("receipt:abc", "tok", now=T0, lease=120)
        ttl = await client.pttl(f"{redis_prefix}receipt:abc")
        assert 0 < ttl <= 120_000
        await store.complete("receipt:abc", "tok", now=T0, ttl=1800)
        ttl = await client.pttl(f"{redis_prefix}receipt:abc")
        assert 120_000 < ttl <= 1_800_000
        assert store.prefix == redis_prefix
        assert redis_prefix in repr(store)
    finally:
        await client.delete(f"{redis_prefix}receipt:abc")
        await client.aclose()
        await store.aclose()
