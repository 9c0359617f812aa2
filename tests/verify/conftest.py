"""Fixtures of the verification suites: the same Verifier on memory stores and on a real Redis.

``backend`` is parametrised: ``memory`` (MemoryVerifyStore + the limiter's MemoryStore) and
``redis`` (RedisVerifyStore + the limiter's RedisStore on one client, keys under the test's own
prefix, deleted after). Redis tests never skip: without a server the ``redis_url`` fixture
(tests/conftest.py) starts one, or the run fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis

from ihuyi_async import IhuyiClient
from ihuyi_async.limiter import MemoryStore, RedisStore
from ihuyi_async.testing import Emulator
from ihuyi_async.verify import MemoryVerifyStore, RedisVerifyStore, Verifier

from .verify_support import Backend, MakeVerifier


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _delete_prefix(client: Any, prefix: str) -> None:
    keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield Backend("memory", MemoryVerifyStore(), MemoryStore())
        return
    # a blocking pool: 150 concurrent checks queue for 32 connections instead of failing
    pool = redis.BlockingConnectionPool.from_url(redis_url, max_connections=32, timeout=20)
    client = redis.Redis(connection_pool=pool)
    try:
        await client.ping()
        yield Backend(
            "redis",
            RedisVerifyStore(client, prefix=f"{redis_prefix}verify:"),
            RedisStore(client, prefix=f"{redis_prefix}limits:"),
            client,
            redis_prefix,
        )
    finally:
        await _delete_prefix(client, redis_prefix)
        await client.aclose()
        await pool.aclose()


@pytest.fixture
def make_verifier(
    backend: Backend, ihuyi_client: IhuyiClient, ihuyi_emulator: Emulator
) -> MakeVerifier:
    """``make_verifier(**Verifier keywords)``: the trial template, the emulator's clock, the
    backend's stores (so two verifiers made here share them, as two workers would)."""

    def make(**options: Any) -> Verifier:
        if "content" not in options:
            options.setdefault("template_id", 1)
        options.setdefault("clock", ihuyi_emulator.clock)
        options.setdefault("store", backend.store)
        options.setdefault("limiter_store", backend.limiter_store)
        return Verifier(ihuyi_client, **options)

    return make
