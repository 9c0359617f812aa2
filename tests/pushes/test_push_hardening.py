"""#12: requests that made exceptions escape the receiver, each answered with a status now.

In-process through the ASGI app (asyncio and trio), and over the wire in real
servers (FastAPI under uvicorn, and aiohttp). Each test failed on the receiver
before #12: an exception left the ASGI app, or aiohttp answered 500 / logged a
handler error.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import warnings
from collections.abc import Mapping, MutableMapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from ihuyi_async.pushes import (
    DeliveryReceipt,
    Push,
    PushParseError,
    PushReceiver,
)
from ihuyi_async.testing import receipt_form

from .push_servers import ServeFactory, serve_aiohttp_receiver

pytestmark = pytest.mark.anyio

SMSID = "16842079209571524017"
FORM = receipt_form(smsid=SMSID, mobile="13800138000", report_time="2026-01-01 12:00:00")
BODY = urlencode(FORM).encode()
FORM_TYPE = "application/x-www-form-urlencoded"


class Calls:
    def __init__(self) -> None:
        self.receipts: list[DeliveryReceipt] = []

    async def on_receipt(self, receipt: DeliveryReceipt) -> None:
        self.receipts.append(receipt)

    def receiver(self, **kwargs: Any) -> PushReceiver:
        return PushReceiver(self.on_receipt, **kwargs)


async def _call(
    app: PushReceiver, headers: list[tuple[bytes, bytes]], body: bytes = BODY
) -> list[dict[str, Any]]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    messages = iter([{"type": "http.request", "body": body, "more_body": False}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    return sent


# -- in-process, both event loops ---------------------------------------------------------


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize(
    "charset",
    [
        "undefined",  # before #12: UnicodeError escaped the ASGI app
        '"undefined"',
        "UNDEFINED",
        "utf-16",  # not ASCII-compatible: cannot carry "a=1&b=%E4"
        "utf-32-le",
        "utf-7",
        "cp500",
        "hz",
        "punycode",
        "idna",
        "unicode_escape",
        "raw_unicode_escape",
        "rot13",
        "x" * 200,
    ],
)
async def test_an_unusable_charset_is_415(charset: str) -> None:
    calls = Calls()
    content_type = f"{FORM_TYPE}; charset={charset}".encode()
    sent = await _call(calls.receiver(), [(b"content-type", content_type)])
    assert sent[0]["status"] == 415
    assert sent[1]["body"] == b"unsupported media type"
    assert calls.receipts == []


async def test_charset_undefined_through_httpx_answers_415() -> None:
    calls = Calls()
    transport = httpx.ASGITransport(app=calls.receiver())
    async with httpx.AsyncClient(transport=transport, base_url="http://push.test") as client:
        answer = await client.post(
            "/", content=BODY, headers={"content-type": f"{FORM_TYPE}; charset=undefined"}
        )
    assert answer.status_code == 415
    assert calls.receipts == []


async def test_a_nul_in_the_charset_is_415() -> None:
    # codecs.lookup raises ValueError ("embedded null character") for it.
    sent = await _call(
        Calls().receiver(), [(b"content-type", FORM_TYPE.encode() + b"; charset=u\x00")]
    )
    assert sent[0]["status"] == 415


async def test_unicode_escape_never_reads_the_body_even_where_warnings_are_errors() -> None:
    # Before #12 the body was decoded with unicode_escape: "\z" warns (DeprecationWarning),
    # an exception where warnings are errors (as in this suite), and "\u0032" became "2".
    calls = Calls()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sent = await _call(
            calls.receiver(),
            [(b"content-type", f"{FORM_TYPE}; charset=unicode_escape".encode())],
            BODY + b"&x=\\z",
        )
    assert sent[0]["status"] == 415
    assert calls.receipts == []


@pytest.mark.parametrize("charset", ["gbk", "GB18030", "big5", "latin-1", "utf-8-sig", "ascii"])
async def test_ascii_compatible_charsets_are_still_read(charset: str) -> None:
    calls = Calls()
    sent = await _call(
        calls.receiver(), [(b"content-type", f"{FORM_TYPE}; charset={charset}".encode())]
    )
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"success"
    assert [r.smsid for r in calls.receipts] == [SMSID]


@pytest.mark.parametrize(
    ("length", "status"),
    [
        ("9" * 5000, 413),  # before #12: ValueError (int-string conversion limit) escaped
        ("1" + "0" * 30, 413),
        ("0" * 5000 + str(len(BODY)), 200),  # leading zeros: still the body's length
        ("-1", 400),
        ("1e3", 400),
        ("٣", 400),  # a digit, but not an ASCII one
    ],
)
async def test_content_length_of_any_size_is_answered(length: str, status: int) -> None:
    headers = [(b"content-type", FORM_TYPE.encode()), (b"content-length", length.encode())]
    sent = await _call(Calls().receiver(), headers)
    assert sent[0]["status"] == status


async def test_a_scope_no_server_builds_is_answered_400() -> None:
    # Headers as text instead of bytes: AttributeError escaped before #12.
    sent = await _call(Calls().receiver(), [("content-type", FORM_TYPE)])  # type: ignore[list-item]
    assert sent[0]["status"] == 400


def _surrogate_reason_parser(form: Mapping[str, str]) -> Push:
    raise PushParseError("field \udcff is odd", fields=list(form))


async def test_a_parse_error_whose_reason_is_not_utf8_is_answered_400() -> None:
    # Before #12: UnicodeEncodeError while writing the 400 body escaped the ASGI app.
    receiver = Calls().receiver(parser=_surrogate_reason_parser)
    sent = await _call(receiver, [(b"content-type", FORM_TYPE.encode())])
    assert sent[0]["status"] == 400
    assert sent[1]["body"].startswith(b"bad request: field ? is odd")


def _not_a_push(form: Mapping[str, str]) -> Push:
    return object()  # type: ignore[return-value]


async def test_anything_raised_inside_the_receiver_is_answered_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = Calls().receiver(parser=_not_a_push)
    with caplog.at_level(logging.ERROR, logger="ihuyi_async.pushes"):
        sent = await _call(receiver, [(b"content-type", FORM_TYPE.encode())])
    assert sent[0]["status"] == 500 and sent[1]["body"] == b"internal error"
    assert "push receiver failed" in caplog.text
    assert receiver.statistics().failed == 1


# -- over the wire --------------------------------------------------------------------------


async def _raw_post(url: str, head: bytes, body: bytes) -> bytes:
    """POST raw bytes on a fresh connection; the whole answer (the server closes)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(
            b"POST " + parts.path.encode() + b" HTTP/1.1\r\nHost: push.test\r\n"
            b"Connection: close\r\n" + head + b"\r\n" + body
        )
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


