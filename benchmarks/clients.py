"""The clients the send benchmark compares, each doing one Submit per call.

Every client POSTs the same form (account, dynamic password, mobile, content,
time, format=json) to the same URL and decodes the JSON answer, except:

* ``raw streams`` writes one prebuilt request per message on its own keep-alive
  connection: the floor, showing the fake server is not the bottleneck;
* ``vendor demo`` follows the provider's Python demo: synchronous
  :mod:`http.client`, a new connection per message, ``urlencode`` of the plain key.

An async client is ``async def make(url) -> (send, close)``; a threaded client is
``def make(url) -> send`` (called from N threads at once); a batch client is
``async def make(url) -> (run, close)`` where ``await run(in_flight, count, deadline)``
sends up to ``count`` messages (none generated after ``deadline``, a
``time.perf_counter`` value) with ``in_flight`` at once and returns ``(sent, errors)``.
Every maker also takes ``context=``, an :class:`ssl.SSLContext` trusting the network
mode's test CA (:mod:`benchmarks.network`; the URL is then ``https://``).
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import itertools
import json
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

ACCOUNT = "APIID"
API_KEY = "APIKEY"
CONTENT = "您的验证码是：1234。请不要把验证码泄露给其他人。"
SUBMIT_PATH = "/webservice/sms.php?method=Submit"

_numbers = itertools.count(1)

AsyncSend = Callable[[], Awaitable[None]]
AsyncClose = Callable[[], Awaitable[None]]
AsyncMake = Callable[..., Awaitable[tuple[AsyncSend, AsyncClose]]]  # (url, context=None)
BatchRun = Callable[[int, int, float], Awaitable[tuple[int, int]]]
BatchMake = Callable[..., Awaitable[tuple[BatchRun, AsyncClose]]]
SyncMake = Callable[[str], Callable[[], None]]


def next_number() -> str:
    """A fresh mainland number per message, so no limiter rule ever waits or refuses."""
    return f"13{next(_numbers) % 10**9:09d}"


def _form(mobile: str) -> dict[str, str]:
    ts = str(int(time.time()))
    password = hashlib.md5(
        f"{ACCOUNT}{API_KEY}{mobile}{CONTENT}{ts}".encode(), usedforsecurity=False
    ).hexdigest()
    return {
        "account": ACCOUNT,
        "password": password,
        "mobile": mobile,
        "content": CONTENT,
        "time": ts,
        "format": "json",
    }


def _check(answer: Any) -> None:
    if answer.get("code") != 2 or not answer.get("smsid"):
        raise RuntimeError(f"unexpected answer {answer!r}")


# ------------------------------------------------------------------ ihuyi-async


def make_ours(backend: str) -> AsyncMake:
    async def make(base_url: str, context: ssl.SSLContext | None = None) -> tuple[AsyncSend, AsyncClose]:
        from ihuyi_async import IhuyiClient

        client = IhuyiClient(
            ACCOUNT, API_KEY, base_url=base_url, backend=backend, verify=context or True  # type: ignore[arg-type]
        )
        await client.__aenter__()
        send_ = client.send

        async def send() -> None:
            await send_(next_number(), CONTENT)

        return send, client.aclose

    return make


def make_ours_many(backend: str) -> BatchMake:
    """``send_many`` over a generator: the library's own batch driver (no worker tasks of ours)."""

    async def make(base_url: str, context: ssl.SSLContext | None = None) -> tuple[BatchRun, AsyncClose]:
        from ihuyi_async import IhuyiClient, Message

        client = IhuyiClient(
            ACCOUNT, API_KEY, base_url=base_url, backend=backend, verify=context or True  # type: ignore[arg-type]
        )
        await client.__aenter__()
        clock = time.perf_counter

        async def run(in_flight: int, count: int, deadline: float) -> tuple[int, int]:
            def messages() -> Iterator[Message]:
                for _ in range(count):
                    if clock() >= deadline:
                        return
                    yield Message(next_number(), CONTENT)

            sent = errors = 0
            async with client.send_many(messages(), concurrency=in_flight) as outcomes:
                async for outcome in outcomes:
                    sent += 1
                    if not outcome.ok:
                        errors += 1
            return sent, errors

        return run, client.aclose

    return make


TELEMETRY_OFF = "ihuyi-async send, backend=native, telemetry off (as without opentelemetry-api)"
TELEMETRY_NOOP = "ihuyi-async send, backend=native, telemetry on (no-op providers)"


def make_ours_telemetry(mode: str) -> AsyncMake:
    """``backend="native"`` with the OpenTelemetry hooks in one state (#20).

    ``"off"``: as if ``opentelemetry-api`` were not installed (the hooks' module without it);
    ``"noop"``: the API's ``NoOpTracerProvider`` and ``NoOpMeterProvider`` given to
    ``instrument()``, so every hook runs (span, attributes, counters) and nothing records.
    The plain ``backend=native`` row is the default state: the API installed, no SDK.
    The previous state is restored on close.
    """

    inner = make_ours("native")

    async def make(base_url: str, context: ssl.SSLContext | None = None) -> tuple[AsyncSend, AsyncClose]:
        import ihuyi_async._telemetry as telemetry

        saved = (telemetry._trace, telemetry._metrics)
        if mode == "off":
            telemetry._trace = telemetry._metrics = None
        else:
            from opentelemetry import metrics, trace

            telemetry.instrument(
                tracer_provider=trace.NoOpTracerProvider(), meter_provider=metrics.NoOpMeterProvider()
            )
        send, close_client = await inner(base_url, context)

        async def close() -> None:
            await close_client()
            telemetry._trace, telemetry._metrics = saved
            telemetry.instrument()

        return send, close

    return make


