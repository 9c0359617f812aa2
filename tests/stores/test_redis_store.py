"""What only the Redis store promises: one round trip, TTLs, hash tags, scripts, processes."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ihuyi_async import FakeClock, LimiterUnavailableError, LocalRateLimitError
from ihuyi_async._redact import content_digest
from ihuyi_async.limiter import PER_SECOND_MARGIN, Limiter, RedisStore
from ihuyi_async.limiter._redis import load_script

from .limiter_support import NOON

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

MOBILE = "13800138000"


async def _commandstats(client: Any) -> dict[str, int]:
    info = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()}


def _script_commands() -> set[str]:
    """Commands our scripts run inside Redis: counted by INFO, but not round trips."""
    found: set[str] = set()
    for name in ("acquire", "refund", "observe"):
        found |= {c.lower() for c in re.findall(r"redis\.call\('(\w+)'", load_script(name))}
    return found


def _round_trips(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands sent by clients between two snapshots (the INFO calls themselves excluded)."""
    inside = _script_commands()
    return {
        k: after[k] - before.get(k, 0)
        for k in after
        if after[k] != before.get(k, 0) and k != "info" and k not in inside
    }


async def test_one_round_trip_per_acquire_and_refund(private_redis_url: str) -> None:
    client = redis.Redis.from_url(private_redis_url)
    try:
        await client.script_flush()
        clock = FakeClock(NOON, auto_advance=True)
        limiter = Limiter(store=RedisStore(client, prefix="rt:"), clock=clock, wait=False)
        # the first acquire and refund load their scripts once (NOSCRIPT, SCRIPT LOAD)
        await (await limiter.acquire("13000000000")).refund()
        before = await _commandstats(client)
        reservations = [
            await limiter.acquire(f"1310000{i:04d}", content="hi", kind="verification")
            for i in range(100)
        ]
        for i in range(100):
            assert await limiter.try_acquire(f"1310000{i:04d}") is None  # refused: 1 trip too
        middle = await _commandstats(client)
        for res in reservations:
            await res.refund()
        after = await _commandstats(client)
    finally:
        await client.aclose()
    # the scripts did run their commands inside Redis ...
    assert middle["hset"] - before.get("hset", 0) >= 100
    # ... but clients sent exactly one EVALSHA per acquire (granted or refused) and per refund
    assert _round_trips(before, middle) == {"evalsha": 200}
    assert _round_trips(middle, after) == {"evalsha": 100}


async def test_script_reloaded_after_flush(private_redis_url: str) -> None:
    client = redis.Redis.from_url(private_redis_url)
    try:
        limiter = Limiter(
            store=RedisStore(client, prefix="flush:"), clock=FakeClock(NOON), wait=False
        )
        await limiter.acquire("13000000001")
        await client.script_flush()
        await limiter.acquire("13000000002")
        stats = await _commandstats(client)
        assert stats["script|load"] >= 1
    finally:
        await client.aclose()


async def test_keys_hash_tag_ttl_and_no_raw_content(redis_client: Any, redis_prefix: str) -> None:
    limiter = Limiter(store=RedisStore(redis_client, prefix=redis_prefix), clock=FakeClock(NOON))
    await limiter.acquire(MOBILE, content="您的验证码是：1234", kind="verification")
    await limiter.observe_provider_code(MOBILE, 408, content="other text")
    keys = sorted([k.decode() async for k in redis_client.scan_iter(match=f"{redis_prefix}*")])
    digest = content_digest("您的验证码是：1234")
    assert keys == sorted(
        [
            f"{redis_prefix}{{{MOBILE}}}",
            f"{redis_prefix}{{{MOBILE}}}:c:{digest}",
            f"{redis_prefix}{{{MOBILE}}}:c:{content_digest('other text')}",
        ]
    )
    for key in keys:
        ttl = await redis_client.pttl(key)
        assert 0 < ttl <= 86400 * 1000 + 1000  # every key expires, within a day
        dump = json.dumps(
            {k.decode(): v.decode() for k, v in (await redis_client.hgetall(key)).items()}
        )
        assert "1234" not in dump and "验证码" not in dump
    number = await redis_client.hgetall(keys[0])
    assert set(number) == {
        b"per_second",
        b"per_day:w",
        b"per_day:n",
        b"verification_per_day:w",
        b"verification_per_day:n",
    }


async def test_lua_scripts_ship_inside_the_package() -> None:
    for name in ("acquire", "refund", "observe"):
        assert "redis.call" in load_script(name)


async def test_prefix_and_mobile_must_not_break_the_hash_tag(redis_client: Any) -> None:
    with pytest.raises(ValueError):
        RedisStore(redis_client, prefix="a{b}:")
    store = RedisStore(redis_client, prefix="p:")
    with pytest.raises(ValueError):
        store.keys("138{x}")


