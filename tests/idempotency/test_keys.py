"""Idempotency keys (#16): one contract, run against the memory store and a real Redis.

Every rule of the issue: the first call sends, a later one replays; a first call that
provably did not send leaves the key free; an unknown outcome stays unknown; other
parameters are refused; in-flight calls wait or are refused; a dead owner's claim
turns unknown after its lease; bad keys fail before anything; Redis down fails closed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
import redis.asyncio as redis

import ihuyi_async as ih
from ihuyi_async import FakeClock, IhuyiClient
from ihuyi_async.idempotency import KeyStore, MemoryKeyStore, RedisKeyStore
from ihuyi_async.idempotency._store import fingerprint, hash_key
from ihuyi_async.limiter import Limiter

pytestmark = pytest.mark.anyio

TEXT = "您的验证码是：1234。请不要把验证码泄露给其他人。"
NOW = 1767240000
SMSID = "16842079209571524017"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[KeyStore]:
    if request.param == "memory":
        yield MemoryKeyStore(clock=FakeClock(NOW))
        return
    client = redis.Redis.from_url(redis_url)
    try:
        yield RedisKeyStore(client, prefix=redis_prefix)
    finally:
        keys = [k async for k in client.scan_iter(match=f"{redis_prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


class Server:
    """A mock provider: answers with ``respond`` (default: accepted), counts requests."""

    def __init__(self, respond: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests = 0
        self.arrived = anyio.Event()
        self.gate: anyio.Event | None = None
        self.respond = respond or (
            lambda r: httpx.Response(200, json={"code": 2, "msg": "提交成功", "smsid": SMSID})
        )

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        return self.respond(request)


async def _end_lease(store: KeyStore, hashed: str) -> None:
    """End a claim's lease: the memory store's clock moves on; in Redis, rewind the lease end."""
    if isinstance(store, MemoryKeyStore):
        clock = store._clock
        assert isinstance(clock, FakeClock)
        clock.advance(store.lease + 1)
    else:
        assert isinstance(store, RedisKeyStore)
        await store._client.hset(store._key(hashed), "u", 0)


def client_for(server: Server, store: KeyStore, **kw: Any) -> IhuyiClient:
    kw.setdefault("limiter", None)
    return IhuyiClient(
        "APIID",
        "KEY",
        transport=httpx.MockTransport(server),
        clock=FakeClock(NOW, auto_advance=True),
        idempotency=store,
        **kw,
    )


async def test_second_call_replays_the_first_result(store: KeyStore) -> None:
    server = Server()
    async with client_for(server, store) as client:
        first = await client.send("13800138000", TEXT, idempotency_key="order-1")
        second = await client.send("13800138000", TEXT, idempotency_key="order-1")
        other = await client.send("13800138000", TEXT, idempotency_key="order-2")
    assert server.requests == 2
    assert not first.replayed and second.replayed and not other.replayed
    assert (second.smsid, second.segments, second.sent_at) == (first.smsid, first.segments, first.sent_at)
    assert second.mobile == "13800138000" and "replayed=True" in repr(second)


async def test_template_sends_take_keys_too(store: KeyStore) -> None:
    server = Server()
    async with client_for(server, store, flavour="json") as client:
        await client.send_template("13800138000", template_id=1, variables=["1234"], idempotency_key="k")
        again = await client.send_template(
            "13800138000", template_id=1, variables=["1234"], idempotency_key="k"
        )
        with pytest.raises(ih.IdempotencyKeyReuseError):
            await client.send_template(
                "13800138000", template_id=1, variables=["9999"], idempotency_key="k"
            )
    assert server.requests == 1 and again.replayed and again.template_id == 1


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json={"code": 4030, "msg": "手机号码已被列入黑名单"}),  # rejected
        httpx.Response(200, json={"code": 4080, "msg": "同一手机号码同一秒钟之内发送频率不能超过1条"}),
    ],
)
async def test_a_rejected_first_call_leaves_the_key_free(store: KeyStore, answer: httpx.Response) -> None:
    answers = [answer]
    server = Server(
        lambda r: answers.pop()
        if answers
        else httpx.Response(200, json={"code": 2, "msg": "提交成功", "smsid": SMSID})
    )
    async with client_for(server, store) as client:
        with pytest.raises(ih.ApiError):
            await client.send("13800138000", TEXT, idempotency_key="k")
        sent = await client.send("13800138000", TEXT, idempotency_key="k")
    assert server.requests == 2 and not sent.replayed


async def test_not_sent_leaves_the_key_free(store: KeyStore) -> None:
    calls = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json={"code": 2, "msg": "提交成功", "smsid": SMSID})

    server = Server(flaky)
    retry = ih.RetryPolicy(max_attempts=1, retry_unsent_sends=False)
    async with client_for(server, store, retry=retry) as client:
        with pytest.raises(ih.TransportError):
            await client.send("13800138000", TEXT, idempotency_key="k")
        assert (await client.send("13800138000", TEXT, idempotency_key="k")).smsid == SMSID


async def test_a_local_refusal_leaves_the_key_free(store: KeyStore) -> None:
    clock = FakeClock(NOW, auto_advance=True)
    limiter = Limiter(clock=clock, wait=False)
    server = Server()
    async with client_for(server, store, limiter=limiter) as client:
        await client.send("13800138000", TEXT, idempotency_key="a")
        with pytest.raises(ih.LocalRateLimitError):  # the per-second rule, not waited
            await client.send("13800138000", TEXT, idempotency_key="b")
        clock.advance(2)
        assert not (await client.send("13800138000", TEXT, idempotency_key="b")).replayed
    assert server.requests == 2


async def test_an_unknown_outcome_stays_unknown(store: KeyStore) -> None:
    server = Server(lambda r: httpx.Response(502, text="bad gateway"))
    async with client_for(server, store) as client:
        with pytest.raises(ih.DeliveryUnknownError) as first:
            await client.send("13800138000", TEXT, idempotency_key="k")
        with pytest.raises(ih.DeliveryUnknownError) as again:
            await client.send("13800138000", TEXT, idempotency_key="k")
    assert server.requests == 1
    assert again.value.reason == first.value.reason == "http_status"
    assert "not sent again" in str(again.value)


async def test_same_key_other_parameters_is_refused_at_once(store: KeyStore) -> None:
    server = Server()
    async with client_for(server, store) as client:
        await client.send("13800138000", TEXT, idempotency_key="k")
        with pytest.raises(ih.IdempotencyKeyReuseError):
            await client.send("13800138001", TEXT, idempotency_key="k")
        with pytest.raises(ih.IdempotencyKeyReuseError):
            await client.send("13800138000", TEXT + "!", idempotency_key="k")
        with pytest.raises(ih.IdempotencyKeyReuseError):
            await client.send("13800138000", TEXT, kind="verification", idempotency_key="k")
    assert server.requests == 1


@pytest.mark.parametrize("key", ["", "   ", "x" * 201, 42, None.__class__])
async def test_bad_keys_fail_before_anything(store: KeyStore, key: Any) -> None:
    limiter = Limiter(clock=FakeClock(NOW))
    server = Server()
    async with client_for(server, store, limiter=limiter) as client:
        with pytest.raises((ValueError, TypeError), match="idempotency_key"):
            await client.send("13800138000", TEXT, idempotency_key=key)
    assert server.requests == 0 and limiter.statistics().acquired == 0


async def test_fifty_concurrent_calls_with_one_key_send_once(store: KeyStore) -> None:
    server = Server()
    server.gate = anyio.Event()
    results: list[ih.SendResult] = []
    async with client_for(server, store) as client:

        async def one() -> None:
            results.append(await client.send("13800138000", TEXT, idempotency_key="burst"))

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(one)
            with anyio.fail_after(5):
                await server.arrived.wait()
                await anyio.wait_all_tasks_blocked()  # the others have claimed and wait
            server.gate.set()
    assert server.requests == 1
    assert len(results) == 50 and sum(not r.replayed for r in results) == 1
    assert {r.smsid for r in results} == {SMSID}


async def _send_keyed(client: IhuyiClient, key: str) -> None:
    await client.send("13800138000", TEXT, idempotency_key=key)


async def test_in_progress_is_refused_when_not_waiting(store: KeyStore) -> None:
    server = Server()
    server.gate = anyio.Event()
    async with client_for(server, store, idempotency_wait=False) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_send_keyed, client, "k")
            with anyio.fail_after(5):
                await server.arrived.wait()
            with pytest.raises(ih.IdempotencyInProgressError, match="still in flight"):
                await client.send("13800138000", TEXT, idempotency_key="k")
            server.gate.set()
    assert server.requests == 1


async def test_a_dead_owner_turns_unknown_after_its_lease(store: KeyStore) -> None:
    hashed = hash_key("k")
    claim = await store.claim(hashed, fingerprint("13800138000", None, None, TEXT), "dead-worker")
    assert claim.state == "claimed"
    await store.mark_sending(hashed, "dead-worker")  # it died with its request on the way
    server = Server()
    async with client_for(server, store, idempotency_wait=False) as client:
        with pytest.raises(ih.IdempotencyInProgressError):
            await client.send("13800138000", TEXT, idempotency_key="k")
        await _end_lease(store, hashed)
        with pytest.raises(ih.DeliveryUnknownError) as caught:
            await client.send("13800138000", TEXT, idempotency_key="k")
        with pytest.raises(ih.DeliveryUnknownError):
            await client.send("13800138000", TEXT, idempotency_key="k")
    assert caught.value.reason == "owner_lost" and server.requests == 0


async def test_cancelled_before_the_wire_leaves_the_key_free(store: KeyStore) -> None:
    clock = FakeClock(NOW)
    limiter = Limiter(clock=clock)  # waits the per-second turn on the fake clock
    server = Server()
    async with client_for(server, store, limiter=limiter) as client:
        await client.send("13800138000", TEXT, idempotency_key="first")
        with anyio.move_on_after(0.2):  # waits for its turn, which never comes: cancelled
            await client.send("13800138000", TEXT, idempotency_key="second")
        clock.advance(2)
        again = await client.send("13800138000", TEXT, idempotency_key="second")
    assert not again.replayed and server.requests == 2


async def test_stores_keep_hashes_not_keys_numbers_or_content(
    redis_url: str, redis_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        store = RedisKeyStore(client, prefix=redis_prefix)
        async with client_for(Server(), store) as ih_client:
            await ih_client.send("13800138000", TEXT, idempotency_key="order-77")
        keys = [k async for k in client.scan_iter(match=f"{redis_prefix}*")]
        assert len(keys) == 1 and b"order-77" not in keys[0]
        assert keys[0].endswith(b"}") and b"{" in keys[0]  # hash-tagged
        stored = await client.hgetall(keys[0])
        blob = b" ".join(v if isinstance(v, bytes) else str(v).encode() for v in stored.values())
        assert b"13800138000" not in blob and TEXT.encode() not in blob
        record = json.loads(stored[b"r"])
        assert record["s"] == "accepted" and record["smsid"] == SMSID
        ttl = await client.pttl(keys[0])
        assert 0 < ttl <= 24 * 3600 * 1000
    finally:
        keys = [k async for k in client.scan_iter(match=f"{redis_prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_redis_down_fails_closed() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    server = Server()
    limiter = Limiter(clock=FakeClock(NOW))
    try:
        async with client_for(server, RedisKeyStore(dead), limiter=limiter) as client:
            with pytest.raises(ih.KeyStoreUnavailableError):
                await client.send("13800138000", TEXT, idempotency_key="k")
    finally:
        await dead.aclose()
    assert server.requests == 0 and limiter.statistics().acquired == 0
    assert issubclass(ih.KeyStoreUnavailableError, ih.StoreUnavailableError)
    assert issubclass(ih.LimiterUnavailableError, ih.StoreUnavailableError)


def test_a_lease_shorter_than_a_send_is_refused() -> None:
    with pytest.raises(ValueError, match="lease"):
        IhuyiClient("APIID", "KEY", idempotency=MemoryKeyStore(lease=10))
    with pytest.raises(ValueError, match="lease"):
        IhuyiClient("APIID", "KEY", timeout=None, idempotency=MemoryKeyStore())
    with pytest.raises(ValueError, match="ttl"):
        MemoryKeyStore(ttl=0)


async def test_a_dead_owner_that_never_started_sending_frees_the_key(store: KeyStore) -> None:
    """A worker killed while its keyed send waited for its turn sent nothing: after the lease,
    the next call with the key takes it over and sends, once."""
    hashed = hash_key("k")
    await store.claim(hashed, fingerprint("13800138000", None, None, TEXT), "dead-worker")
    server = Server()
    async with client_for(server, store, idempotency_wait=False) as client:
        with pytest.raises(ih.IdempotencyInProgressError):
            await client.send("13800138000", TEXT, idempotency_key="k")
        await _end_lease(store, hashed)
        sent = await client.send("13800138000", TEXT, idempotency_key="k")
        again = await client.send("13800138000", TEXT, idempotency_key="k")
    assert not sent.replayed and again.replayed and server.requests == 1


async def test_a_keyed_send_is_marked_sending_before_it_leaves(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    marked: list[int] = []
    server = Server()
    original = store.mark_sending

    async def spy(key: str, owner: str) -> None:
        marked.append(server.requests)
        await original(key, owner)

    monkeypatch.setattr(store, "mark_sending", spy)
    async with client_for(server, store) as client:
        await client.send("13800138000", TEXT, idempotency_key="k")
    assert marked == [0]  # once, before the server had the request
