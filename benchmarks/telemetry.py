"""What the OpenTelemetry hooks cost per send (#20): ``python -m benchmarks.telemetry``.

One client, a mock transport answering at once (so the client's own work is all there
is), the default limiter over distinct numbers; CPU µs per send, median of 5 rounds,
interleaved, in four configurations:

* ``otel absent``: the hooks as if ``opentelemetry-api`` were not installed;
* ``api, no SDK``: the API's proxy providers (what an app without an SDK gets);
* ``SDK, no exporter``: a real ``TracerProvider`` and ``MeterProvider``, nothing exported;
* ``SDK, in-memory``: spans and metrics recorded in memory.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import anyio
import httpx

import ihuyi_async._telemetry as telemetry
from ihuyi_async import IhuyiClient

ANSWER = httpx.Response(200, json={"code": 2, "msg": "提交成功", "smsid": "16842079209571524017"})
SENDS = 3000


async def _round(serial: list[int]) -> float:
    client = IhuyiClient("APIID", "KEY", transport=httpx.MockTransport(lambda r: ANSWER))
    async with client:
        start = time.process_time()
        for _ in range(SENDS):
            serial[0] += 1
            await client.send(f"139{serial[0]:08d}", "您的验证码是：4821。")
        return (time.process_time() - start) / SENDS * 1e6


def _configure(name: str) -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    telemetry._trace, telemetry._metrics = _api
    telemetry.instrument()
    if name == "otel absent":
        telemetry._trace = telemetry._metrics = None
    elif name == "SDK, no exporter":
        telemetry.instrument(tracer_provider=TracerProvider(), meter_provider=MeterProvider())
    elif name == "SDK, in-memory":
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        meter = MeterProvider(metric_readers=[InMemoryMetricReader()])
        telemetry.instrument(tracer_provider=tracer_provider, meter_provider=meter)


_api = (telemetry._trace, telemetry._metrics)
NAMES = ("otel absent", "api, no SDK", "SDK, no exporter", "SDK, in-memory")


def main() -> None:
    serial = [0]
    results: dict[str, list[float]] = {name: [] for name in NAMES}
    for _ in range(5):
        for name in NAMES:
            _configure(name)
            results[name].append(anyio.run(_round, serial))
    _configure("api, no SDK")
    base = statistics.median(results["otel absent"])
    print("| configuration | client CPU µs per send | vs otel absent |\n|---|---:|---:|")
    for name in NAMES:
        median = statistics.median(results[name])
        print(f"| {name} | {median:.1f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