# ------------------------------------------------------------------ raw httpx / aiohttp


async def make_raw_httpx(base_url: str, context: ssl.SSLContext | None = None) -> tuple[AsyncSend, AsyncClose]:
    import httpx

    client = httpx.AsyncClient(verify=context or True)
    url = base_url + SUBMIT_PATH

    async def send() -> None:
        response = await client.post(url, data=_form(next_number()))
        _check(response.json())

    return send, client.aclose


async def make_httpx_aiohttp(base_url: str) -> tuple[AsyncSend, AsyncClose]:
    from httpx_aiohttp import HttpxAiohttpClient  # type: ignore[import-not-found, unused-ignore]

    client = HttpxAiohttpClient()
    url = base_url + SUBMIT_PATH

    async def send() -> None:
        response = await client.post(url, data=_form(next_number()))
        _check(response.json())

    return send, client.aclose


async def make_raw_aiohttp(base_url: str, context: ssl.SSLContext | None = None) -> tuple[AsyncSend, AsyncClose]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context or True))
    url = base_url + SUBMIT_PATH

    async def send() -> None:
        async with session.post(url, data=_form(next_number())) as response:
            _check(json.loads(await response.read()))

    return send, session.close


async def make_raw_streams(base_url: str, context: ssl.SSLContext | None = None) -> tuple[AsyncSend, AsyncClose]:
    """One keep-alive connection per concurrent caller, a prebuilt request: the floor."""
    parsed = urllib.parse.urlsplit(base_url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    body = urllib.parse.urlencode(_form("13800138000")).encode()
    request = (
        f"POST {SUBMIT_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened: list[asyncio.StreamWriter] = []

    async def send() -> None:
        if idle:
            reader, writer = idle.pop()
        else:
            reader, writer = await asyncio.open_connection(host, port, ssl=context)
            opened.append(writer)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        pos = head.lower().find(b"content-length:")
        end = head.find(b"\r\n", pos)
        data = await reader.readexactly(int(head[pos + 15 : end]))
        _check(json.loads(data))
        idle.append((reader, writer))

    async def close() -> None:
        for writer in opened:
            writer.close()

    return send, close


# ------------------------------------------------------------------ the vendor's demo


def make_vendor(
    base_url: str, context: ssl.SSLContext | None = None, *, cafile: str | None = None
) -> Callable[[], None]:
    """The demo's ``send``. Over HTTPS, ``context`` is shared by every connection (kinder
    than the demo); with ``cafile`` instead, each connection builds the context
    ``HTTPSConnection(host, port)`` builds when given none, as the demo would once pointed
    at https (the system's CA store, read per connection), plus the test CA, which this
    rig's certificate needs."""
    parsed = urllib.parse.urlsplit(base_url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80

    def per_connection() -> ssl.SSLContext:
        built = ssl.create_default_context()  # = ssl._create_default_https_context()
        built.load_verify_locations(cafile)
        return built

    def send() -> None:
        params = urllib.parse.urlencode(
            {
                "account": ACCOUNT,
                "password": API_KEY,
                "content": CONTENT,
                "mobile": next_number(),
                "format": "json",
            }
        )
        headers = {"Content-type": "application/x-www-form-urlencoded", "Accept": "text/plain"}
        conn: http.client.HTTPConnection
        if cafile is not None:
            conn = http.client.HTTPSConnection(host, port, timeout=30, context=per_connection())
        elif context is not None:
            conn = http.client.HTTPSConnection(host, port, timeout=30, context=context)
        else:  # the demo's own choice: plain HTTP
            conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.request("POST", SUBMIT_PATH, params, headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        _check(json.loads(data))

    return send


def available() -> dict[str, tuple[str, Any]]:
    """Client name -> (kind, maker), for the clients importable here."""
    clients: dict[str, tuple[str, Any]] = {
        "ihuyi-async send, backend=httpx": ("async", make_ours("httpx")),
        "ihuyi-async send, backend=aiohttp": ("async", make_ours("aiohttp")),
        "ihuyi-async send, backend=native": ("async", make_ours("native")),
        "ihuyi-async send_many, backend=native": ("batch", make_ours_many("native")),
        "ihuyi-async send_many, backend=httpx": ("batch", make_ours_many("httpx")),
        "ihuyi-async send_many, backend=aiohttp": ("batch", make_ours_many("aiohttp")),
        TELEMETRY_OFF: ("async", make_ours_telemetry("off")),
        TELEMETRY_NOOP: ("async", make_ours_telemetry("noop")),
        "raw httpx.AsyncClient (default pool)": ("async", make_raw_httpx),
        "raw aiohttp.ClientSession": ("async", make_raw_aiohttp),
        "httpx over httpx-aiohttp transport": ("async", make_httpx_aiohttp),
        "vendor demo (http.client, new connection, N threads)": ("thread", make_vendor),
        "raw asyncio streams (floor)": ("async", make_raw_streams),
    }
    import importlib.util

    for module, name in (
        ("aiohttp", "ihuyi-async send, backend=aiohttp"),
        ("aiohttp", "ihuyi-async send_many, backend=aiohttp"),
        ("aiohttp", "raw aiohttp.ClientSession"),
        ("httptools", "ihuyi-async send, backend=native"),
        ("httptools", "ihuyi-async send_many, backend=native"),
        ("httptools", TELEMETRY_OFF),
        ("httptools", TELEMETRY_NOOP),
        ("opentelemetry", TELEMETRY_NOOP),
        ("httpx_aiohttp", "httpx over httpx-aiohttp transport"),
    ):
        if importlib.util.find_spec(module) is None:
            clients.pop(name, None)
    return clients
