"""1,000 concurrent pushes, 20 % of them duplicates: each item handled exactly once.

Over a real FastAPI app under uvicorn on loopback (memory and Redis dedupe), over
two receivers sharing one Redis store (two workers), and in-process with every
handler held open until all 1,000 arrived, so duplicates provably overlap.
"""

from __future__ import annotations

import random
import ssl
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import httpx
import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from ihuyi_async.pushes import (
    DedupeStore,
    DeliveryReceipt,
    MemoryDedupe,
    PushReceiver,
    RedisDedupe,
    Reply,
    TemplateReview,
)
from ihuyi_async.testing import (
    PushAnswer,
    post_push,
    receipt_form,
    reply_form,
    template_review_form,
)

from .push_servers import serve_fastapi

pytestmark = pytest.mark.anyio

TOTAL = 1000
UNIQUE = 800
CLIENTS = 20
SSL = ssl.create_default_context()  # loaded once, shared by the clients


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def workload(seed: int = 6) -> list[dict[str, str]]:
    """800 distinct pushes of every kind, plus 200 duplicates, shuffled."""
    rng = random.Random(seed)
    unique: list[dict[str, str]] = []
    for i in range(UNIQUE):
        mobile = f"139{i:08d}"
        if i % 4 == 0:
            unique.append(reply_form(mobile=mobile, content=f"回复{i}：好的", smsid=f"{i:020d}"))
        elif i % 4 == 1:
            unique.append(template_review_form(template_id=i, code=2 if i % 8 == 1 else 0))
        elif i % 4 == 2:
            unique.append(receipt_form(task_id=f"T{i // 40}", mobile=mobile, code=2))
        else:
            unique.append(receipt_form(smsid=f"{i:020d}", mobile=mobile, code=i % 3 or 2))
    forms = unique + [dict(rng.choice(unique)) for _ in range(TOTAL - UNIQUE)]
    rng.shuffle(forms)
    return forms


def identity(form: dict[str, str]) -> str:
    return "|".join(f"{k}={v}" for k, v in sorted(form.items()))


class Tally:
    def __init__(self, gate: anyio.Event | None = None) -> None:
        self.counts: Counter[str] = Counter()
        self.gate = gate

    async def _count(self, raw: dict[str, str]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        await anyio.lowlevel.checkpoint()
        self.counts[identity(raw)] += 1

    async def on_receipt(self, item: DeliveryReceipt) -> None:
        await self._count(dict(item.raw))

    async def on_reply(self, item: Reply) -> None:
        await self._count(dict(item.raw))

    async def on_template_review(self, item: TemplateReview) -> None:
        await self._count(dict(item.raw))

    def receiver(self, store: DedupeStore, *, busy_wait: float) -> PushReceiver:
        return PushReceiver(
            self.on_receipt,
            self.on_reply,
            self.on_template_review,
            dedupe=store,
            busy_wait=busy_wait,
        )


def check(tally: Tally, forms: list[dict[str, str]], answers: list[PushAnswer]) -> None:
    assert len(answers) == TOTAL
    assert all(a.acknowledged for a in answers), Counter((a.status_code, a.body) for a in answers)
    expected = {identity(f) for f in forms}
    assert len(expected) == UNIQUE
    assert set(tally.counts) == expected
    assert set(tally.counts.values()) == {1}


async def post_all(
    clients: list[httpx.AsyncClient], forms: list[dict[str, str]], seed: int = 7
) -> list[PushAnswer]:
    """Post every form at once, each through a client picked at random."""
    rng = random.Random(seed)
    answers: list[PushAnswer] = []

    async def one(form: dict[str, str], client: httpx.AsyncClient) -> None:
        answers.append(await post_push(client, form))

    async with anyio.create_task_group() as tg:
        for form in forms:
            tg.start_soon(one, form, rng.choice(clients))
    return answers


@asynccontextmanager
async def open_redis_store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisDedupe]:
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=64, timeout=30)
    client = Redis(connection_pool=pool)
    try:
        yield RedisDedupe(client, prefix=redis_prefix)
    finally:
        keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        await pool.aclose()


@pytest.fixture
async def redis_store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisDedupe]:
    async with open_redis_store(redis_url, redis_prefix) as store:
        yield store


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def any_store(request: pytest.FixtureRequest) -> AsyncIterator[DedupeStore]:
    if request.param == "memory":
        yield MemoryDedupe()
        return
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    async with open_redis_store(url, prefix) as store:
        yield store


@pytest.mark.slow
async def test_1000_concurrent_over_uvicorn(any_store: DedupeStore) -> None:
    store = any_store
    forms = workload()
    tally = Tally()
    receiver = tally.receiver(store, busy_wait=30)
    async with serve_fastapi(receiver) as url:
        # Several clients: one httpx pool with 1,000 waiting requests is quadratic.
        clients = [
            httpx.AsyncClient(base_url=url, trust_env=False, verify=SSL, timeout=60)
            for _ in range(CLIENTS)
        ]
        try:
            answers = await post_all(clients, forms)
        finally:
            for c in clients:
                await c.aclose()
    check(tally, forms, answers)
    stats = receiver.statistics()
    assert (stats.handled, stats.duplicates, stats.failed, stats.busy) == (UNIQUE, 200, 0, 0)


async def test_1000_concurrent_held_open_in_process() -> None:
    """Every handler waits until all 1,000 arrived: duplicates overlap their first."""
    gate = anyio.Event()
    forms = workload(seed=60)
    tally = Tally(gate)
    receiver = tally.receiver(MemoryDedupe(), busy_wait=60)
    answers: list[PushAnswer] = []
    transport = httpx.ASGITransport(app=receiver)  # in-process: no pool, all 1,000 at once
    async with httpx.AsyncClient(transport=transport, base_url="http://push.test") as client:

        async def one(form: dict[str, str]) -> None:
            answers.append(await post_push(client, form))

        async with anyio.create_task_group() as tg:
            for form in forms:
                tg.start_soon(one, form)
            await anyio.wait_all_tasks_blocked()
            assert answers == [] and not tally.counts  # all in flight, none handled yet
            gate.set()
    check(tally, forms, answers)
    assert receiver.statistics().duplicates == 200


@pytest.mark.redis
async def test_1000_concurrent_across_two_workers_sharing_redis(
    redis_store: RedisDedupe,
) -> None:
    """Two receivers (two workers) share one Redis store; pushes land on either."""
    forms = workload(seed=61)
    tally = Tally()
    workers = [tally.receiver(redis_store, busy_wait=30) for _ in range(2)]
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=w), base_url="http://w")
        for w in workers
    ]
    try:
        answers = await post_all(clients, forms, seed=62)
    finally:
        for c in clients:
            await c.aclose()
    check(tally, forms, answers)
    handled = sum(w.statistics().handled for w in workers)
    duplicates = sum(w.statistics().duplicates for w in workers)
    assert (handled, duplicates) == (UNIQUE, 200)
