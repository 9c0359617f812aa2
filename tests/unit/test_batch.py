"""send_many: one outcome per message, bounded concurrency, lazy input, pacing, cancellation, journal."""

from __future__ import annotations

import json
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

import ihuyi_async as ih
import ihuyi_async._parsing as parsing_module
from ihuyi_async import FakeClock, IhuyiClient
from ihuyi_async._batch import Message, Outcome
from ihuyi_async.limiter import Limiter
from ihuyi_async.testing import Emulator, faults

pytestmark = pytest.mark.anyio
NOW = 1767240000.0


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def message_of(outcome: Outcome) -> Message:
    """The outcome's message: every input item whose message these tests read is a message."""
    assert outcome.message is not None, outcome
    return outcome.message


def emulator_client(emulator: Emulator, **kw: Any) -> IhuyiClient:
    return IhuyiClient("APIID", "APIKEY", transport=emulator.transport, clock=emulator.clock, **kw)


async def test_one_outcome_per_message_mixed_input() -> None:
    emulator = Emulator(accounts={"APIID": "APIKEY"}, balance=100)
    inputs: list[Any] = [  # deliberately not all messages
        Message("13800000001", "您的订单已发货", id="a", metadata={"order": 1}),
        {"mobile": "13800000002", "content": "hello", "id": "b", "order": 2},
        {"mobile": "12345", "content": "bad number", "id": "c"},
        {"content": "no mobile", "id": "d"},
        "not a message",
        {"mobile": "13800000003", "content": "emoji 😀", "id": "e"},
        {"mobile": "13800000004", "id": "f"},
    ]
    async with emulator_client(emulator) as client:
        outcomes = [o async for o in client.send_many(inputs, concurrency=3)]
    assert sorted(o.index for o in outcomes) == list(range(len(inputs)))
    by_index = {o.index: o for o in outcomes}
    assert by_index[0].ok and message_of(by_index[0]).metadata == {"order": 1}
    assert by_index[0].result is not None and by_index[0].smsid == by_index[0].result.smsid
    assert by_index[1].ok and message_of(by_index[1]).metadata == {"order": 2}
    assert by_index[2].status == "invalid" and isinstance(by_index[2].error, ih.InvalidRequestError)
    assert by_index[3].status == "invalid" and isinstance(by_index[3].error, ValueError)
    assert by_index[4].status == "invalid" and isinstance(by_index[4].error, TypeError)
    assert by_index[5].status == "invalid" and isinstance(by_index[5].error, ih.ContentRejectedError)
    assert by_index[6].status == "invalid" and isinstance(by_index[6].error, ValueError)
    assert len(emulator.messages) == 2


async def test_concurrency_bound_and_lazy_input() -> None:
    in_flight = 0
    peak = 0
    pulled = 0
    yielded = 0

    class Slow(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await anyio.lowlevel.checkpoint()
            await anyio.lowlevel.checkpoint()
            in_flight -= 1
            return httpx.Response(200, json={"code": 2, "smsid": "16842079209571524017"})

    def source() -> Iterator[dict[str, str]]:
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            # the generator is never more than concurrency + buffer ahead of the consumer
            assert pulled - yielded <= 2 * 8 + 2, (pulled, yielded)
            yield {"mobile": f"139{i:08d}", "content": "x"}

    async with IhuyiClient("APIID", "KEY", transport=Slow(), limiter=None) as client:
        async with client.send_many(source(), concurrency=8) as outcomes:
            async for outcome in outcomes:
                yielded += 1
                assert outcome.ok
                if yielded == 500:
                    break
    assert peak <= 8 and pulled < 600


async def test_a_slow_consumer_holds_the_senders_back() -> None:
    """Outcomes waiting for the consumer count against `concurrency`: nothing piles up."""
    pulled = 0

    def source() -> Iterator[dict[str, str]]:
        nonlocal pulled
        for i in range(1_000):
            pulled += 1
            yield {"mobile": f"139{i:08d}", "content": "x"}

    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, json={"code": 2, "smsid": "16842079209571524017"})
    )
    yielded = 0
    async with IhuyiClient("APIID", "KEY", transport=transport, limiter=None) as client:
        async with client.send_many(source(), concurrency=4) as outcomes:
            async for outcome in outcomes:
                yielded += 1
                assert outcome.ok
                for _ in range(300):  # a consumer busy elsewhere for many loop passes
                    await anyio.lowlevel.checkpoint()
                # at most `concurrency` sends or hand-overs live, plus a buffer of `concurrency`
                assert pulled <= yielded + 2 * 4, (pulled, yielded)
                if yielded == 50:
                    break
    assert pulled <= 50 + 2 * 4


