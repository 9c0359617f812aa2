"""OpenTelemetry spans and metrics (#20), recorded by the SDK's in-memory exporters set
up as the global providers (the way the README tells applications to do it).

A send, a local validation error, a local refusal, a provider rejection, an unknown
outcome, a transport failure and a push each produce the documented span (name,
attributes, events, status) and metric points; no attribute value of any span, span
event or metric point holds the key, the content or an unmasked number.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry.trace import StatusCode

import ihuyi_async as ih
import ihuyi_async._telemetry as telemetry
from ihuyi_async import FakeClock, IhuyiClient
from ihuyi_async._telemetry import TELEMETRY
from ihuyi_async.limiter import Limiter

from .conftest import Recorded

pytestmark = pytest.mark.anyio

KEY = "S3CRETKEY0123456789abcdef"
TEXT = "您的验证码是：4821。请不要把验证码泄露给其他人。"
NUMBER = "13800138000"
SMSID = "16842079209571524017"
NOW = 1767240000
#: What may never show up in a span, an event or a metric point.
SECRETS = (KEY, NUMBER, "8001380", "4821", "验证码", TEXT)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Provider:
    """A mock ihuyi endpoint that answers ``answer`` and counts the requests it got."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if isinstance(self.answer, BaseException):
            raise self.answer
        if isinstance(self.answer, httpx.Response):
            return self.answer
        return httpx.Response(200, json=self.answer)


ACCEPTED = {"code": 2, "msg": "提交成功", "smsid": SMSID}


def client_for(provider: Provider, **kw: Any) -> IhuyiClient:
    kw.setdefault("limiter", None)
    return IhuyiClient(
        "APIID", KEY, transport=httpx.MockTransport(provider), clock=FakeClock(NOW, auto_advance=True), **kw
    )


