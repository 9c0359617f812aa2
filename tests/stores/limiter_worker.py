"""One OS process of the multi-process Redis test: 250 concurrent acquires on one number.

Run as ``python limiter_worker.py <redis_url> <prefix> <mobile> <start> <n>``. Waits
(bounded) for the parent's "go" key so that every process fires at once, then prints
one JSON line: the granted turns and the refusal codes. Time is a FakeClock fixed at
``start`` for every process (it jumps when a task sleeps, as in production time moves).
"""

from __future__ import annotations

import json
import sys
import time

import anyio
import redis.asyncio as redis

from ihuyi_async import FakeClock, LocalRateLimitError
from ihuyi_async.limiter import Limiter, RedisStore


async def main(url: str, prefix: str, mobile: str, start: float, n: int) -> None:
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=16, timeout=30)
    client = redis.Redis(connection_pool=pool)
    limiter = Limiter(
        store=RedisStore(client, prefix=prefix), clock=FakeClock(start, auto_advance=True)
    )
    granted: list[float] = []
    codes: list[int] = []

    async def send() -> None:
        try:
            granted.append((await limiter.acquire(mobile)).send_at)
        except LocalRateLimitError as exc:
            codes.append(exc.code)

    await client.incr(f"{prefix}ready")
    deadline = time.monotonic() + 15
    while not await client.exists(f"{prefix}go"):
        if time.monotonic() > deadline:
            raise SystemExit("no go signal")
        await anyio.sleep(0.005)
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(send)
    print(json.dumps({"granted": granted, "codes": codes}))
    await client.aclose()
    await pool.aclose()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