async def test_async_input_pulled_by_one_worker_at_a_time_in_order() -> None:
    async def source() -> AsyncIterator[dict[str, str]]:
        for i in range(60):
            await anyio.lowlevel.checkpoint()  # a real async source suspends between items
            yield {"mobile": f"139{i:08d}", "content": f"m{i}"}

    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, json={"code": 2, "smsid": "16842079209571524017"})
    )
    async with IhuyiClient("APIID", "KEY", transport=transport, limiter=None) as client:
        outcomes = [o async for o in client.send_many(source(), concurrency=8)]
    assert sorted(o.index for o in outcomes) == list(range(60))
    assert all(o.ok and message_of(o).content == f"m{o.index}" for o in outcomes)


async def test_early_close_does_not_wait_for_a_stalled_async_input() -> None:
    never = anyio.Event()

    async def source() -> AsyncIterator[dict[str, str]]:
        for i in range(3):
            yield {"mobile": f"139{i:08d}", "content": "x"}
        await never.wait()  # e.g. a queue nobody feeds any more
        yield {"mobile": "13900000099", "content": "never sent"}  # pragma: no cover

    requests = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        return httpx.Response(200, json={"code": 2, "smsid": "16842079209571524017"})

    got = 0
    with anyio.fail_after(10):  # a bound, not a timing assertion
        async with IhuyiClient(
            "APIID", "KEY", transport=httpx.MockTransport(handler), limiter=None
        ) as client:
            async with client.send_many(source(), concurrency=4) as outcomes:
                async for outcome in outcomes:
                    got += 1
                    assert outcome.ok
                    if got == 3:
                        break
    assert got == 3 and requests == 3


async def test_repeated_numbers_are_paced_not_failed() -> None:
    clock = FakeClock(NOW)  # moved by hand: one second whenever every task is blocked
    emulator = Emulator(accounts={"APIID": "APIKEY"}, balance=100, clock=clock)
    msgs = [{"mobile": "13800138000", "content": f"通知{i}"} for i in range(5)]
    outcomes = []

    async def drive(stop: anyio.Event) -> None:
        while not stop.is_set():
            await anyio.wait_all_tasks_blocked()
            clock.advance(1.0)

    async with emulator_client(emulator, limiter=Limiter(clock=clock, max_wait=1.5)) as client:
        async with anyio.create_task_group() as tg:
            stop = anyio.Event()
            tg.start_soon(drive, stop)
            outcomes = [o async for o in client.send_many(msgs, concurrency=5)]
            stop.set()
    assert [o.status for o in outcomes] == ["accepted"] * 5  # waited (max_wait 1.5 s < 4 s of backlog)
    times = sorted(m.time.timestamp() for m in emulator.messages)
    assert all(b - a >= 1 for a, b in zip(times, times[1:], strict=False))


async def test_daily_quota_refusal_is_an_outcome() -> None:
    emulator = Emulator(accounts={"APIID": "APIKEY"}, balance=100, limits=False)
    msgs = [{"mobile": "13800138000", "content": f"通知{i}"} for i in range(7)]
    async with emulator_client(emulator) as client:
        statuses = sorted([o.status async for o in client.send_many(msgs, concurrency=7)])
    assert statuses == ["accepted"] * 5 + ["refused"] * 2
    assert len(emulator.messages) == 5