class TestOverTheWire:
    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.mark.parametrize("charset", ["undefined", "utf-16", "unicode_escape"])
    async def test_unusable_charset_is_415(self, serve: ServeFactory, charset: str) -> None:
        calls = Calls()
        async with serve(calls.receiver()) as url, httpx.AsyncClient(trust_env=False) as client:
            answer = await client.post(
                url, content=BODY, headers={"content-type": f"{FORM_TYPE}; charset={charset}"}
            )
            ok = await client.post(url, content=BODY, headers={"content-type": FORM_TYPE})
        assert answer.status_code == 415
        assert ok.status_code == 200 and ok.text == "success"
        assert len(calls.receipts) == 1

    async def test_aiohttp_a_body_it_cannot_decode_is_400(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        # Before #12 aiohttp's RequestPayloadError escaped the handler: aiohttp answered 500.
        calls = Calls()
        good = gzip.compress(BODY)
        async with serve_aiohttp_receiver(calls.receiver()) as url:
            bad_answer = await _raw_post(
                url,
                b"Content-Type: " + FORM_TYPE.encode() + b"\r\nContent-Encoding: gzip\r\n"
                b"Content-Length: 7\r\n",
                b"garbage",
            )
            good_answer = await _raw_post(
                url,
                b"Content-Type: " + FORM_TYPE.encode() + b"\r\nContent-Encoding: gzip\r\n"
                b"Content-Length: %d\r\n" % len(good),
                good,
            )
        assert bad_answer.startswith(b"HTTP/1.1 400 ")
        assert bad_answer.endswith(b"bad request: malformed body")
        assert good_answer.startswith(b"HTTP/1.1 200 ") and good_answer.endswith(b"success")
        assert len(calls.receipts) == 1

    async def test_aiohttp_a_client_gone_mid_body_is_not_a_handler_error(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        # Before #12 the ConnectionResetError escaped the handler ("Error handling request").
        calls = Calls()
        receiver = calls.receiver()
        async with serve_aiohttp_receiver(receiver) as url:
            parts = urlsplit(url)
            with caplog.at_level(logging.DEBUG):
                _, writer = await asyncio.open_connection(parts.hostname, parts.port)
                writer.write(
                    b"POST " + parts.path.encode() + b" HTTP/1.1\r\nHost: push.test\r\n"
                    b"Content-Type: "
                    + FORM_TYPE.encode()
                    + b"\r\nContent-Length: 500\r\n\r\n"
                    + BODY[:20]
                )
                await writer.drain()
                for _ in range(200):  # bounded: until the receiver is reading the body
                    if receiver.statistics().received:
                        break
                    await asyncio.sleep(0.01)
                writer.close()
                await writer.wait_closed()
                # The server's loop notices the close and fails the body read: let it run.
                for _ in range(50):
                    await asyncio.sleep(0.01)
        assert receiver.statistics().received == 1
        assert "Error handling request" not in caplog.text
        assert "ConnectionResetError" not in caplog.text
        assert calls.receipts == []
