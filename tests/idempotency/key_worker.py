"""One worker process of the cross-process idempotency test: N concurrent keyed sends."""

from __future__ import annotations

import json
import sys
import time

import anyio
import redis.asyncio as redis

import ihuyi_async as ih
from ihuyi_async.idempotency import RedisKeyStore


async def main(base_url: str, redis_url: str, prefix: str, start_at: float, calls: int) -> None:
    client_redis = redis.Redis.from_url(redis_url)
    store = RedisKeyStore(client_redis, prefix=prefix)
    outcomes: list[str] = []
    async with ih.IhuyiClient(
        "APIID", "KEY", base_url=base_url, limiter=None, idempotency=store
    ) as client:
        await anyio.sleep(max(0.0, start_at - time.time()))  # a start barrier for all processes

        async def one() -> None:
            try:
                sent = await client.send("13800138000", "您的验证码是：1234。", idempotency_key="shared")
                outcomes.append("replayed" if sent.replayed else "sent")
            except ih.IhuyiError as exc:
                outcomes.append(type(exc).__name__)

        async with anyio.create_task_group() as tg:
            for _ in range(calls):
                tg.start_soon(one)
    await client_redis.aclose()
    print(json.dumps(outcomes))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