async def test_server_time_source(redis_client: Any, redis_prefix: str) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix, time_source="server")
    limiter = Limiter(store=store, clock=FakeClock(0.0), wait=False)  # a clock far off
    res = await limiter.acquire(MOBILE)
    assert abs(res.granted_at - time.time()) < 60  # the server's clock was used
    with pytest.raises(LocalRateLimitError) as info:
        await limiter.acquire(MOBILE)
    assert info.value.code == 4080 and 0 < (info.value.retry_after or 0) <= 1 + PER_SECOND_MARGIN


async def test_host_clock_skew_in_caller_mode_and_server_mode(
    redis_client: Any, redis_prefix: str
) -> None:
    """What the docs say about two hosts whose clocks differ by 0.5 s: with the callers'
    time their sends to one number come 0.5 s closer than the spacing; with the server's
    time they keep it (each host's clock only measures the wait)."""
    step = 1 + PER_SECOND_MARGIN
    store = RedisStore(redis_client, prefix=f"{redis_prefix}caller:")
    host_a = Limiter(store=store, clock=FakeClock(NOON, auto_advance=True))
    host_b = Limiter(store=store, clock=FakeClock(NOON + 0.5 + 0.1, auto_advance=True))
    a = await host_a.acquire(MOBILE)  # true time NOON, host A's clock is right
    b = await host_b.acquire(MOBILE)  # true time NOON + 0.1, host B's clock 0.5 s ahead
    assert a.send_at == NOON and b.send_at == pytest.approx(NOON + step)
    b_true = NOON + 0.1 + b.waited  # B sleeps to its turn on its own clock
    assert b_true - a.send_at == pytest.approx(step - 0.5)
    server = RedisStore(redis_client, prefix=f"{redis_prefix}server:", time_source="server")
    host_a = Limiter(store=server, clock=FakeClock(NOON, auto_advance=True))
    host_b = Limiter(store=server, clock=FakeClock(NOON + 1000.0, auto_advance=True))
    a = await host_a.acquire(MOBILE)
    b = await host_b.acquire(MOBILE)  # at once (real time): its wait is on the server's clock
    assert b.send_at - a.send_at == pytest.approx(step, abs=1e-6)
    assert b.waited == pytest.approx(step - (b.granted_at - a.granted_at), abs=1e-6)


async def _unreachable() -> Any:
    # nothing listens on port 1; no retries, so the test does not wait on backoff
    return redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )


async def test_unreachable_redis_fails_closed() -> None:
    client = await _unreachable()
    limiter = Limiter(store=RedisStore(client), clock=FakeClock(NOON))
    try:
        with pytest.raises(LimiterUnavailableError, match="Redis"):
            await limiter.acquire(MOBILE)
        with pytest.raises(LimiterUnavailableError):
            await limiter.next_allowed_at(MOBILE)
        with pytest.raises(LimiterUnavailableError):
            await limiter.observe_provider_code(MOBILE, 4082)
    finally:
        await client.aclose()


async def test_unreachable_redis_fails_open_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    client = await _unreachable()
    limiter = Limiter(store=RedisStore(client), clock=FakeClock(NOON), fail_open=True)
    try:
        with caplog.at_level(logging.WARNING, logger="ihuyi_async.limiter"):
            res = await limiter.acquire(MOBILE)
        assert not res.counted and await res.refund() is False
        assert "failing open for 138****8000" in caplog.text
        assert MOBILE not in caplog.text
        assert limiter.statistics().failed_open == 1
        assert await limiter.observe_provider_code(MOBILE, 4082) == ()
    finally:
        await client.aclose()


@pytest.mark.slow
def test_four_processes_share_one_limit(redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    """4 OS processes x 250 concurrent acquires on one number: 5 for the day, 1 per second
    (turns 1 s + the default margin apart)."""
    worker = Path(__file__).with_name("limiter_worker.py")
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), redis_url, redis_prefix, MOBILE, str(NOON), "250"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(tmp_path),
        )
        for _ in range(4)
    ]
    outputs = []
    try:
        anyio.run(_release, redis_url, redis_prefix, 4)
        for proc in procs:
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        anyio.run(_cleanup, redis_url, redis_prefix)
    granted = sorted(t for o in outputs for t in o["granted"])
    codes = [c for o in outputs for c in o["codes"]]
    assert len(granted) == 5
    assert len(codes) == 995 and set(codes) <= {4080, 4082}
    step = 1 + PER_SECOND_MARGIN  # exact in Redis's microseconds
    assert granted == [NOON + round(i * step * 1e6) / 1e6 for i in range(5)]
    assert all(b - a >= step - 1e-6 for a, b in zip(granted, granted[1:], strict=False))


async def _release(url: str, prefix: str, n: int) -> None:
    client = redis.Redis.from_url(url)
    try:
        with anyio.fail_after(20):
            while int(await client.get(f"{prefix}ready") or 0) < n:  # noqa: ASYNC110 - other processes
                await anyio.sleep(0.01)
        await client.set(f"{prefix}go", "1", ex=60)
    finally:
        await client.aclose()


async def _cleanup(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