def attrs_of(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def assert_no_secrets(otel: Recorded, *also: str) -> None:
    """Every attribute value of every span, span event and metric point (and every status
    description) is free of the key, the content and the full number."""
    values: list[str] = []
    for span in otel.spans():
        values += [f"{k}={v}" for k, v in attrs_of(span).items()]
        values += [f"{k}={v}" for e in span.events for k, v in dict(e.attributes or {}).items()]
        values += [e.name for e in span.events]
        values.append(span.status.description or "")
    points = [p for found in otel.metrics().values() for p in found]
    assert points, "no metric point recorded"
    metric_values = [f"{k}={v}" for p in points for k, v in dict(p.attributes or {}).items()]
    values += metric_values
    leaked = [v for v in values for secret in (*SECRETS, *also) if secret in v]
    assert not leaked
    assert not [v for v in metric_values if SMSID in v or "mobile" in v]  # low cardinality only


def send_points(otel: Recorded) -> dict[tuple[str, str | None], int]:
    """``ihuyi.sends`` as {(outcome, code): count}."""
    found: dict[tuple[str, str | None], int] = {}
    for p in otel.points("ihuyi.sends"):
        a = dict(p.attributes)
        found[(a["ihuyi.outcome"], a.get("ihuyi.code"))] = p.value
    return found


def assert_send_metrics(otel: Recorded, expected: dict[tuple[str, str | None], int]) -> None:
    assert send_points(otel) == expected
    for p in otel.points("ihuyi.sends"):
        a = dict(p.attributes)
        assert (a["ihuyi.method"], a["ihuyi.product"], a["ihuyi.flavour"]) == ("Submit", "sms", "legacy")
    durations = {dict(p.attributes)["ihuyi.outcome"]: p.count for p in otel.points("ihuyi.send.duration")}
    assert durations == {outcome: n for (outcome, _), n in expected.items()}


# --------------------------------------------------------------------------- sends


async def test_an_accepted_send(otel: Recorded) -> None:
    async with client_for(Provider(ACCEPTED)) as client:
        await client.send(NUMBER, TEXT)
    (span,) = otel.spans()
    attrs = attrs_of(span)
    assert span.name == "ihuyi Submit" and span.kind.name == "INTERNAL"
    assert attrs["ihuyi.outcome"] == "accepted" and attrs["ihuyi.smsid"] == SMSID and attrs["ihuyi.code"] == 2
    assert attrs["ihuyi.mobile"] == "138****8000" and attrs["ihuyi.segments"] == 1
    assert attrs["http.request.method"] == "POST" and attrs["server.address"] == "106.ihuyi.com"
    assert attrs["ihuyi.method"] == "Submit" and attrs["ihuyi.product"] == "sms"
    assert attrs["ihuyi.retry.attempts"] == 1
    assert "error.type" not in attrs
    assert span.status.status_code is StatusCode.UNSET  # success: the conventions leave it unset
    assert_send_metrics(otel, {("accepted", "2"): 1})
    assert otel.points("ihuyi.local_refusals") == []
    assert_no_secrets(otel)


async def test_a_provider_rejection(otel: Recorded) -> None:
    provider = Provider({"code": 4030, "msg": "手机号码已被列入黑名单"})
    async with client_for(provider) as client:
        with pytest.raises(ih.BlacklistedError):
            await client.send(NUMBER, TEXT)
    (span,) = otel.spans()
    attrs = attrs_of(span)
    assert attrs["ihuyi.outcome"] == "rejected" and attrs["ihuyi.code"] == 4030
    assert attrs["error.type"] == "BlacklistedError" and attrs["ihuyi.mobile"] == "138****8000"
    assert "ihuyi.smsid" not in attrs
    assert span.status.status_code is StatusCode.ERROR
    assert not span.status.description  # no exception text (it may name things)
    assert span.events == ()  # no exception event either
    assert_send_metrics(otel, {("rejected", "4030"): 1})
    assert_no_secrets(otel)


async def test_an_unknown_outcome(otel: Recorded) -> None:
    async with client_for(Provider(httpx.Response(502, text="bad gateway"))) as client:
        with pytest.raises(ih.DeliveryUnknownError):
            await client.send(NUMBER, TEXT)
    (span,) = otel.spans()
    attrs = attrs_of(span)
    assert attrs["ihuyi.outcome"] == "unknown" and attrs["error.type"] == "http_status"
    assert "ihuyi.code" not in attrs
    assert span.status.status_code is StatusCode.ERROR
    assert_send_metrics(otel, {("unknown", None): 1})
    assert_no_secrets(otel)


async def test_a_transport_failure_before_the_request_left(otel: Recorded) -> None:
    provider = Provider(httpx.ConnectError("connection refused"))
    async with client_for(provider, retry=ih.RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(ih.TransportError):
            await client.send(NUMBER, TEXT)
    (span,) = otel.spans()
    attrs = attrs_of(span)
    assert attrs["ihuyi.outcome"] == "not_sent" and attrs["error.type"] == "TransportError"
    assert span.status.status_code is StatusCode.ERROR
    assert_send_metrics(otel, {("not_sent", None): 1})
    assert_no_secrets(otel)


async def test_a_local_refusal(otel: Recorded) -> None:
    limiter = Limiter(clock=FakeClock(NOW), wait=False)
    provider = Provider(ACCEPTED)
    async with client_for(provider, limiter=limiter) as client:
        await client.send(NUMBER, TEXT)
        with pytest.raises(ih.LocalRateLimitError):
            await client.send(NUMBER, TEXT)
    assert provider.requests == 1
    accepted, refused = otel.spans()
    assert accepted.status.status_code is StatusCode.UNSET
    attrs = attrs_of(refused)
    assert attrs["ihuyi.outcome"] == "refused" and attrs["ihuyi.code"] == 4080
    assert attrs["error.type"] == "LocalRateLimitError" and attrs["ihuyi.mobile"] == "138****8000"
    assert refused.status.status_code is StatusCode.ERROR
    (event,) = refused.events
    assert event.name == "ihuyi.limiter.refused"
    assert dict(event.attributes or {}) == {"ihuyi.rule": "per_second", "ihuyi.code": 4080}
    assert_send_metrics(otel, {("accepted", "2"): 1, ("refused", "4080"): 1})
    (refusals,) = otel.points("ihuyi.local_refusals")
    assert refusals.value == 1
    assert dict(refusals.attributes) == {"ihuyi.rule": "per_second", "ihuyi.code": "4080"}
    assert_no_secrets(otel)


@pytest.mark.parametrize(
    ("mobile", "content", "kind", "error", "code"),
    [
        ("2380013800", TEXT, None, "InvalidRequestError", 406),  # not a mainland mobile
        (NUMBER, "   ", None, "InvalidRequestError", 404),  # blank content
        (NUMBER, TEXT + "😀", None, "ContentRejectedError", 4074),  # emoji
        (NUMBER, TEXT, "marketing", "ValueError", None),  # no such kind
    ],
)
async def test_a_local_validation_error(
    otel: Recorded, mobile: str, content: str, kind: Any, error: str, code: int | None
) -> None:
    provider = Provider(ACCEPTED)
    async with client_for(provider) as client:
        with pytest.raises((ih.ApiError, ValueError)) as raised:
            await client.send(mobile, content, kind=kind)
    assert type(raised.value).__name__ == error and provider.requests == 0
    (span,) = otel.spans()
    attrs = attrs_of(span)
    assert span.name == "ihuyi Submit"
    assert attrs["ihuyi.outcome"] == "invalid" and attrs["error.type"] == error
    assert attrs.get("ihuyi.code") == code
    assert "ihuyi.mobile" not in attrs and "ihuyi.segments" not in attrs  # the input was refused
    assert span.status.status_code is StatusCode.ERROR
    assert_send_metrics(otel, {("invalid", None if code is None else str(code)): 1})
    assert_no_secrets(otel, "2380013800")


async def test_a_template_send_refused_locally(otel: Recorded) -> None:
    async with client_for(Provider(ACCEPTED)) as client:  # legacy: no template mode
        with pytest.raises(ih.UnsupportedOperationError):
            await client.send_template(NUMBER, template_id=1, variables=["4821"])
    (span,) = otel.spans()
    assert attrs_of(span)["ihuyi.outcome"] == "invalid"
    assert attrs_of(span)["error.type"] == "UnsupportedOperationError"
    assert_send_metrics(otel, {("invalid", None): 1})
    assert_no_secrets(otel)


async def test_a_product_clients_validation_error(otel: Recorded) -> None:
    provider = Provider(ACCEPTED)
    async with ih.VoiceCodeClient(
        "APIID", KEY, transport=httpx.MockTransport(provider), clock=FakeClock(NOW), limiter=None
    ) as client:
        with pytest.raises(ValueError, match="ASCII digits"):
            await client.send(NUMBER, "48")
    assert provider.requests == 0
    (span,) = otel.spans()
    attrs = attrs_of(span)
    assert attrs["ihuyi.product"] == "voice-code" and attrs["ihuyi.outcome"] == "invalid"
    assert span.status.status_code is StatusCode.ERROR
    (point,) = otel.points("ihuyi.sends")
    assert dict(point.attributes)["ihuyi.product"] == "voice-code"
    assert dict(point.attributes)["ihuyi.outcome"] == "invalid"
    assert_no_secrets(otel)


async def test_a_limiter_wait_is_an_event_and_a_histogram(otel: Recorded) -> None:
    limiter = Limiter(clock=FakeClock(NOW, auto_advance=True))
    async with client_for(Provider(ACCEPTED), limiter=limiter) as client:
        await client.send(NUMBER, TEXT)
        await client.send(NUMBER, TEXT)  # waits its turn
    first, second = otel.spans()
    assert attrs_of(first)["ihuyi.limiter.wait"] == 0 and first.events == ()
    assert attrs_of(second)["ihuyi.limiter.wait"] == pytest.approx(1.2)
    (event,) = second.events
    assert event.name == "ihuyi.limiter.wait"
    assert dict(event.attributes or {})["ihuyi.limiter.wait"] == pytest.approx(1.2)
    (wait,) = otel.points("ihuyi.limiter.wait")
    assert wait.count == 1 and wait.sum == pytest.approx(1.2)
    assert_no_secrets(otel)


async def test_a_balance_and_the_callers_span_as_parent(otel: Recorded) -> None:
    from opentelemetry import trace

    provider = Provider({"code": 2, "msg": "查询成功", "num": 7})
    with trace.get_tracer("signup").start_as_current_span("signup") as parent:
        async with client_for(provider) as client:
            assert (await client.balance()).num == 7
    (balance,) = otel.spans("ihuyi GetNum")
    assert balance.parent is not None and balance.parent.span_id == parent.get_span_context().span_id
    assert attrs_of(balance)["ihuyi.outcome"] == "accepted"
    (point,) = otel.points("ihuyi.sends")
    assert dict(point.attributes)["ihuyi.method"] == "GetNum"


async def test_an_add_template(otel: Recorded) -> None:
    provider = Provider({"code": 2, "msg": "提交成功", "templateid": 42})
    async with client_for(provider) as client:
        assert (await client.add_template("您的验证码是：【变量】。")).template_id == 42
    (span,) = otel.spans()
    assert span.name == "ihuyi AddTemplate"
    assert attrs_of(span)["ihuyi.outcome"] == "accepted"
    assert_no_secrets(otel, "【变量】")


async def test_an_add_template_refused_locally(otel: Recorded) -> None:
    async with client_for(Provider(ACCEPTED)) as client:
        with pytest.raises(ih.InvalidRequestError):
            await client.add_template("  ")
    (span,) = otel.spans()
    assert attrs_of(span)["ihuyi.outcome"] == "invalid" and attrs_of(span)["ihuyi.code"] == 404
    assert span.status.status_code is StatusCode.ERROR


async def test_without_an_sdk_no_span_is_built(no_sdk: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("telemetry work with no SDK configured")

    monkeypatch.setattr(telemetry, "_LiveSpan", boom)
    monkeypatch.setattr(telemetry, "mask_mobile", boom)
    assert TELEMETRY.enabled is False  # the API's proxy providers: the shared no-op span
    async with client_for(Provider(ACCEPTED)) as client:
        assert (await client.send(NUMBER, TEXT)).smsid == SMSID
        with pytest.raises(ih.InvalidRequestError):
            await client.send("2380013800", TEXT)
    async with client_for(Provider({"code": 4030, "msg": "手机号码已被列入黑名单"})) as client:
        with pytest.raises(ih.BlacklistedError):
            await client.send(NUMBER, TEXT)


async def test_an_sdk_set_up_after_the_first_send_is_picked_up_within_a_second(
    no_sdk: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    now = [1000.0]

    class Time:  # the module's clock, by hand
        perf_counter = staticmethod(lambda: now[0])
        monotonic = staticmethod(lambda: now[0])

    monkeypatch.setattr(telemetry, "time", Time)
    async with client_for(Provider(ACCEPTED)) as client:
        await client.send(NUMBER, TEXT)  # no SDK yet
        exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        now[0] += 0.5
        await client.send(NUMBER, TEXT)  # "no SDK" is remembered for a second
        assert exporter.get_finished_spans() == ()
        now[0] += 0.6
        await client.send(NUMBER, TEXT)
    otel = Recorded(exporter, reader)
    (span,) = otel.spans()
    assert attrs_of(span)["ihuyi.outcome"] == "accepted"
    assert send_points(otel) == {("accepted", "2"): 1}


# --------------------------------------------------------------------------- pushes


async def test_pushes_their_kind_code_duplicate_and_result(otel: Recorded) -> None:
    from ihuyi_async.pushes import DeliveryReceipt, PushReceiver
    from ihuyi_async.testing import receipt_form

    got: list[DeliveryReceipt] = []

    async def on_receipt(receipt: DeliveryReceipt) -> None:
        got.append(receipt)

    app = PushReceiver(on_receipt)
    delivered = receipt_form(smsid=SMSID, mobile=NUMBER)
    undelivered = receipt_form(smsid="16842079209571524018", mobile=NUMBER, code=4052)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://push.test") as http:
        for form in (delivered, delivered, undelivered):
            assert (await http.post("/", data=form)).status_code == 200
    assert len(got) == 2
    pushes = otel.spans("ihuyi push")
    assert [s.kind.name for s in pushes] == ["SERVER"] * 3
    assert [attrs_of(s) for s in pushes] == [
        {"ihuyi.push.kind": "receipt", "ihuyi.push.result": "handled", "ihuyi.push.duplicate": False,
         "ihuyi.code": 2},
        {"ihuyi.push.kind": "receipt", "ihuyi.push.result": "duplicates", "ihuyi.push.duplicate": True,
         "ihuyi.code": 2},
        {"ihuyi.push.kind": "receipt", "ihuyi.push.result": "handled", "ihuyi.push.duplicate": False,
         "ihuyi.code": 4052},
    ]
    assert all(s.status.status_code is StatusCode.UNSET for s in pushes)
    counts = {
        (dict(p.attributes)["ihuyi.push.kind"], dict(p.attributes)["ihuyi.push.result"]): p.value
        for p in otel.points("ihuyi.pushes")
    }
    assert counts == {("receipt", "handled"): 2, ("receipt", "duplicates"): 1}
    assert_no_secrets(otel)


async def test_a_push_whose_handler_fails(otel: Recorded) -> None:
    from ihuyi_async.pushes import DeliveryReceipt, PushReceiver
    from ihuyi_async.testing import receipt_form

    async def on_receipt(receipt: DeliveryReceipt) -> None:
        raise RuntimeError(f"database down while storing {NUMBER}")

    app = PushReceiver(on_receipt)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://push.test") as http:
        assert (await http.post("/", data=receipt_form(smsid=SMSID, mobile=NUMBER))).status_code == 500
    (span,) = otel.spans("ihuyi push")
    attrs = attrs_of(span)
    assert attrs["ihuyi.push.result"] == "failed" and attrs["error.type"] == "failed"
    assert span.status.status_code is StatusCode.ERROR and span.events == ()
    (point,) = otel.points("ihuyi.pushes")
    assert dict(point.attributes) == {"ihuyi.push.kind": "receipt", "ihuyi.push.result": "failed"}
    assert_no_secrets(otel)


async def test_an_idempotency_key_reused_with_other_content(otel: Recorded) -> None:
    provider = Provider(ACCEPTED)
    async with client_for(provider) as client:
        await client.send(NUMBER, TEXT, idempotency_key="signup-42")
        with pytest.raises(ih.IdempotencyKeyReuseError):
            await client.send(NUMBER, TEXT + "!", idempotency_key="signup-42")
    assert provider.requests == 1
    _, reused = otel.spans()
    assert attrs_of(reused)["ihuyi.outcome"] == "invalid"
    assert attrs_of(reused)["error.type"] == "IdempotencyKeyReuseError"
    assert reused.status.status_code is StatusCode.ERROR
    assert_send_metrics(otel, {("accepted", "2"): 1, ("invalid", None): 1})
    assert_no_secrets(otel, "signup-42")


def test_the_readme_lists_each_outcome_these_tests_produce() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Observability (OpenTelemetry)", 1)[1].split("\n## ", 1)[0]
    table = section.split("| outcome | meaning |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| `")]
    documented = {row[1].strip().strip("`"): row[5].strip() for row in rows}
    produced = {"accepted": "UNSET", "rejected": "ERROR", "refused": "ERROR", "invalid": "ERROR",
                "not_sent": "ERROR", "unknown": "ERROR"}  # by the tests above
    assert documented == produced
    assert all(f"`{outcome}`" in (telemetry.__doc__ or "") for outcome in produced)
