"""Marketing (#17): ``send_many`` over chunks of numbers, and idempotency keys per chunk."""

from __future__ import annotations

import datetime as _dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

import ihuyi_async as ih
from ihuyi_async import FakeClock, MarketingSmsClient, Outcome
from ihuyi_async.pushes import DeliveryReceipt, parse_push
from ihuyi_async.testing import Emulator

pytestmark = pytest.mark.anyio

ACCOUNT, KEY = "YX-APIID", "YX-KEY"
START = 1_700_000_000.0
CST = _dt.timezone(_dt.timedelta(hours=8))
OK = b'{"code":2,"msg":"ok","smsid":"%d"}'


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def numbers(count: int, base: int = 13900000000) -> list[str]:
    return [str(base + i) for i in range(count)]


def emulator() -> Emulator:
    return Emulator({ACCOUNT: KEY}, 10_000, clock=FakeClock(START), products={ACCOUNT: "marketing"})


def client_for(em: Emulator, chunk_size: int = 500) -> MarketingSmsClient:
    return MarketingSmsClient(
        ACCOUNT, KEY, transport=em.transport, clock=em.clock, limiter=None, chunk_size=chunk_size
    )


class Provider:
    """A mock provider: the answers in order (then accepted), every request's ``mobile``."""

    def __init__(self, *answers: bytes) -> None:
        self.answers = list(answers)
        self.mobiles: list[str] = []
        self.serial = 10_000_000_000_000_000_000

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.mobiles.append(dict(parse_qsl(request.content.decode()))["mobile"])
        self.serial += 1
        body = self.answers.pop(0) if self.answers else OK % self.serial
        return httpx.Response(200, content=body)


def mock_client(provider: Provider, chunk_size: int = 500) -> MarketingSmsClient:
    return MarketingSmsClient(
        ACCOUNT,
        KEY,
        transport=httpx.MockTransport(provider),
        clock=FakeClock(START),
        limiter=None,
        chunk_size=chunk_size,
    )


async def collect(run: ih.BatchRun) -> list[Outcome]:
    async with run as outcomes:
        return [outcome async for outcome in outcomes]


# ----------------------------------------------------------------- send_many


async def test_send_many_chunks_a_stream_and_reports_a_bad_number_alone() -> None:
    em = emulator()
    given = numbers(25)
    given.insert(6, "12345")  # position 7 of the input

    def stream() -> Iterator[str]:
        yield from given

    async with client_for(em, chunk_size=10) as client:
        outcomes = await collect(client.send_many(stream(), "周末特惠", concurrency=2))
    by_status: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_status.setdefault(outcome.status, []).append(outcome)
    assert sorted(by_status) == ["accepted", "invalid"]
    (bad,) = by_status["invalid"]
    assert isinstance(bad.error, ih.InvalidRequestError) and bad.error.code == 406
    assert "number 7 of the list" in str(bad.error) and bad.error.local
    accepted = by_status["accepted"]
    assert sorted(len(o.mobiles) for o in accepted) == [5, 10, 10]
    assert sorted(m for o in accepted for m in o.mobiles) == numbers(25)
    # one request per chunk, one serial per request, billed per number
    sent = em.messages
    assert len(sent) == 25 and em.balance_of(ACCOUNT) == 10_000 - 25
    for outcome in accepted:
        assert outcome.smsid is not None
        assert {m.mobile for m in sent if m.smsid == outcome.smsid} == set(outcome.mobiles)
    assert all(m.content == "周末特惠退订回T" for m in sent)


async def test_send_many_unknown_chunk_is_unknown_for_each_of_its_numbers() -> None:
    provider = Provider(OK % 1, b"<html>502 Bad Gateway</html>", b'{"code":4030,"msg":"x","smsid":"0"}')
    async with mock_client(provider, chunk_size=3) as client:
        outcomes = await collect(client.send_many(numbers(8), "hi", concurrency=1))
    assert provider.mobiles == [",".join(numbers(8)[i : i + 3]) for i in (0, 3, 6)]
    assert [o.status for o in outcomes] == ["accepted", "unknown", "rejected"]
    unknown = outcomes[1]
    assert unknown.mobiles == tuple(numbers(8)[3:6])
    assert isinstance(unknown.error, ih.DeliveryUnknownError)
    assert isinstance(outcomes[2].error, ih.ApiError) and outcomes[2].error.code == 4030


async def test_send_many_reads_the_input_lazily_bounded_memory() -> None:
    pulled = 0

    def endless() -> Iterator[str]:
        nonlocal pulled
        for number in numbers(1_000_000):  # bounded by count; the run stops long before
            pulled += 1
            yield number

    provider = Provider()
    async with mock_client(provider, chunk_size=10) as client:
        seen = 0
        async with client.send_many(endless(), "hi", concurrency=2) as outcomes:
            async for outcome in outcomes:
                assert outcome.status == "accepted"
                seen += 1
                if seen == 3:
                    break
    # 2 in flight + 2 buffered outcomes + the consumer's + the chunk being filled
    assert pulled <= 10 * (2 + 2 + 3 + 1)
    assert len(provider.mobiles) <= 7


async def test_send_many_takes_an_async_iterable() -> None:
    async def stream() -> AsyncIterator[str]:
        for number in numbers(5):
            yield number

    em = emulator()
    async with client_for(em, chunk_size=2) as client:
        outcomes = await collect(client.send_many(stream(), "hi"))
    assert sorted(len(o.mobiles) for o in outcomes) == [1, 2, 2]
    assert all(o.ok for o in outcomes) and len(em.messages) == 5