async def test_cancelling_stops_promptly_and_leaves_limiter_exact() -> None:
    clock = FakeClock(NOW, auto_advance=False)
    limiter = Limiter(clock=clock, max_wait=60)
    requests = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        return httpx.Response(200, json={"code": 2, "smsid": "16842079209571524017"})

    # 20 messages to 2 numbers: after the first two, every send waits for its turn, and the
    # fake clock never moves: closing must not wait for those turns (nor send them).
    msgs = ({"mobile": f"1380013800{i % 2}", "content": f"m{i}"} for i in range(20))
    got = []
    async with IhuyiClient("APIID", "KEY", transport=httpx.MockTransport(handler), clock=clock, limiter=limiter) as client:
        with anyio.move_on_after(10) as bound:  # a bound on a hang, not a timing assertion
            async with client.send_many(msgs, concurrency=10) as outcomes:
                async for outcome in outcomes:
                    got.append(outcome)
                    if len(got) == 2:
                        break
    assert not bound.cancelled_caught, "closing the run waited for sends that were not on the wire"
    stats = limiter.statistics()
    assert requests == 2 and len(got) == 2
    assert stats.waiting == 0
    assert stats.acquired - stats.refunded == requests  # slots held == requests made


async def test_async_input_keeping_a_cancel_scope_across_yields() -> None:
    """An async input is resumed in one task only (its scopes belong to that task)."""

    async def source() -> AsyncIterator[dict[str, str]]:
        with anyio.move_on_after(3600):  # e.g. a cursor read under a timeout
            for i in range(12):
                await anyio.lowlevel.checkpoint()
                yield {"mobile": f"139{i:08d}", "content": f"m{i}"}

    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, json={"code": 2, "smsid": "16842079209571524017"})
    )
    async with IhuyiClient("APIID", "KEY", transport=transport, limiter=None) as client:
        outcomes = [o async for o in client.send_many(source(), concurrency=3)]
    assert sorted(o.index for o in outcomes) == list(range(12)) and all(o.ok for o in outcomes)


async def test_nothing_is_sent_after_an_early_close_even_if_input_just_arrived() -> None:
    feed_send, feed_receive = anyio.create_memory_object_stream[dict[str, str]](10)
    requests = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        return httpx.Response(200, json={"code": 2, "smsid": "16842079209571524017"})

    async def source() -> AsyncIterator[dict[str, str]]:
        async with feed_receive:
            async for item in feed_receive:
                yield item

    async def feed_more(progress: object) -> None:
        # a new message arrives in the same pass as the consumer's decision to stop
        await feed_send.send({"mobile": "13900000002", "content": "too late"})

    await feed_send.send({"mobile": "13900000001", "content": "first"})
    with anyio.fail_after(10):  # a bound on a hang
        async with IhuyiClient(
            "APIID", "KEY", transport=httpx.MockTransport(handler), limiter=None
        ) as client:
            async with client.send_many(source(), concurrency=4, on_progress=feed_more) as outcomes:
                async for _outcome in outcomes:
                    break
    feed_send.close()
    assert requests == 1


async def test_progress_hook() -> None:
    emulator = Emulator(accounts={"APIID": "APIKEY"}, balance=100)
    seen: list[tuple[int, dict[str, int]]] = []

    async with emulator_client(emulator) as client:
        async for _ in client.send_many(
            [{"mobile": f"1380000000{i}", "content": "x"} for i in range(5)] + [{"mobile": "1", "content": "x"}],
            on_progress=lambda p: seen.append((p.done, dict(p.counts))),
        ):
            pass
    assert seen[-1] == (6, {"accepted": 5, "invalid": 1})


async def test_journal_skips_accepted_and_unknown_on_rerun(tmp_path: Path) -> None:
    emulator = Emulator(accounts={"APIID": "APIKEY"}, balance=100)
    journal = tmp_path / "run.jsonl"
    msgs = [{"mobile": f"1380000000{i}", "content": f"m{i}", "id": f"m{i}"} for i in range(6)]
    emulator.fail_next(faults.garbage(), method="Submit")
    async with emulator_client(emulator) as client:
        first = {message_of(o).id: o.status async for o in client.send_many(msgs, concurrency=1, journal=journal)}
    assert sorted(first.values()) == ["accepted"] * 5 + ["unknown"]
    lines = [json.loads(x) for x in journal.read_text().splitlines()]
    assert {x["status"] for x in lines} == {"pending", "accepted", "unknown"}
    assert all("13800000" not in json.dumps(x) for x in lines)  # numbers masked
    async with emulator_client(emulator) as client:
        second = {message_of(o).id: o.status async for o in client.send_many(msgs, journal=journal)}
    assert sorted(second.values()) == ["already_accepted"] * 5 + ["already_unknown"]
    assert len(emulator.messages) == 5  # nothing sent twice (the garbage answer's message was accepted or not: never resent)


