"""The one Redis script helper every Redis-backed store runs its Lua through (#15)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from ihuyi_async import KeyStoreUnavailableError, LimiterUnavailableError, StoreUnavailableError
from ihuyi_async._redis_scripts import Script, run
from ihuyi_async.idempotency import RedisKeyStore
from ihuyi_async.limiter import Limiter, RedisStore
from ihuyi_async.pushes import RedisDedupe

pytestmark = pytest.mark.anyio


async def test_a_flushed_script_is_loaded_again(private_redis_url: str) -> None:
    client: Any = Redis.from_url(private_redis_url)
    try:
        script = Script("ihuyi_async.pushes", "dedupe_release")
        await client.script_flush()
        key = f"scripts:{uuid.uuid4().hex}"
        assert await run(client, script, [key], ["t"], error=StoreUnavailableError, what="x") == 0
        assert await client.script_exists(script.sha) == [True]
    finally:
        await client.aclose()


async def test_every_store_raises_its_own_error_when_redis_is_gone() -> None:
    # a port nothing listens on (loopback): every call fails at connect
    client: Any = Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    try:
        with pytest.raises(StoreUnavailableError, match="push dedupe store"):
            await RedisDedupe(client).claim("k", "t", now=0.0, lease=1.0)
        with pytest.raises(KeyStoreUnavailableError, match="idempotency key store"):
            await RedisKeyStore(client).claim("k", "f", "o")
        with pytest.raises(LimiterUnavailableError, match="limiter's Redis store"):
            await Limiter(store=RedisStore(client)).acquire("13800138000")
    finally:
        await client.aclose()