async def test_send_many_journal_resumes_per_chunk(tmp_path: Path) -> None:
    em = emulator()
    journal = tmp_path / "campaign.jsonl"
    async with client_for(em, chunk_size=4) as client:
        first = await collect(client.send_many(numbers(10), "hi", journal=journal))
        again = await collect(client.send_many(numbers(10), "hi", journal=journal))
    assert sorted(o.status for o in first) == ["accepted"] * 3
    assert sorted(o.status for o in again) == ["already_accepted"] * 3
    assert {o.smsid for o in again} == {o.smsid for o in first}
    assert len(em.messages) == 10


async def test_send_many_receipt_with_task_id_finds_its_chunk() -> None:
    em = emulator()
    async with client_for(em, chunk_size=2) as client:
        outcomes = await collect(client.send_many(numbers(3), "hi"))
    for message in em.messages:
        receipt = parse_push(
            {"code": "2", "msg": "DELIVRD", "mobilephone": message.mobile,
             "task_id": message.smsid, "report_time": "2023-11-15 08:00:00"}
        )
        assert isinstance(receipt, DeliveryReceipt) and receipt.task_id is not None
        (chunk,) = [o for o in outcomes if o.smsid == receipt.task_id]
        assert receipt.mobile in chunk.mobiles


async def test_send_many_refuses_bad_arguments_before_reading_anything() -> None:
    read: list[str] = []

    def stream() -> Iterator[str]:
        read.append("x")
        yield "13800138000"

    provider = Provider()
    async with mock_client(provider) as client:
        with pytest.raises(ih.InvalidRequestError):
            client.send_many(stream(), "  ")
        with pytest.raises(ValueError, match="aware"):
            client.send_many(stream(), "hi", at=_dt.datetime(2030, 1, 1))
        with pytest.raises(ValueError, match="concurrency"):
            client.send_many(stream(), "hi", concurrency=0)
        with pytest.raises(ValueError, match="idempotency_key"):
            client.send_many(stream(), "hi", idempotency_key="")
    assert read == [] and provider.mobiles == []


async def test_send_many_idempotency_key_sends_each_chunk_once() -> None:
    provider = Provider()
    async with mock_client(provider, chunk_size=2) as client:
        first = await collect(client.send_many(numbers(5), "hi", idempotency_key="spring"))
        again = await collect(client.send_many(numbers(5), "hi", idempotency_key="spring"))
    assert len(provider.mobiles) == 3
    assert sorted(o.status for o in again) == ["already_accepted"] * 3
    assert {o.smsid for o in again} == {o.smsid for o in first}


# ----------------------------------------------------------------- send(idempotency_key=)


async def test_send_idempotency_key_replays_every_chunk() -> None:
    provider = Provider(OK % 1, b"<html>lost</html>")
    async with mock_client(provider, chunk_size=2) as client:
        first = await client.send(numbers(5), "hi", idempotency_key="promo-7")
        again = await client.send(numbers(5), "hi", idempotency_key="promo-7")
    assert len(provider.mobiles) == 3  # nothing sent by the second call
    assert [c.accepted for c in first.chunks] == [True, False, True]
    assert first.chunks[1].unknown and again.chunks[1].unknown  # still unknown, not resent
    assert [c.task_id for c in again.chunks] == [c.task_id for c in first.chunks]
    assert [c.replayed for c in again.chunks] == [True, False, True]
    assert not any(c.replayed for c in first.chunks)


async def test_send_idempotency_key_with_other_content_or_schedule_sends_nothing() -> None:
    provider = Provider()
    clock = FakeClock(START)
    at = _dt.datetime.fromtimestamp(START + 3600, CST)
    async with MarketingSmsClient(
        ACCOUNT, KEY, transport=httpx.MockTransport(provider), clock=clock, limiter=None
    ) as client:
        await client.send(numbers(2), "hi", at=at, idempotency_key="k")
        other_text = await client.send(numbers(2), "ho", at=at, idempotency_key="k")
        other_time = await client.send(
            numbers(2), "hi", at=at + _dt.timedelta(minutes=5), idempotency_key="k"
        )
        same = await client.send(numbers(2), "hi", at=at, idempotency_key="k")
    assert len(provider.mobiles) == 1
    for result in (other_text, other_time):
        assert isinstance(result.chunks[0].error, ih.IdempotencyKeyReuseError)
    assert same.chunks[0].replayed


async def test_send_idempotency_key_checked_before_anything() -> None:
    provider = Provider()
    async with mock_client(provider) as client:
        with pytest.raises(ValueError, match="idempotency_key"):
            await client.send(numbers(2), "hi", idempotency_key="x" * 201)
    assert provider.mobiles == []


async def test_blank_content_refused_although_the_opt_out_text_would_fill_it() -> None:
    provider = Provider()
    async with mock_client(provider) as client:
        with pytest.raises(ih.InvalidRequestError) as caught:
            await client.send(numbers(1), " ")
    assert caught.value.code == 404 and caught.value.local and provider.mobiles == []


async def test_send_many_reads_ints_as_numbers_and_refuses_other_types() -> None:
    items: list[Any] = [13800138000, None, True, "13800138001"]  # what an untyped caller passes
    provider = Provider()
    async with mock_client(provider, chunk_size=5) as client:
        outcomes = await collect(client.send_many(items, "hi"))
    assert sorted(o.status for o in outcomes) == ["accepted", "invalid", "invalid"]
    assert provider.mobiles == ["13800138000,13800138001"]
    invalid = [o for o in outcomes if o.status == "invalid"]
    assert [str(o.error).split("(number ")[1][:1] for o in invalid] == ["2", "3"]
