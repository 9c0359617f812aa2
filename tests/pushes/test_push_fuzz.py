"""Fuzzed requests over the wire into the aiohttp adapter: always a status, never a handler error (#12).

The adapter reads the request itself (aiohttp's stream, not ASGI), so it gets its
own run: the requests of ``tests/fuzzing/corpus.py`` (any method, path, content
type, charset and body; the Content-Length always right, since a wrong one only
desynchronises the connection in any server) on fresh loopback connections.
"""

from __future__ import annotations

import asyncio
import logging
import random
from urllib.parse import quote, urlencode, urlsplit

import pytest
from aiohttp import http_exceptions
from fuzzing.corpus import CHARSETS, RECEIVER_STATUSES, SMSID, PushRequest, push_request

from ihuyi_async.pushes import PushReceiver
from ihuyi_async.testing import receipt_form

from .push_servers import serve_aiohttp_receiver

pytestmark = pytest.mark.anyio

REQUESTS = 400


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _wire(request: PushRequest, prefix: str) -> bytes:
    """The request as HTTP/1.1 bytes: as sent, but for a right Content-Length and no CR/LF in values."""
    scope = request.scope
    method = scope["method"].encode("ascii", "replace") or b"POST"
    target = quote(prefix + scope["path"], safe="/%", errors="replace").encode()
    if scope["query_string"]:
        target += b"?" + quote(scope["query_string"], safe="=&%").encode()
    body = b"".join(message.get("body", b"") for message in request.messages)
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: push.test", b"Connection: close"]
    for name, value in scope["headers"]:
        if name.lower() != b"content-length":
            lines.append(name + b": " + value.replace(b"\r", b" ").replace(b"\n", b" "))
    lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _with_charset(charset: str) -> PushRequest:
    """A provider receipt declared in ``charset`` (every name of the corpus is tried)."""
    content_type = f"application/x-www-form-urlencoded; charset={charset}"
    scope = {
        "method": "POST",
        "path": "/",
        "query_string": b"",
        "headers": [(b"content-type", content_type.encode("utf-8", "surrogatepass"))],
    }
    body = urlencode(receipt_form(smsid=SMSID)).encode()
    return PushRequest(scope=scope, messages=({"body": body},), disconnects=False)


async def _exchange(url: str, data: bytes) -> bytes:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_fuzzed_requests_through_the_aiohttp_adapter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = PushReceiver(lambda push: None, lambda push: None, lambda push: None, max_body=2048)
    rng = random.Random(12)
    statuses: dict[int, int] = {}
    with caplog.at_level(logging.WARNING):
        async with serve_aiohttp_receiver(receiver) as url:
            prefix = urlsplit(url).path.rstrip("/")
            requests = [_with_charset(charset) for charset in CHARSETS]
            requests += [push_request(rng) for _ in range(REQUESTS)]
            for request in requests:
                answer = await _exchange(url, _wire(request, prefix))
                status = int(answer.split(b" ", 2)[1])
                statuses[status] = statuses.get(status, 0) + 1
                assert status in RECEIVER_STATUSES, (status, answer[:300], request)
    assert {200, 400, 405, 413, 415} <= set(statuses), statuses
    assert sum(statuses.values()) == len(requests)
    # aiohttp logs the requests its own parser refuses (a NUL in a header, say) before
    # any handler runs: those are aiohttp's. Anything else logged with a traceback came
    # out of the adapter.
    escaped = [
        record for record in caplog.records
        if record.exc_info and not isinstance(record.exc_info[1], http_exceptions.HttpProcessingError)
    ]  # fmt: skip
    assert escaped == [], [record.getMessage() for record in escaped[:3]]
    assert receiver.statistics().failed == 0
