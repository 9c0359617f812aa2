"""send_many(idempotency_keys=True) (#16): message ids as idempotency keys, so two runs of one
batch (two hosts, or a rerun elsewhere) send each message once, through a shared key store."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs

import anyio
import anyio.lowlevel
import httpx
import pytest
import redis.asyncio as redis

import ihuyi_async as ih
from ihuyi_async import FakeClock, IhuyiClient
from ihuyi_async.idempotency import KeyStore, MemoryKeyStore, RedisKeyStore

pytestmark = pytest.mark.anyio

TEXT = "您的订单已发货，请查收。"
SMSID = "16842079209571524017"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Server:
    """A mock provider: accepts everything, counts requests by number, lets others run."""

    def __init__(self) -> None:
        self.by_number: Counter[str] = Counter()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode())
        self.by_number[form["mobile"][0]] += 1
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        return httpx.Response(200, json={"code": 2, "msg": "提交成功", "smsid": SMSID})


def client_for(server: Server, store: KeyStore) -> IhuyiClient:
    return IhuyiClient(
        "APIID",
        "KEY",
        transport=httpx.MockTransport(server),
        clock=FakeClock(1767240000, auto_advance=True),
        limiter=None,
        idempotency=store,
    )


def messages(n: int = 200) -> list[ih.Message]:
    return [ih.Message(f"139{i:08d}", TEXT, id=f"order-{i}") for i in range(n)]


async def run_batch(server: Server, store: KeyStore, into: list[ih.Outcome], reverse: bool = False) -> None:
    msgs = messages()[::-1] if reverse else messages()
    async with client_for(server, store) as client:
        into.extend([o async for o in client.send_many(msgs, concurrency=20, idempotency_keys=True)])


async def two_runs_at_once(store: KeyStore) -> tuple[Server, list[ih.Outcome], list[ih.Outcome]]:
    server = Server()
    first: list[ih.Outcome] = []
    second: list[ih.Outcome] = []
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_batch, server, store, first)
            tg.start_soon(run_batch, server, store, second, True)  # from the other end: they meet
    return server, first, second


def assert_each_sent_once(server: Server, first: list[ih.Outcome], second: list[ih.Outcome]) -> None:
    assert sum(server.by_number.values()) == 200
    assert set(server.by_number.values()) == {1}
    assert len(first) == len(second) == 200
    by_id: dict[str, list[str]] = {}
    for outcome in [*first, *second]:
        assert outcome.message is not None
        by_id.setdefault(str(outcome.message.id), []).append(outcome.status)
    assert len(by_id) == 200
    for statuses in by_id.values():
        assert sorted(statuses) == ["accepted", "already_accepted"]
    replayed = [o for o in [*first, *second] if o.status == "already_accepted"]
    assert all(o.ok and o.result is not None and o.result.replayed and o.smsid == SMSID for o in replayed)


async def test_two_runs_of_one_batch_over_one_memory_store_send_each_message_once() -> None:
    server, first, second = await two_runs_at_once(MemoryKeyStore())
    assert_each_sent_once(server, first, second)
    # both runs really sent: the work was shared, not done by one while the other waited
    assert any(o.status == "accepted" for o in first) and any(o.status == "accepted" for o in second)


@pytest.fixture
async def redis_store(redis_url: str, redis_prefix: str) -> AsyncIterator[KeyStore]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield RedisKeyStore(client, prefix=redis_prefix)
    finally:
        keys = [k async for k in client.scan_iter(match=f"{redis_prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_two_runs_of_one_batch_over_redis_send_each_message_once(redis_store: KeyStore) -> None:
    server, first, second = await two_runs_at_once(redis_store)
    assert_each_sent_once(server, first, second)


async def test_a_rerun_elsewhere_without_the_journal_sends_nothing() -> None:
    store, server = MemoryKeyStore(), Server()
    done: list[ih.Outcome] = []
    await run_batch(server, store, done)
    again: list[ih.Outcome] = []
    await run_batch(server, store, again)  # another client, no journal: only the keys know
    assert sum(server.by_number.values()) == 200
    assert Counter(o.status for o in again) == {"already_accepted": 200}


async def test_messages_without_id_are_refused_before_anything_is_sent() -> None:
    server = Server()
    msgs = [*messages(3), ih.Message("13900000009", TEXT)]
    async with client_for(server, MemoryKeyStore()) as client:
        with pytest.raises(ValueError, match="needs an id on every message; message 3 has none"):
            client.send_many(msgs, idempotency_keys=True)

        def lazily() -> Iterator[ih.Message]:
            yield from msgs

        got = [o async for o in client.send_many(lazily(), idempotency_keys=True)]
    assert [o.status for o in sorted(got, key=lambda o: o.index)] == ["accepted"] * 3 + ["invalid"]
    assert "needs an id" in str(got[-1].error) or any("needs an id" in str(o.error) for o in got)
    assert "13900000009" not in server.by_number


async def test_an_id_used_for_another_message_is_a_conflict_and_an_unknown_stays_unknown() -> None:
    store, server = MemoryKeyStore(), Server()
    async with client_for(server, store) as client:
        await client.send("13900000001", TEXT, idempotency_key="order-1")
        msgs = [ih.Message("13900000002", TEXT, id="order-1")]
        got = [o async for o in client.send_many(msgs, idempotency_keys=True)]
    assert [o.status for o in got] == ["conflict"]
    assert isinstance(got[0].error, ih.IdempotencyKeyReuseError)
    assert sum(server.by_number.values()) == 1

    def lost(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("lost after write", request=request)

    async with IhuyiClient(
        "APIID", "KEY", transport=httpx.MockTransport(lost), limiter=None, idempotency=store
    ) as client:
        msgs = [ih.Message("13900000003", TEXT, id="order-3")]
        first = [o async for o in client.send_many(msgs, idempotency_keys=True)]
        again = [o async for o in client.send_many(msgs, idempotency_keys=True)]
    assert [o.status for o in first] == ["unknown"]
    assert [o.status for o in again] == ["unknown"]  # replayed by its key: never resent
    assert isinstance(again[0].error, ih.DeliveryUnknownError)


async def test_a_key_still_in_flight_elsewhere_is_in_progress() -> None:
    gate = anyio.Event()
    arrived = anyio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        arrived.set()
        await gate.wait()
        return httpx.Response(200, json={"code": 2, "msg": "提交成功", "smsid": SMSID})

    store = MemoryKeyStore()
    async with IhuyiClient(
        "APIID", "KEY", transport=httpx.MockTransport(slow), limiter=None, idempotency=store,
        idempotency_wait=False,
    ) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: client.send("13900000001", TEXT, idempotency_key="order-1"))
            with anyio.fail_after(5):
                await arrived.wait()
            msgs = [ih.Message("13900000001", TEXT, id="order-1")]
            got = [o async for o in client.send_many(msgs, idempotency_keys=True)]
            gate.set()
    assert [o.status for o in got] == ["in_progress"]
    assert isinstance(got[0].error, ih.IdempotencyInProgressError) and not got[0].ok
