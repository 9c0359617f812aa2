"""OpenTelemetry spans and metrics (#20), recorded by the SDK's in-memory exporters.

A send, a local refusal, a provider rejection, an unknown outcome and a balance each
produce the documented span and metric points; no attribute holds the key, the
content or an unmasked number.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import ihuyi_async as ih
from ihuyi_async import FakeClock, IhuyiClient
from ihuyi_async._telemetry import TELEMETRY, instrument
from ihuyi_async.limiter import Limiter

pytestmark = pytest.mark.anyio

KEY = "S3CRETKEY0123456789abcdef"
TEXT = "您的验证码是：4821。请不要把验证码泄露给其他人。"
NUMBER = "13800138000"
NOW = 1767240000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def otel() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    instrument(tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader]))
    try:
        yield spans, reader
    finally:
        instrument()


def client_for(respond: Any, **kw: Any) -> IhuyiClient:
    kw.setdefault("limiter", None)
    return IhuyiClient(
        "APIID", KEY, transport=httpx.MockTransport(respond), clock=FakeClock(NOW, auto_advance=True), **kw
    )


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"code": 2, "msg": "提交成功", "smsid": "16842079209571524017"})


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    found: list[Any] = []
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def no_secrets(attrs: Any) -> None:
    text = " ".join(f"{k}={v}" for k, v in dict(attrs or {}).items())
    assert KEY not in text and NUMBER not in text and "4821" not in text and "验证码" not in text


async def test_an_accepted_send(otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    spans, reader = otel
    async with client_for(ok) as client:
        await client.send(NUMBER, TEXT)
    (span,) = spans.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert span.name == "ihuyi Submit"
    assert attrs["ihuyi.outcome"] == "accepted" and attrs["ihuyi.smsid"] == "16842079209571524017"
    assert attrs["ihuyi.mobile"] == "138****8000" and attrs["ihuyi.segments"] == 1
    assert attrs["http.request.method"] == "POST" and attrs["server.address"] == "106.ihuyi.com"
    no_secrets(attrs)
    (sends,) = points(reader, "ihuyi.sends")
    assert sends.value == 1 and dict(sends.attributes)["ihuyi.outcome"] == "accepted"
    no_secrets(sends.attributes)
    assert points(reader, "ihuyi.send.duration")[0].count == 1


async def test_a_provider_rejection(otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    spans, reader = otel
    reject = lambda r: httpx.Response(200, json={"code": 4030, "msg": "手机号码已被列入黑名单"})  # noqa: E731
    async with client_for(reject) as client:
        with pytest.raises(ih.BlacklistedError):
            await client.send(NUMBER, TEXT)
    attrs = dict(spans.get_finished_spans()[0].attributes or {})
    assert attrs["ihuyi.outcome"] == "rejected" and attrs["ihuyi.code"] == 4030
    assert attrs["error.type"] == "BlacklistedError"
    (sends,) = points(reader, "ihuyi.sends")
    assert dict(sends.attributes)["ihuyi.code"] == "4030"


async def test_an_unknown_outcome(otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    spans, _ = otel
    async with client_for(lambda r: httpx.Response(502, text="bad gateway")) as client:
        with pytest.raises(ih.DeliveryUnknownError):
            await client.send(NUMBER, TEXT)
    (span,) = spans.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert attrs["ihuyi.outcome"] == "unknown" and attrs["error.type"] == "http_status"
    assert span.status.status_code.name == "ERROR"


async def test_a_local_refusal(otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    spans, reader = otel
    limiter = Limiter(clock=FakeClock(NOW), wait=False)
    async with client_for(ok, limiter=limiter) as client:
        await client.send(NUMBER, TEXT)
        with pytest.raises(ih.LocalRateLimitError):
            await client.send(NUMBER, TEXT)
    refused = spans.get_finished_spans()[1]
    attrs = dict(refused.attributes or {})
    assert attrs["ihuyi.outcome"] == "refused" and attrs["ihuyi.code"] == 4080
    assert [e.name for e in refused.events] == ["ihuyi.limiter.refused"]
    (refusals,) = points(reader, "ihuyi.local_refusals")
    assert dict(refusals.attributes) == {"ihuyi.rule": "per_second", "ihuyi.code": "4080"}


async def test_a_limiter_wait_is_an_event_and_a_histogram(
    otel: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    spans, reader = otel
    limiter = Limiter(clock=FakeClock(NOW, auto_advance=True))
    async with client_for(ok, limiter=limiter) as client:
        await client.send(NUMBER, TEXT)
        await client.send(NUMBER, TEXT)  # waits its turn
    second = spans.get_finished_spans()[1]
    assert dict(second.attributes or {})["ihuyi.limiter.wait"] == pytest.approx(1.2)
    assert [e.name for e in second.events] == ["ihuyi.limiter.wait"]
    assert points(reader, "ihuyi.limiter.wait")[0].count == 1


async def test_a_balance_and_the_callers_span_as_parent(
    otel: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    spans, _ = otel
    tracer = TELEMETRY.tracer()
    with tracer.start_as_current_span("signup") as parent:
        async with client_for(lambda r: httpx.Response(200, json={"code": 2, "msg": "查询成功", "num": 7})) as client:
            assert (await client.balance()).num == 7
    balance = next(s for s in spans.get_finished_spans() if s.name == "ihuyi GetNum")
    assert balance.parent is not None and balance.parent.span_id == parent.get_span_context().span_id


async def test_without_an_sdk_nothing_is_recorded() -> None:
    instrument()
    assert TELEMETRY.enabled is False  # the API's proxy providers: a shared no-op span
    async with client_for(ok) as client:
        await client.send(NUMBER, TEXT)


async def test_a_push_and_its_duplicate(otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    from ihuyi_async.pushes import DeliveryReceipt, PushReceiver
    from ihuyi_async.testing import receipt_form

    spans, reader = otel
    got: list[DeliveryReceipt] = []

    async def on_receipt(receipt: DeliveryReceipt) -> None:
        got.append(receipt)

    app = PushReceiver(on_receipt)
    form = receipt_form(smsid="16842079209571524017", mobile=NUMBER)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://push.test") as http:
        for _ in range(2):
            answer = await http.post("/", data=form)
            assert answer.status_code == 200
    assert len(got) == 1
    pushes = [s for s in spans.get_finished_spans() if s.name == "ihuyi push"]
    assert [dict(s.attributes or {})["ihuyi.push.duplicate"] for s in pushes] == [False, True]
    for span in pushes:
        no_secrets(span.attributes)
    results = {dict(p.attributes)["ihuyi.push.result"]: p.value for p in points(reader, "ihuyi.pushes")}
    assert results == {"handled": 1, "duplicates": 1}


async def test_an_add_template(otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    spans, _ = otel
    answer = lambda r: httpx.Response(200, json={"code": 2, "msg": "提交成功", "templateid": 42})  # noqa: E731
    async with client_for(answer) as client:
        assert (await client.add_template("您的验证码是：【变量】。")).template_id == 42
    (span,) = spans.get_finished_spans()
    assert span.name == "ihuyi AddTemplate"
    assert dict(span.attributes or {})["ihuyi.outcome"] == "accepted"
    no_secrets(span.attributes)
