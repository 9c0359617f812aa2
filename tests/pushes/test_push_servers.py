"""The receiver in real servers on loopback: FastAPI under uvicorn, and aiohttp.

Each push kind is posted as the provider posts it (form-encoded, UTF-8 Chinese
content) with :func:`post_push`; handlers, answers and retries are checked.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import httpx
import pytest
from aiohttp import web

from ihuyi_async.pushes import (
    CHINA_TZ,
    DeliveryReceipt,
    PushReceiver,
    Reply,
    TemplateReview,
    aiohttp_handler,
)
from ihuyi_async.testing import post_push, receipt_form, reply_form, template_review_form

from .push_servers import ServeFactory, serve_aiohttp

pytestmark = pytest.mark.anyio

SMSID = "16842079209571524017"
MOBILE = "13912345678"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    """Handlers that record what they were given; ``fail`` makes the next calls raise."""

    def __init__(self) -> None:
        self.receipts: list[DeliveryReceipt] = []
        self.replies: list[Reply] = []
        self.reviews: list[TemplateReview] = []
        self.fail = 0
        self.calls = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise RuntimeError(f"database down while storing {MOBILE}")

    async def on_receipt(self, receipt: DeliveryReceipt) -> None:
        self._maybe_fail()
        self.receipts.append(receipt)

    def on_reply(self, reply: Reply) -> None:  # a plain function: runs in a worker thread
        self._maybe_fail()
        self.replies.append(reply)

    async def on_template_review(self, review: TemplateReview) -> None:
        self._maybe_fail()
        self.reviews.append(review)

    def receiver(self, **kwargs: Any) -> PushReceiver:
        return PushReceiver(
            self.on_receipt,
            self.on_reply,
            self.on_template_review,
            **kwargs,
        )


async def test_each_kind_is_handled_and_acknowledged(serve: ServeFactory) -> None:
    rec = Recorder()
    async with serve(rec.receiver()) as url:
        receipt = await post_push(
            url,
            receipt_form(
                smsid=SMSID, mobile=MOBILE, msg="用户已成功收到", report_time="2026-01-01 12:00:05"
            ),
        )
        marketing = await post_push(
            url, receipt_form(task_id="T20260101", mobile=MOBILE, code=0, msg="空号")
        )
        reply = await post_push(
            url,
            reply_form(
                mobile=MOBILE,
                content="好的，明天见！退订",
                smsid=SMSID,
                reply_time="2026-01-01 12:03:00",
                time_field="replyTime",
            ),
        )
        review = await post_push(
            url, template_review_form(template_id=1234, code=0, msg="签名不规范")
        )
    for answer in (receipt, marketing, reply, review):
        assert answer.status_code == 200
        assert answer.body == "success"
        assert answer.acknowledged
    assert len(rec.receipts) == 2
    first, second = rec.receipts
    assert first.smsid == SMSID and first.task_id is None
    assert first.delivered and first.code == 2 and first.msg == "用户已成功收到"
    assert first.mobile == MOBILE
    assert first.report_time == datetime(2026, 1, 1, 12, 0, 5, tzinfo=CHINA_TZ)
    assert first.report_time is not None and first.report_time.utcoffset() is not None
    assert second.task_id == "T20260101" and second.smsid is None
    assert not second.delivered and second.msg == "空号"
    assert rec.replies == [
        Reply(
            mobile=MOBILE,
            content="好的，明天见！退订",
            smsid=SMSID,
            reply_time=datetime(2026, 1, 1, 12, 3, tzinfo=CHINA_TZ),
        )
    ]
    assert rec.reviews == [TemplateReview(template_id=1234, code=0, msg="签名不规范")]
    assert not rec.reviews[0].approved


async def test_success_has_plain_text_body(serve: ServeFactory) -> None:
    rec = Recorder()
    async with (
        serve(rec.receiver()) as url,
        httpx.AsyncClient(trust_env=False) as client,
    ):
        response = await client.post(url, data=receipt_form(smsid=SMSID))
    assert response.status_code == 200
    assert response.content == b"success"
    assert response.headers["content-type"].startswith("text/plain")


async def test_handler_failure_answers_500_then_the_retry_is_handled(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    rec.fail = 1
    form = receipt_form(smsid=SMSID, mobile=MOBILE)
    caplog.set_level(logging.ERROR, logger="ihuyi_async.pushes")
    async with serve(rec.receiver()) as url:
        failed = await post_push(url, form)
        retried = await post_push(url, form)
        again = await post_push(url, form)
    assert failed.status_code == 500
    assert "success" not in failed.body
    assert retried.acknowledged and again.acknowledged
    assert rec.calls == 2  # the failure, then the retry; the third post is a duplicate
    assert len(rec.receipts) == 1
    ours = [r for r in caplog.records if r.name == "ihuyi_async.pushes"]
    assert len(ours) == 1
    message = ours[0].getMessage()
    assert "139****5678" in message
    assert MOBILE not in message


@pytest.mark.parametrize(
    "form",
    [
        receipt_form(smsid=SMSID, mobile=MOBILE),
        receipt_form(task_id="T1", mobile=MOBILE, code=5),
        reply_form(mobile=MOBILE, content="收到，谢谢", reply_time="2026-01-01 12:00:00"),
        template_review_form(template_id=77, code=2),
    ],
    ids=["receipt", "marketing-receipt", "reply", "template-review"],
)
async def test_three_identical_posts_are_handled_once(
    serve: ServeFactory, form: dict[str, str]
) -> None:
    rec = Recorder()
    receiver = rec.receiver()
    async with serve(receiver) as url:
        answers = [await post_push(url, form) for _ in range(3)]
    assert [a.body for a in answers] == ["success"] * 3
    assert rec.calls == 1
    stats = receiver.statistics()
    assert (stats.handled, stats.duplicates) == (1, 2)


async def test_a_new_status_of_the_same_message_is_a_new_item(serve: ServeFactory) -> None:
    rec = Recorder()
    async with serve(rec.receiver()) as url:
        await post_push(url, receipt_form(smsid=SMSID, code=0, msg="UNDELIV"))
        await post_push(url, receipt_form(smsid=SMSID, code=2))
        await post_push(url, receipt_form(smsid=SMSID, code=2))
    assert [r.code for r in rec.receipts] == [0, 2]


async def test_marketing_receipts_of_one_task_for_two_numbers_are_two_items(
    serve: ServeFactory,
) -> None:
    rec = Recorder()
    async with serve(rec.receiver()) as url:
        await post_push(url, receipt_form(task_id="T9", mobile="13800138000"))
        await post_push(url, receipt_form(task_id="T9", mobile="13800138001"))
    assert [r.mobile for r in rec.receipts] == ["13800138000", "13800138001"]


async def test_token_in_path_and_query_over_the_wire(serve: ServeFactory) -> None:
    rec = Recorder()
    form = receipt_form(smsid=SMSID)
    async with serve(rec.receiver(token="Zs0-secret_Token")) as url:
        bare = await post_push(url, form)
        wrong = await post_push(url, form, url="wrong-token")
        in_path = await post_push(url, form, url="Zs0-secret_Token")
        in_query = await post_push(url, receipt_form(smsid="2"), url="?token=Zs0-secret_Token")
    assert (bare.status_code, wrong.status_code) == (403, 403)
    assert in_path.acknowledged and in_query.acknowledged
    assert [r.smsid for r in rec.receipts] == [SMSID, "2"]


async def test_real_peer_address_is_checked(serve: ServeFactory) -> None:
    rec = Recorder()
    async with serve(rec.receiver(allowed_networks=["10.0.0.0/8"])) as url:
        refused = await post_push(
            url, receipt_form(smsid=SMSID), headers={"X-Forwarded-For": "10.0.0.1"}
        )
    async with serve(rec.receiver(allowed_networks=["127.0.0.0/8", "::1"])) as url:
        allowed = await post_push(url, receipt_form(smsid=SMSID))
    assert refused.status_code == 403
    assert allowed.acknowledged
    assert len(rec.receipts) == 1


async def test_wrong_method_and_media_type_over_the_wire(serve: ServeFactory) -> None:
    rec = Recorder()
    async with (
        serve(rec.receiver()) as url,
        httpx.AsyncClient(trust_env=False) as client,
    ):
        get = await client.get(url, params=receipt_form(smsid=SMSID))
        as_json = await client.post(url, json=receipt_form(smsid=SMSID))
    assert get.status_code == 405
    assert get.headers["allow"] == "POST"
    assert as_json.status_code == 415
    assert rec.calls == 0


async def test_aiohttp_handler_on_a_route_with_a_token() -> None:
    rec = Recorder()
    handler = aiohttp_handler(rec.receiver(token="t0ken"))
    app = web.Application()
    app.router.add_route("*", "/sms/push/{token}", handler)
    async with serve_aiohttp(app) as root:
        ok = await post_push(f"{root}/sms/push/t0ken", receipt_form(smsid=SMSID))
        bad = await post_push(f"{root}/sms/push/t0ke", receipt_form(smsid=SMSID))
    assert ok.acknowledged
    assert bad.status_code == 403
    assert len(rec.receipts) == 1
