"""OpenTelemetry traces and metrics of every call, limiter wait and push (extra ``otel``).

Depends only on ``opentelemetry-api``. Users enable it the OpenTelemetry way, by
setting the global providers (``trace.set_tracer_provider``,
``metrics.set_meter_provider``); there is no public switch of our own. Without the
API, or with no SDK configured (the API's proxy providers still in place), every hook
is a shared no-op object (the providers are looked at again at most once a second, so
an SDK set up after the first send is picked up within a second). :func:`instrument`
is internal (the benchmarks give it providers that are not the global ones).

**Spans** (tracer ``ihuyi_async``, kind INTERNAL, a child of the caller's current
span and the parent of any httpx / aiohttp instrumentation's HTTP span):

* ``ihuyi Submit`` / ``ihuyi GetNum`` / ``ihuyi AddTemplate`` — attributes
  ``http.request.method``, ``server.address``, ``error.type`` (OpenTelemetry's
  semantic conventions) and ``ihuyi.method``, ``ihuyi.flavour``, ``ihuyi.product``,
  ``ihuyi.mobile`` (masked), ``ihuyi.segments``, ``ihuyi.code``, ``ihuyi.outcome``,
  ``ihuyi.smsid``, ``ihuyi.limiter.wait`` (seconds), ``ihuyi.retry.attempts``;
  events ``ihuyi.limiter.wait`` and ``ihuyi.limiter.refused`` (rule, code).
  A call refused by local validation (a bad number, blank content, a bad argument)
  still has its span, ended at once, with no ``ihuyi.mobile``.
* ``ihuyi push`` — ``ihuyi.push.kind``, ``ihuyi.code``, ``ihuyi.push.duplicate``,
  ``ihuyi.push.result``.

``ihuyi.outcome`` (the statuses of ``send_many``'s outcomes): ``accepted`` (code 2),
``rejected`` (the provider answered another code), ``refused`` (our limiter),
``invalid`` (local validation: nothing sent), ``not_sent`` (the transport failed
before the request left, a shared store was unreachable, an idempotency key's first
call is still in flight) or ``unknown`` (it may have been sent; also a cancellation).
Every outcome but ``accepted`` sets ``error.type`` (the exception's class name, or
:attr:`~ihuyi_async.DeliveryUnknownError.reason` for an unknown outcome) and the span
status ERROR, as OpenTelemetry's conventions for a failed operation say; an accepted
call leaves the status UNSET. A push whose handler failed (``failed``) or that was
turned away (``busy``) is ERROR too, ``error.type`` being that result.

Never the content, the full number or the key; no exception message (only class
names and reasons) and no exception event.

**Metrics** (meter ``ihuyi_async``; low-cardinality attributes only: no numbers, no
smsids): counters ``ihuyi.sends`` (method, product, outcome, code),
``ihuyi.local_refusals`` (rule, code), ``ihuyi.pushes`` (kind, result); histograms
``ihuyi.send.duration`` and ``ihuyi.limiter.wait`` (seconds).
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from ._exceptions import (
    ApiError,
    DeliveryUnknownError,
    IdempotencyInProgressError,
    LocalRateLimitError,
    ProtocolError,
    StoreUnavailableError,
    TransportError,
)
from ._redact import mask_mobile

_trace: Any
_metrics: Any
try:  # the extra
    from opentelemetry import metrics as _otel_metrics
    from opentelemetry import trace as _otel_trace

    _trace, _metrics = _otel_trace, _otel_metrics
except ImportError:  # pragma: no cover - depends on the environment
    _trace = _metrics = None

__all__ = ["NO_SPAN", "TELEMETRY", "CallSpan", "Telemetry", "instrument"]

NAME = "ihuyi_async"


class CallSpan:
    """What a call reports; this base class is the no-op one."""

    __slots__ = ()

    def __enter__(self) -> CallSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def set(self, key: str, value: str | int | float | bool) -> None:
        """Set a span attribute (``ihuyi.`` names)."""

    def waited(self, seconds: float) -> None:
        """The limiter made this send wait ``seconds`` for its turn."""

    def refused(self, rule: str, code: int) -> None:
        """The limiter refused this send (rule, the provider code it stands for)."""

    def outcome(self, outcome: str, code: int | None = None, error_type: str | None = None) -> None:
        """How the call ended."""

    def failed(self, exc: BaseException) -> None:
        """The call ended with ``exc``: its outcome, code and ``error.type`` from it."""


def outcome_of(exc: BaseException) -> tuple[str, int | None, str]:
    """``(ihuyi.outcome, ihuyi.code, error.type)`` of a call that raised ``exc``."""
    name = type(exc).__name__
    if isinstance(exc, ApiError):  # LocalRateLimitError is handled by refused()
        return ("invalid" if exc.local else "rejected"), exc.code, name
    if isinstance(exc, DeliveryUnknownError):
        return "unknown", None, str(exc.reason or name)
    if isinstance(exc, TransportError | StoreUnavailableError | IdempotencyInProgressError):
        return "not_sent", None, name
    if isinstance(exc, ProtocolError):
        return "unknown", None, name
    if isinstance(exc, ValueError | TypeError):  # a bad argument, a key reused (a ValueError)
        return "invalid", None, name
    return "unknown", None, name  # a cancellation, or something unexpected


#: The span of every call while nothing records.
NO_SPAN = CallSpan()


class _LiveSpan(CallSpan):
    __slots__ = (
        "_attrs", "_cm", "_code", "_outcome", "_span", "_span_attrs", "_started", "_telemetry"
    )

    def __init__(
        self, telemetry: Telemetry, name: str, attrs: dict[str, Any], span_attrs: dict[str, Any]
    ) -> None:
        self._telemetry = telemetry
        self._attrs = attrs  # the metric attributes (low cardinality), on the span too
        self._span_attrs = span_attrs
        self._outcome = ""
        self._code: int | None = None
        tracer = telemetry.tracer()
        self._cm: Any = None
        if tracer is not None and _trace is not None:
            self._cm = tracer.start_as_current_span(
                name,
                kind=_trace.SpanKind.INTERNAL,
                record_exception=False,
                set_status_on_exception=False,
            )
        self._span: Any = None
        self._started = 0.0

    def __enter__(self) -> CallSpan:
        self._started = time.perf_counter()
        if self._cm is not None:
            self._span = self._cm.__enter__()
            self._span.set_attributes({**self._attrs, **self._span_attrs})
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._outcome and exc is not None:  # ended by something no hook reported
            self.failed(exc)
        telemetry = self._telemetry
        attrs = dict(self._attrs)
        attrs["ihuyi.outcome"] = self._outcome or "accepted"
        if self._code is not None:
            attrs["ihuyi.code"] = str(self._code)
        telemetry.count_send(attrs, time.perf_counter() - self._started)
        if self._cm is not None:
            self._cm.__exit__(exc_type, exc, tb)

    def set(self, key: str, value: str | int | float | bool) -> None:
        if self._span is not None:
            self._span.set_attribute(key, value)

    def waited(self, seconds: float) -> None:
        self.set("ihuyi.limiter.wait", seconds)
        if seconds > 0:
            if self._span is not None:
                self._span.add_event("ihuyi.limiter.wait", {"ihuyi.limiter.wait": seconds})
            self._telemetry.record_wait(seconds)

    def refused(self, rule: str, code: int) -> None:
        if self._span is not None:
            self._span.add_event("ihuyi.limiter.refused", {"ihuyi.rule": rule, "ihuyi.code": code})
        self._telemetry.count_refusal(rule, code)
        self.outcome("refused", code, "LocalRateLimitError")

    def outcome(self, outcome: str, code: int | None = None, error_type: str | None = None) -> None:
        self._outcome, self._code = outcome, code
        self.set("ihuyi.outcome", outcome)
        if code is not None:
            self.set("ihuyi.code", code)
        if error_type is not None:  # the call failed: ERROR, with no message (it may name things)
            self.set("error.type", error_type)
            if self._span is not None:
                self._span.set_status(_trace.StatusCode.ERROR)

    def failed(self, exc: BaseException) -> None:
        if isinstance(exc, LocalRateLimitError):
            self.refused(exc.rule, exc.code)
        else:
            self.outcome(*outcome_of(exc))


class Telemetry:
    """The library's instruments.

    :param tracer_provider: default: the global one (``opentelemetry.trace``).
    :param meter_provider: default: the global one (``opentelemetry.metrics``).
    """

    __slots__ = ("_checked", "_instruments", "_meter_provider", "_tracer", "_tracer_provider")

    def __init__(self, *, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._tracer: Any = None
        self._instruments: Any = None
        self._checked = -1.0  # when the global providers were last found to be the API's proxies

    def use(self, *, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        """Record through these providers from now on (``None``: the global ones)."""
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._tracer = None
        self._instruments = None
        self._checked = -1.0

    @property
    def enabled(self) -> bool:
        """Whether an SDK (or a provider given here) would record anything."""
        if _trace is None or _metrics is None:
            return False
        if self._tracer_provider is not None or self._meter_provider is not None:
            return True
        now = time.monotonic()
        if now - self._checked < 1.0:  # no SDK a moment ago: look again at most once a second
            return False
        tracing = not isinstance(_trace.get_tracer_provider(), _trace.ProxyTracerProvider)
        if tracing or type(_metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider":
            return True
        self._checked = now
        return False

    def tracer(self) -> Any:
        if _trace is None:
            return None
        if self._tracer is None:
            provider = self._tracer_provider or _trace.get_tracer_provider()
            self._tracer = provider.get_tracer(NAME)
        return self._tracer

    def _meters(self) -> Any:
        if self._instruments is None and _metrics is not None:
            meter = (self._meter_provider or _metrics.get_meter_provider()).get_meter(NAME)
            self._instruments = (
                meter.create_counter("ihuyi.sends", description="calls by method and outcome"),
                meter.create_counter("ihuyi.local_refusals", description="sends the limiter refused"),
                meter.create_counter("ihuyi.pushes", description="pushes received"),
                meter.create_histogram("ihuyi.send.duration", unit="s", description="call duration"),
                meter.create_histogram("ihuyi.limiter.wait", unit="s", description="limiter waits"),
            )
        return self._instruments

    def call(
        self,
        method: str,
        *,
        product: str,
        flavour: str,
        server_address: str,
        mobile: str = "",
        segments: int | None = None,
    ) -> CallSpan:
        """The span of one call (a context manager); the shared no-op one when disabled."""
        if not self.enabled:
            return NO_SPAN
        attrs: dict[str, Any] = {
            "ihuyi.method": method,
            "ihuyi.product": product,
            "ihuyi.flavour": flavour,
        }
        span_attrs: dict[str, Any] = {"http.request.method": "POST", "server.address": server_address}
        if mobile:
            span_attrs["ihuyi.mobile"] = mask_mobile(mobile)
        if segments is not None:
            span_attrs["ihuyi.segments"] = segments
        return _LiveSpan(self, f"ihuyi {method}", attrs, span_attrs)

    def count_send(self, attrs: dict[str, Any], seconds: float) -> None:
        sends, _, _, duration, _ = self._meters()
        sends.add(1, attrs)
        duration.record(seconds, attrs)

    def record_wait(self, seconds: float) -> None:
        self._meters()[4].record(seconds)

    def count_refusal(self, rule: str, code: int) -> None:
        self._meters()[1].add(1, {"ihuyi.rule": rule, "ihuyi.code": str(code)})

    def push(self, kind: str, result: str, *, code: int | None = None, duplicate: bool = False) -> None:
        """One received push: a span and a count."""
        if not self.enabled:
            return
        attrs = {"ihuyi.push.kind": kind, "ihuyi.push.result": result}
        tracer = self.tracer()
        if tracer is not None:
            with tracer.start_as_current_span("ihuyi push", kind=_trace.SpanKind.SERVER) as span:
                span.set_attributes({**attrs, "ihuyi.push.duplicate": duplicate})
                if code is not None:
                    span.set_attribute("ihuyi.code", code)
                if result in ("failed", "busy"):  # the provider is answered 500/503 and resends
                    span.set_attribute("error.type", result)
                    span.set_status(_trace.StatusCode.ERROR)
        self._meters()[2].add(1, attrs)


#: The library's instruments (the global providers unless :func:`instrument` says otherwise).
TELEMETRY = Telemetry()


def instrument(*, tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Internal (benchmarks): send the library's spans and metrics to these providers
    instead of the global ones; ``None`` for both returns to the global providers. Not
    exported: applications set the global providers."""
    TELEMETRY.use(tracer_provider=tracer_provider, meter_provider=meter_provider)