async def test_journal_pending_entry_means_unknown(tmp_path: Path) -> None:
    journal = tmp_path / "run.jsonl"
    journal.write_text('{"id": "x", "status": "pending"}\n{"id": "y", "status": "rejected", "code": 4051}\n{"id": "z", "sta')
    emulator = Emulator(accounts={"APIID": "APIKEY"}, balance=100)
    msgs = [{"mobile": f"1380000000{i}", "content": "m", "id": k} for i, k in enumerate("xyz")]
    async with emulator_client(emulator) as client:
        got = {message_of(o).id: o.status async for o in client.send_many(msgs, journal=journal)}
    assert got == {"x": "already_unknown", "y": "accepted", "z": "accepted"}


@pytest.mark.slow
@pytest.mark.timeout(300)  # 11,000 sends under tracemalloc (a 1M run: benchmarks.memory)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_10k_messages_one_outcome_each_and_flat_memory() -> None:
    async def run(n: int) -> tuple[int, int]:
        emulator = Emulator(accounts={"APIID": "APIKEY"}, balance=10**9, limits=False)
        msgs = ({"mobile": f"13{i:09d}", "content": "您的订单已发货"} for i in range(n))
        seen = 0
        tracemalloc.start()
        try:
            # limiter=None: the limiter's per-number day state grows with distinct numbers by
            # design (it must remember today's counts); this measures the batch machinery.
            async with emulator_client(emulator, limiter=None) as client:
                async for outcome in client.send_many(msgs, concurrency=50):
                    assert outcome.ok, outcome
                    seen += 1
                    if seen % 500 == 0:
                        emulator.reset()  # the emulator's own log is not the client's memory
            return seen, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    # ten times the messages, about the same peak (about 1.5 MB here): keeping as little as
    # an smsid string per message (about 80 bytes) puts the larger run's peak 40 % higher
    n_small, peak_small = await run(1_000)
    n_big, peak_big = await run(10_000)
    assert (n_small, n_big) == (1_000, 10_000)
    assert peak_big < 1.25 * peak_small, (peak_small, peak_big)


# -- where a send stopped decides its status (#12) -------------------------------------------


