"""The receiver's pipeline in-process: acknowledgement, dedupe, concurrency, failures.

Runs on asyncio and trio through ``httpx.ASGITransport`` or raw ASGI calls. Time
is a :class:`FakeClock`; concurrency is observed with ``wait_all_tasks_blocked``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping, MutableMapping
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import httpx
import pytest
from anyio import wait_all_tasks_blocked

from ihuyi_async import FakeClock
from ihuyi_async.pushes import (
    ClaimState,
    DedupeStore,
    DeliveryReceipt,
    MemoryDedupe,
    Push,
    PushReceiver,
    Reply,
    TemplateReview,
    parse_push,
)
from ihuyi_async.testing import (
    PushAnswer,
    post_push,
    receipt_form,
    reply_form,
    template_review_form,
)

pytestmark = pytest.mark.anyio

SMSID = "16842079209571524017"
FORM = receipt_form(smsid=SMSID, mobile="13800138000", report_time="2026-01-01 12:00:00")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def client(app: PushReceiver) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://push.test")


async def test_success_is_sent_only_after_the_handler_returned() -> None:
    entered, release = anyio.Event(), anyio.Event()
    done: list[DeliveryReceipt] = []

    async def on_receipt(receipt: DeliveryReceipt) -> None:
        entered.set()
        await release.wait()
        done.append(receipt)

    receiver = PushReceiver(on_receipt)
    sent: list[dict[str, Any]] = []
    body = [
        {
            "type": "http.request",
            "body": b"&".join(
                f"{k}={v}".encode() for k, v in receipt_form(smsid=SMSID, report_time="x").items()
            ),
        }
    ]
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "query_string": b"",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
        "client": ("127.0.0.1", 1),
    }

    async def receive() -> dict[str, Any]:
        return body.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    async with anyio.create_task_group() as tg:
        tg.start_soon(receiver, scope, receive, send)
        await entered.wait()
        await wait_all_tasks_blocked()
        assert sent == []  # nothing answered while the handler runs
        release.set()
    assert done
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b"success"


async def test_concurrent_duplicate_waits_and_does_not_call_the_handler() -> None:
    release = anyio.Event()
    calls = 0

    async def on_receipt(receipt: DeliveryReceipt) -> None:
        nonlocal calls
        calls += 1
        await release.wait()

    receiver = PushReceiver(on_receipt)
    answers: list[PushAnswer] = []
    async with client(receiver) as c:

        async def post() -> None:
            answers.append(await post_push(c, FORM))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(post)
            await wait_all_tasks_blocked()
            assert calls == 1 and answers == []
            release.set()
    assert [a.body for a in answers] == ["success"] * 3
    assert calls == 1
    stats = receiver.statistics()
    assert (stats.handled, stats.duplicates, stats.busy) == (1, 2, 0)


async def test_duplicate_waiting_on_a_failed_first_runs_the_handler_itself() -> None:
    release = anyio.Event()
    outcomes: list[str] = []

    async def on_receipt(receipt: DeliveryReceipt) -> None:
        if not outcomes:
            outcomes.append("fail")
            await release.wait()
            raise RuntimeError("first attempt fails")
        outcomes.append("ok")

    receiver = PushReceiver(on_receipt)
    answers: list[int] = []
    async with client(receiver) as c:

        async def post() -> None:
            answers.append((await post_push(c, FORM)).status_code)

        async with anyio.create_task_group() as tg:
            tg.start_soon(post)
            await wait_all_tasks_blocked()
            tg.start_soon(post)
            await wait_all_tasks_blocked()
            release.set()
    assert sorted(answers) == [200, 500]
    assert outcomes == ["fail", "ok"]
    async with client(receiver) as c:
        assert (await post_push(c, FORM)).acknowledged
    assert outcomes == ["fail", "ok"]


async def test_duplicate_answers_503_when_the_first_outlasts_busy_wait() -> None:
    release = anyio.Event()
    calls = 0

    async def on_receipt(receipt: DeliveryReceipt) -> None:
        nonlocal calls
        calls += 1
        await release.wait()

    receiver = PushReceiver(on_receipt, busy_wait=0)
    first: list[PushAnswer] = []
    async with client(receiver) as c:

        async def post_first() -> None:
            first.append(await post_push(c, FORM))

        async with anyio.create_task_group() as tg:
            tg.start_soon(post_first)
            await wait_all_tasks_blocked()
            response = await c.post(
                "/",
                content=httpx.QueryParams(FORM).__str__().encode(),
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            release.set()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "60"
    assert response.text != "success"
    assert first[0].acknowledged
    assert calls == 1
    assert receiver.statistics().busy == 1


class BrokenStore(DedupeStore):
    def __init__(self, *, claim: bool = False, complete: bool = False) -> None:
        self.inner = MemoryDedupe()
        self.fail_claim = claim
        self.fail_complete = complete

    async def claim(self, key: str, token: str, *, now: float, lease: float) -> ClaimState:
        if self.fail_claim:
            raise ConnectionError("store down")
        return await self.inner.claim(key, token, now=now, lease=lease)

    async def complete(self, key: str, token: str, *, now: float, ttl: float) -> None:
        if self.fail_complete:
            raise ConnectionError("store down")
        await self.inner.complete(key, token, now=now, ttl=ttl)

    async def release(self, key: str, token: str) -> None:
        raise ConnectionError("store down")


async def test_store_failure_on_claim_answers_503_without_handling() -> None:
    calls: list[DeliveryReceipt] = []
    receiver = PushReceiver(calls.append, dedupe=BrokenStore(claim=True))
    async with client(receiver) as c:
        answer = await post_push(c, FORM)
    assert answer.status_code == 503
    assert calls == []


async def test_store_failure_after_handling_still_acknowledges(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[DeliveryReceipt] = []
    receiver = PushReceiver(calls.append, dedupe=BrokenStore(complete=True))
    async with client(receiver) as c:
        answer = await post_push(c, FORM)
    assert answer.acknowledged
    assert len(calls) == 1
    assert any("could not record" in r.getMessage() for r in caplog.records)


async def test_store_failure_on_release_still_answers_500() -> None:
    def on_receipt(receipt: DeliveryReceipt) -> None:
        raise ValueError("nope")

    receiver = PushReceiver(on_receipt, dedupe=BrokenStore())
    async with client(receiver) as c:
        assert (await post_push(c, FORM)).status_code == 500


async def test_window_expiry_follows_the_injected_clock() -> None:
    clock = FakeClock()
    calls: list[DeliveryReceipt] = []
    receiver = PushReceiver(calls.append, clock=clock, dedupe_window=1800)
    async with client(receiver) as c:
        await post_push(c, FORM)
        clock.advance(1799)
        await post_push(c, FORM)
        assert len(calls) == 1
        clock.advance(1)
        await post_push(c, FORM)
        assert len(calls) == 2
        clock.advance(1000)
        await post_push(c, FORM)
    assert len(calls) == 2


async def test_window_zero_remembers_nothing_once_handled() -> None:
    calls: list[DeliveryReceipt] = []
    store = MemoryDedupe()
    receiver = PushReceiver(calls.append, dedupe=store, dedupe_window=0)
    async with client(receiver) as c:
        for _ in range(3):
            await post_push(c, FORM)
    assert len(calls) == 3
    assert len(store) == 0


async def test_a_crashed_workers_claim_lapses_after_the_lease() -> None:
    clock = FakeClock()
    store = MemoryDedupe()
    calls: list[DeliveryReceipt] = []
    receiver = PushReceiver(calls.append, dedupe=store, clock=clock, lease=120, busy_wait=0)
    key = parse_push(FORM).dedupe_key
    assert await store.claim(key, "dead-worker", now=clock.time(), lease=120) is ClaimState.CLAIMED
    async with client(receiver) as c:
        assert (await post_push(c, FORM)).status_code == 503
        clock.advance(120)
        assert (await post_push(c, FORM)).acknowledged
    assert len(calls) == 1


async def test_cancelled_handler_releases_its_claim() -> None:
    entered = anyio.Event()
    calls = 0

    async def on_receipt(receipt: DeliveryReceipt) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            entered.set()
            await anyio.sleep_forever()

    receiver = PushReceiver(on_receipt)
    async with client(receiver) as c:
        async with anyio.create_task_group() as tg:
            tg.start_soon(post_push, c, FORM)
            await entered.wait()
            tg.cancel_scope.cancel()
        assert (await post_push(c, FORM)).acknowledged
    assert calls == 2


async def test_kind_without_handler_is_acknowledged_and_counted() -> None:
    calls: list[DeliveryReceipt] = []
    receiver = PushReceiver(on_receipt=calls.append)
    async with client(receiver) as c:
        reply = await post_push(c, reply_form(content="你好"))
        review = await post_push(c, template_review_form(template_id=5))
    assert reply.acknowledged and review.acknowledged
    assert calls == []
    assert receiver.statistics().ignored == 2


async def test_handler_styles() -> None:
    threads: list[bool] = []
    main = threading.get_ident()

    def plain(receipt: DeliveryReceipt) -> None:
        threads.append(threading.get_ident() != main)

    class AsyncCallable:
        def __init__(self) -> None:
            self.seen: list[Reply] = []

        async def __call__(self, reply: Reply) -> None:
            await anyio.lowlevel.checkpoint()
            self.seen.append(reply)

    reviews: list[TemplateReview] = []

    async def review(tag: str, item: TemplateReview) -> None:
        reviews.append(item)

    on_reply = AsyncCallable()
    receiver = PushReceiver(plain, on_reply, functools.partial(review, "x"))
    async with client(receiver) as c:
        await post_push(c, FORM)
        await post_push(c, reply_form(content="好"))
        await post_push(c, template_review_form(template_id=9))
    assert threads == [True]  # plain handlers run in a worker thread
    assert len(on_reply.seen) == 1 and len(reviews) == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_plain_handler_returning_an_awaitable_is_awaited() -> None:
    """asyncio only: trio refuses to run such a function in a thread (the push gets 500)."""
    seen: list[str] = []

    async def later(receipt: DeliveryReceipt) -> None:
        seen.append(receipt.serial)

    receiver = PushReceiver(lambda r: later(r))
    async with client(receiver) as c:
        assert (await post_push(c, FORM)).acknowledged
    assert seen == [SMSID]


async def test_custom_parser_time_zone() -> None:
    utc_parser = functools.partial(parse_push, tz=timezone.utc)
    got: list[DeliveryReceipt] = []
    receiver = PushReceiver(got.append, parser=utc_parser)
    async with client(receiver) as c:
        await post_push(c, FORM)
    assert got[0].report_time == datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    assert got[0].report_time.utcoffset() == timedelta(0)


async def test_a_parser_that_crashes_answers_500(caplog: pytest.LogCaptureFixture) -> None:
    def parser(form: Mapping[str, str]) -> Push:
        raise KeyError("bug")

    receiver = PushReceiver(print, parser=parser)
    async with client(receiver) as c:
        assert (await post_push(c, FORM)).status_code == 500
    assert receiver.statistics().failed == 1


async def test_handler_failure_log_masks_the_number(caplog: pytest.LogCaptureFixture) -> None:
    def on_reply(reply: Reply) -> None:
        raise RuntimeError("boom")

    caplog.set_level(logging.DEBUG, logger="ihuyi_async.pushes")
    receiver = PushReceiver(on_reply=on_reply)
    async with client(receiver) as c:
        answer = await post_push(c, reply_form(mobile="13912345678", content="秘密内容"))
    assert answer.status_code == 500
    assert answer.body == "handler failed"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "139****5678" in text
    assert "13912345678" not in text
    assert "秘密内容" not in text
    assert receiver.statistics().failed == 1


async def test_lifespan_and_websocket_scopes() -> None:
    receiver = PushReceiver(print)
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await receiver({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    sent.clear()
    await receiver({"type": "websocket", "path": "/"}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_client_disconnect_before_the_body_sends_nothing() -> None:
    calls: list[DeliveryReceipt] = []
    receiver = PushReceiver(calls.append)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
    }
    await receiver(scope, receive, send)
    assert sent == [] and calls == []


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="at least one"):
        PushReceiver()
    with pytest.raises(TypeError, match="callable"):
        PushReceiver(on_receipt="not callable")  # type: ignore[arg-type]
    for kwargs in (
        {"dedupe_window": -1},
        {"dedupe_window": float("inf")},
        {"lease": 0},
        {"busy_wait": float("nan")},
    ):
        with pytest.raises(ValueError):
            PushReceiver(print, **kwargs)


def test_repr_shows_settings_not_secrets() -> None:
    receiver = PushReceiver(print, token="hunter2", allowed_networks=["10.0.0.0/8"])
    text = repr(receiver)
    assert "hunter2" not in text
    assert "10.0.0.0/8" in text and "receipt" in text
