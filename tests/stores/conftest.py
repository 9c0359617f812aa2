"""Fixtures of the store contract suite: one limiter factory per store, real Redis.

Redis tests never skip: without a server (and without ``redis-server`` to start
one) they fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
import redis.asyncio as redis

from ihuyi_async import FakeClock
from ihuyi_async.limiter import Limiter, MemoryStore, RedisStore, Rule, Store

from .limiter_support import NOON, MakeLimiter, rules


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _delete_prefix(client: Any, prefix: str) -> None:
    keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def redis_client(redis_url: str, redis_prefix: str) -> AsyncIterator[Any]:
    """A ``redis.asyncio`` client on the suite's server; the test's keys are deleted after."""
    # a blocking pool: 1,000 concurrent acquires queue for 32 connections instead of failing
    pool = redis.BlockingConnectionPool.from_url(redis_url, max_connections=32, timeout=20)
    client = redis.Redis(connection_pool=pool)
    try:
        await client.ping()
        yield client
    finally:
        await _delete_prefix(client, redis_prefix)
        await client.aclose()
        await pool.aclose()


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "redis":
        request.applymarker(pytest.mark.redis)
    return kind


@pytest.fixture
def make_store(
    store_kind: str, request: pytest.FixtureRequest, redis_prefix: str
) -> Callable[[], Store]:
    client = request.getfixturevalue("redis_client") if store_kind == "redis" else None

    def make() -> Store:
        if client is None:
            return MemoryStore()
        return RedisStore(client, prefix=redis_prefix)

    return make


@pytest.fixture
def make_limiter(make_store: Callable[[], Store]) -> MakeLimiter:
    """``make_limiter(rules=None, clock=FakeClock(), **options)`` on the parametrised store;
    ``rules=None`` means the provider's rules with the suites' margin (``limiter_support``)."""

    def make(chosen: list[Rule] | tuple[Rule, ...] | None = None, **options: Any) -> Limiter:
        options.setdefault("clock", FakeClock(NOON))
        return Limiter(rules() if chosen is None else chosen, make_store(), **options)

    return make


# -- a private Redis server: for tests that read server-wide counters or flush scripts --


@pytest.fixture(scope="session")
def private_redis_url(
    start_private_redis: Callable[[], AbstractContextManager[int]],
) -> Iterator[str]:
    """A redis-server started for this session alone (INFO commandstats, SCRIPT FLUSH)."""
    with start_private_redis() as port:
        yield f"redis://127.0.0.1:{port}/0"