def _ok_transport(counter: list[int]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        counter.append(1)
        return httpx.Response(200, json={"code": 2, "smsid": "16842079209571524017"})

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("foreign", [ValueError, TypeError, LookupError])
async def test_a_foreign_exception_after_the_wire_is_unknown_never_invalid(
    foreign: type[Exception], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request reached the server, then the answer's parser raised something foreign."""
    import ihuyi_async._client as client_module

    real = parsing_module.parse_submit  # what the client module imported
    calls = 0

    def parse(data: bytes, *args: Any, **kwargs: Any) -> tuple[str, str]:
        nonlocal calls
        if b"16842079209571524017" in data and calls == 0:
            calls += 1
            raise foreign("Exceeds the limit (4300 digits) for integer string conversion")
        return real(data, *args, **kwargs)

    monkeypatch.setattr(client_module, "parse_submit", parse)
    requests: list[int] = []
    journal = tmp_path / "run.jsonl"
    msgs = [{"mobile": f"1380000000{i}", "content": f"m{i}", "id": f"m{i}"} for i in range(5)]
    async with IhuyiClient("APIID", "KEY", transport=_ok_transport(requests), limiter=None) as client:
        outcomes = [o async for o in client.send_many(msgs, concurrency=1, journal=journal)]
    statuses = [o.status for o in outcomes]
    assert len(requests) == 5  # every message reached the server
    assert statuses.count("unknown") == 1 and statuses.count("accepted") == 4, statuses
    unknown = next(o for o in outcomes if o.status == "unknown")
    assert isinstance(unknown.error, (foreign, ih.DeliveryUnknownError))
    last = {}
    for line in journal.read_text().splitlines():
        entry = json.loads(line)
        last[entry["id"]] = entry
    assert last[message_of(unknown).id]["status"] == "unknown"
    # a rerun never resends it
    async with IhuyiClient("APIID", "KEY", transport=_ok_transport(requests), limiter=None) as client:
        again = [o.status async for o in client.send_many(msgs, journal=journal)]
    assert sorted(again) == ["already_accepted"] * 4 + ["already_unknown"] and len(requests) == 5


async def test_one_foreign_exception_does_not_end_the_other_messages_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ihuyi_async._client as client_module

    real = parsing_module.parse_submit  # what the client module imported
    calls = 0

    def parse(data: bytes, *args: Any, **kwargs: Any) -> tuple[str, str]:
        nonlocal calls
        calls += 1
        if calls % 3 == 0:
            raise LookupError("unknown encoding: x-nonsense")
        return real(data, *args, **kwargs)

    monkeypatch.setattr(client_module, "parse_submit", parse)
    requests: list[int] = []
    msgs = [{"mobile": f"139{i:08d}", "content": "x"} for i in range(30)]
    async with IhuyiClient("APIID", "KEY", transport=_ok_transport(requests), limiter=None) as client:
        outcomes = [o async for o in client.send_many(msgs, concurrency=4)]
    assert sorted(o.index for o in outcomes) == list(range(30)) and len(requests) == 30
    assert sorted({o.status for o in outcomes}) == ["accepted", "unknown"]
    assert sum(o.status == "unknown" for o in outcomes) == 10


async def test_a_foreign_exception_before_the_wire_is_not_sent_and_the_run_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limiter = Limiter()
    real = Limiter.acquire
    calls = 0

    async def acquire(self: Limiter, *args: Any, **kwargs: Any) -> object:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("this backend cannot run on this event loop")
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(Limiter, "acquire", acquire)
    requests: list[int] = []
    msgs = [{"mobile": f"139{i:08d}", "content": "x"} for i in range(4)]
    async with IhuyiClient("APIID", "KEY", transport=_ok_transport(requests), limiter=limiter) as client:
        outcomes = sorted([o async for o in client.send_many(msgs, concurrency=1)], key=lambda o: o.index)
    assert [o.status for o in outcomes] == ["accepted", "not_sent", "accepted", "accepted"]
    assert isinstance(outcomes[1].error, RuntimeError) and len(requests) == 3


class _RaisingClient:
    """A send function for the batch layer alone: calls ``on_wire`` (or not), then raises."""

    def __init__(self, raise_after_wire: dict[str, BaseException], raise_before: dict[str, BaseException]) -> None:
        self.after = raise_after_wire
        self.before = raise_before
        self.wired: list[str] = []

    async def send(self, message: ih.Message, on_wire: object, key: str | None) -> ih.SendResult:
        mobile, content = message.mobile, str(message.content)
        await anyio.lowlevel.checkpoint()
        if content in self.before:
            raise self.before[content]
        assert callable(on_wire)
        on_wire()
        self.wired.append(content)
        await anyio.lowlevel.checkpoint()
        if content in self.after:
            raise self.after[content]
        return ih.SendResult(
            smsid="16842079209571524017", segments=1, mobile=mobile, sent_at=datetime.now(timezone.utc)
        )


async def test_batch_status_comes_from_where_the_send_stopped(tmp_path: Path) -> None:
    from ihuyi_async._batch import send_many

    after: dict[str, BaseException] = {
        "a-value": ValueError("int string too long"),
        "a-type": TypeError("unhashable"),
        "a-lookup": LookupError("unknown encoding"),
        "a-key": KeyError("smsid"),
        "a-transport": ih.TransportError("not sent: pool_timeout", sent=False),
        "a-rejected": ih.ContentRejectedError(407, "短信内容含有敏感字符", category="content"),
    }
    before: dict[str, BaseException] = {
        "b-value": ValueError("template_id must be a positive int"),
        "b-runtime": RuntimeError("backend='aiohttp' runs on asyncio only"),
        "b-transport": ih.TransportError("not sent: connect_error"),
    }
    fake = _RaisingClient(after, before)
    msgs = [{"mobile": "13800138000", "content": c, "id": c} for c in [*after, *before, "fine"]]
    journal = tmp_path / "j.jsonl"
    got = {message_of(o).id: o.status async for o in send_many(fake.send, msgs, concurrency=3, journal=str(journal))}
    assert got == {
        "a-value": "unknown", "a-type": "unknown", "a-lookup": "unknown", "a-key": "unknown",
        "a-transport": "not_sent", "a-rejected": "rejected",
        "b-value": "invalid", "b-runtime": "not_sent", "b-transport": "not_sent",
        "fine": "accepted",
    }
    last = {}
    for line in journal.read_text().splitlines():
        entry = json.loads(line)
        last[entry["id"]] = entry
    assert last["a-value"]["status"] == "unknown" and "ValueError" in last["a-value"]["reason"]
    assert "on the wire" in last["a-lookup"]["reason"]


# -- resuming an edited input (#13) ------------------------------------------------------------


def _ok_client(requests: list[str]) -> IhuyiClient:
    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request.content.decode())
        return httpx.Response(200, json={"code": 2, "smsid": "16842079209571524017"})

    return IhuyiClient("APIID", "KEY", transport=httpx.MockTransport(handler), limiter=None)


async def test_resume_without_ids_survives_deleted_and_appended_rows(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    rows = [{"mobile": f"1380000{i:04d}", "content": f"订单{i}已发货"} for i in range(10)]
    rows.append(dict(rows[3]))  # an identical message twice: two messages, two keys
    requests: list[str] = []
    async with _ok_client(requests) as client:
        first = [o.status async for o in client.send_many(rows, journal=journal)]
    assert first == ["accepted"] * 11 and len(requests) == 11

    edited = rows[1:] + [{"mobile": "13900000000", "content": "新客户"}]  # row 1 deleted, one appended
    async with _ok_client(requests) as client:
        second = sorted([o.status async for o in client.send_many(edited, journal=journal)])
    assert second == ["accepted"] + ["already_accepted"] * 10
    assert len(requests) == 12 and "13900000000" in requests[-1]  # the new customer was sent

    rows[5] = {"mobile": rows[5]["mobile"], "content": "订单5改期"}  # an edited row is a new message
    async with _ok_client(requests) as client:
        third = sorted([o.status async for o in client.send_many(rows, journal=journal)])
    assert third == ["accepted"] + ["already_accepted"] * 10 and len(requests) == 13


async def test_an_id_whose_message_changed_is_a_conflict_that_stops_the_run(tmp_path: Path) -> None:
    from ihuyi_async import Journal
    from ihuyi_async._batch import find_conflicts

    journal = tmp_path / "j.jsonl"
    rows = [{"mobile": f"1380000{i:04d}", "content": f"订单{i}已发货", "id": f"o{i}"} for i in range(6)]
    requests: list[str] = []
    async with _ok_client(requests) as client:
        assert [o.status async for o in client.send_many(rows[:3], journal=journal)] == ["accepted"] * 3

    changed = [dict(r) for r in rows]
    changed[1]["mobile"] = "13999999999"  # o1 now names another customer
    conflicts = find_conflicts(changed, Journal(journal))
    assert [(i, m.id) for i, m, _ in conflicts] == [(1, "o1")]

    async with _ok_client(requests) as client:
        outcomes = [o async for o in client.send_many(changed, concurrency=1, journal=journal)]
    statuses = {message_of(o).id: o.status for o in outcomes}
    assert statuses["o0"] == "already_accepted" and statuses["o1"] == "conflict"
    assert "o1" in str(next(o.error for o in outcomes if o.status == "conflict"))
    assert len(requests) == 3  # nothing more was sent after the conflict
    assert all(s in ("already_accepted", "conflict", "not_sent") for s in statuses.values())

    async with _ok_client(requests) as client:  # an explicit policy: trust the journal
        skipped = [o.status async for o in client.send_many(changed, journal=journal, on_conflict="skip")]
    assert sorted(skipped) == ["accepted"] * 3 + ["already_accepted"] * 3 and len(requests) == 6
    async with _ok_client(requests) as client:  # or send the changed message as new
        sent = [o.status async for o in client.send_many(changed, journal=journal, on_conflict="send")]
    assert sorted(sent) == ["accepted"] + ["already_accepted"] * 5 and "13999999999" in requests[-1]


# -- stop when the account is the problem (#13) ------------------------------------------------


@pytest.mark.parametrize("code", [40502, 4051])
async def test_an_account_level_code_stops_the_run_after_the_first(code: int, tmp_path: Path) -> None:
    requests: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request.content.decode())
        return httpx.Response(200, json={"code": code, "msg": "no", "smsid": "0"})

    journal = tmp_path / "j.jsonl"
    msgs = [{"mobile": f"139{i:08d}", "content": f"m{i}"} for i in range(500)]
    async with IhuyiClient("APIID", "KEY", transport=httpx.MockTransport(handler), limiter=None) as client:
        run = client.send_many(msgs, concurrency=1, journal=journal)
        outcomes = [o async for o in run]
    assert len(requests) == 1
    assert [o.status for o in outcomes] == ["rejected"] and run.taken == 1
    assert run.stop_reason is not None and str(code) in run.stop_reason
    # resumable: a rerun sends the rest (and stops again at the first refusal)
    async with IhuyiClient("APIID", "KEY", transport=httpx.MockTransport(handler), limiter=None) as client:
        again = [o.status async for o in client.send_many(msgs, concurrency=4, journal=journal)]
    assert again.count("rejected") <= 4 and len(requests) <= 5
    # stop_on=None: every message is tried (the old behaviour, by choice)
    async with IhuyiClient("APIID", "KEY", transport=httpx.MockTransport(handler), limiter=None) as client:
        every = [o.status async for o in client.send_many(msgs[:20], stop_on=None)]
    assert every == ["rejected"] * 20


async def test_stop_on_stops_at_once_and_taken_messages_not_on_the_wire_come_back_not_sent() -> None:
    clock = FakeClock(NOW, auto_advance=False)  # sends to one number wait for turns that never come
    requests: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request.content.decode())
        if "13900000007" in request.content.decode():
            return httpx.Response(200, json={"code": 4050, "msg": "账号被冻结", "smsid": "0"})
        return httpx.Response(200, json={"code": 2, "smsid": "16842079209571524017"})

    msgs = [{"mobile": "13800138000", "content": f"m{i}"} for i in range(3)]
    msgs += [{"mobile": f"139000000{i:02d}", "content": "x"} for i in range(5, 40)]
    async with IhuyiClient(
        "APIID", "KEY", transport=httpx.MockTransport(handler), clock=clock,
        limiter=Limiter(clock=clock, max_wait=60),
    ) as client:
        with anyio.fail_after(10):
            run = client.send_many(msgs, concurrency=8)
            outcomes = [o async for o in run]
    statuses = Counter(o.status for o in outcomes)
    assert statuses["rejected"] == 1 and statuses["not_sent"] >= 2  # two were waiting for a turn
    assert len(outcomes) == run.taken < len(msgs)  # every message taken has exactly one outcome
    assert all(isinstance(o.error, ih.TransportError) for o in outcomes if o.status == "not_sent")
    assert statuses["accepted"] + statuses["rejected"] == len(requests)


async def test_graceful_stop_lets_requests_on_the_wire_finish() -> None:
    release = anyio.Event()
    on_wire = 0

    class Gate(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal on_wire
            on_wire += 1
            await release.wait()
            return httpx.Response(200, json={"code": 2, "smsid": "16842079209571524017"})

    msgs = ({"mobile": f"139{i:08d}", "content": "x"} for i in range(1000))
    async with IhuyiClient("APIID", "KEY", transport=Gate(), limiter=None) as client:
        run = client.send_many(msgs, concurrency=5)
        outcomes: list[Outcome] = []

        async def consume() -> None:
            outcomes.extend([o async for o in run])

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                while on_wire < 5:
                    await anyio.lowlevel.checkpoint()
                run.stop("interrupted")
                assert run.progress.on_wire == 5
                release.set()
    assert len(outcomes) == 5 and all(o.status == "accepted" for o in outcomes)
    assert run.stop_reason == "interrupted" and run.taken == 5
