"""Fixtures of the store contract suite: one limiter factory per store, real Redis.

Redis tests never skip: without a server (and without ``redis-server`` to start
one) they fail.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as redis
from limiter_support import NOON, MakeLimiter

from ihuyi_async import FakeClock
from ihuyi_async.limiter import Limiter, MemoryStore, RedisStore, Rule, Store


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
    """``make_limiter(rules=None, clock=FakeClock(), **options)`` on the parametrised store."""

    def make(rules: list[Rule] | tuple[Rule, ...] | None = None, **options: Any) -> Limiter:
        options.setdefault("clock", FakeClock(NOON))
        return Limiter(rules, make_store(), **options)

    return make


# -- a private Redis server: for tests that read server-wide counters or flush scripts --


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def private_redis_url() -> Iterator[str]:
    """A redis-server started for this session alone (INFO commandstats, SCRIPT FLUSH)."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed: the private Redis tests cannot run")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    workdir = tempfile.mkdtemp(prefix="ihuyi-limiter-redis-")
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("could not start a private redis-server")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
