"""The emulator's HTTP faces: the ASGI app, the httpx transport and the respx side effect.

Owns how bytes become a provider call and an answer becomes bytes: the provider's
paths and methods (``webservice/sms.php?method=…`` and ``sms/*.json``), the fields
(read by :mod:`~ihuyi_async.testing._wire`), the answer's XML or JSON exactly as the
provider shapes it, and the faults of :mod:`~ihuyi_async.testing._faults` acted out
as a network would. Every face goes through :func:`prepare` and :func:`serve_call`,
so they answer alike; the model (:mod:`~ihuyi_async.testing._model`) decides.
The ASGI app also serves the web inbox (:mod:`~ihuyi_async.testing._inbox`) on the
paths that are not the provider's.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

import anyio
import httpx

from ..pushes._asgi import Receive, Scope, Send, serve_lifespan
from ._model import Call, FlavourName
from ._wire import read_fields

if TYPE_CHECKING:
    from ._emulator import Emulator

__all__ = ["EmulatorTransport", "app", "prepare", "respond", "serve_call"]

_NAMESPACE = "http://106.ihuyi.com/"
_METHODS = {"submit": "Submit", "getnum": "GetNum", "addtemplate": "AddTemplate"}
_JSON_PATHS = {
    "/sms/submit.json": ("Submit", "sms"),
    "/sms/getnum.json": ("GetNum", "sms"),
    "/vm/submit.json": ("Submit", "voice-notice"),
    "/vm/getnum.json": ("GetNum", "voice-notice"),
}
_LEGACY_PATHS = ("/webservice/sms.php", "/webservice/isms.php", "/webservice/voice.php")
_MAX_BODY = 1 << 20


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    content_type: str
    body: bytes


class _Outcome:
    """Sentinels for calls that get no HTTP answer."""

    DROP = "drop"
    HANG = "hang"



def prepare(
    emulator: Emulator,
    http_method: str,
    path: str,
    query: bytes,
    body: bytes,
    content_type: str = "",
) -> Call:
    """Parse one HTTP call and choose its fault (if any). No model state changes."""
    decoded = read_fields(query, body[:_MAX_BODY], content_type)
    fields = decoded.values
    lowered = path.lower()
    method: str | None = None
    flavour: FlavourName | None = None
    product = "sms"
    if http_method.upper() in ("GET", "POST"):
        legacy = next((p for p in _LEGACY_PATHS if lowered.endswith(p)), None)
        if legacy is not None:
            flavour, product = "legacy", _product_of(emulator, legacy, fields)
            method = _METHODS.get(fields.get("method", "").lower())
        else:
            for suffix, (name, json_product) in _JSON_PATHS.items():
                if lowered.endswith(suffix):
                    flavour, method, product = "json", name, json_product
                    break
    if flavour is not None and flavour not in emulator.flavours:
        method = None
    fault = emulator.faults.pick(method) if method is not None else None
    return Call(
        http_method.upper(), path, method, flavour, fields, fault, decoded.charset,
        decoded.undecodable, product,
    )


def _product_of(emulator: Emulator, path: str, fields: Mapping[str, str]) -> str:
    """The product a legacy path serves (``voice.php`` serves two: by the account's mapping)."""
    if path == "/webservice/isms.php":
        return "international"
    if path == "/webservice/voice.php":
        mapped = emulator.products.get(fields.get("account", "").strip())
        return "voice-notice" if mapped == "voice-notice" else "voice-code"
    return "sms"


async def serve_call(emulator: Emulator, call: Call) -> _Reply | str:
    """Act out the call's fault around the model; an answer, or DROP / HANG."""
    fault = call.fault
    if fault is None or fault.kind == "latency":
        if fault is not None and fault.seconds > 0:
            await emulator.clock.sleep(fault.seconds)
        return answer(emulator, call, record=True)
    code = _code_of(answer(emulator, call, record=False)) if fault.processed else None
    if fault.kind == "http_error":
        result: _Reply | str = _Reply(fault.status, "text/html; charset=utf-8", fault.body)
    elif fault.kind == "garbage":
        result = _Reply(200, "text/html; charset=utf-8", fault.body)
    elif fault.kind == "disconnect":
        result = _Outcome.DROP
    else:
        result = _Outcome.HANG
    emulator.record(call, code=code, status=result.status if isinstance(result, _Reply) else None)
    return result


def answer(emulator: Emulator, call: Call, *, record: bool) -> _Reply:
    """Run the model on a call and shape the provider's answer."""
    if call.method is None:
        result = _Reply(404, "text/plain; charset=utf-8", b"Not Found")
        if call.http_method not in ("GET", "POST"):
            result = _Reply(405, "text/plain; charset=utf-8", b"Method Not Allowed")
        if record:
            emulator.record(call, code=None, status=result.status)
        return result
    as_json = call.flavour == "json" or call.fields.get("format", "").lower() == "json"
    code, extra = emulator.decide(call)
    result = _render(call.method, code, emulator.text(code, call), extra, as_json=as_json)
    if record:
        emulator.record(call, code=code, status=result.status)
    return result


async def app(emulator: Emulator, scope: Scope, receive: Receive, send: Send) -> None:
    """The emulator as a pure ASGI 3 application (HTTP and lifespan)."""
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    from . import _inbox

    if await _inbox.handle(emulator, scope, receive, send):
        return
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= _MAX_BODY:
            chunks.append(chunk)
        more = bool(message.get("more_body", False))
    content_type = ""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-type":
            content_type = value.decode("latin-1")
    query = scope.get("query_string", b"")
    call = prepare(emulator, scope["method"], scope["path"], query, b"".join(chunks), content_type)
    outcome = await serve_call(emulator, call)
    if outcome == _Outcome.HANG:
        await _wait_for_disconnect(receive)
        return
    if outcome == _Outcome.DROP:
        await _drop_connection(scope, receive, send)
        return
    assert isinstance(outcome, _Reply)
    await send(
        {
            "type": "http.response.start",
            "status": outcome.status,
            "headers": [
                (b"content-type", outcome.content_type.encode("latin-1")),
                (b"content-length", str(len(outcome.body)).encode("latin-1")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": outcome.body, "more_body": False})


def _code_of(answer: _Reply | None) -> int | None:
    if answer is None or answer.status != 200:
        return None
    text = answer.body.decode("utf-8")
    if text.startswith("{"):
        return int(json.loads(text)["code"])
    match = re.search(r"<code>(-?\d+)</code>", text)
    return int(match.group(1)) if match else None


@functools.lru_cache(maxsize=256)
def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _render(method: str, code: int, msg: str, extra: Mapping[str, str], *, as_json: bool) -> _Reply:
    """Shape an answer exactly as the provider does (XML by default, or JSON)."""
    if as_json:
        # Built by hand (same bytes as compact json.dumps): the extra values are digits we made.
        parts = [f'{{"code":{code},"msg":{_json_string(msg)}']
        for key, value in extra.items():
            parts.append(f',"{key}":{int(value)}' if key in ("num", "templateid") else f',"{key}":"{value}"')
        parts.append("}")
        return _Reply(200, "application/json; charset=utf-8", "".join(parts).encode("utf-8"))
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<{method}Result xmlns="{_NAMESPACE}">',
        f"<code>{code}</code>",
        f"<msg>{escape(msg)}</msg>",
    ]
    lines.extend(f"<{key}>{escape(value)}</{key}>" for key, value in extra.items())
    lines.append(f"</{method}Result>")
    return _Reply(200, "text/xml; charset=utf-8", "\n".join(lines).encode("utf-8"))


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:  # bounded: ends when the client goes away (or the server cancels us)
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _drop_connection(scope: Scope, receive: Receive, send: Send) -> None:
    """Close the connection without an answer.

    ASGI has no message for that. The emulator's own server
    (:class:`~ihuyi_async.testing.EmulatorServer`) offers the ``ihuyi.close``
    extension: the client sees the connection drop with no byte of answer. Under
    uvicorn's h11 protocol ``send`` is bound to the request cycle, whose
    ``transport`` we close. Elsewhere we start an answer that promises a body and
    return without it, which servers turn into a dropped connection.
    """
    if "ihuyi.close" in scope.get("extensions", {}):
        await send({"type": "ihuyi.close"})
        return
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None and hasattr(transport, "close"):
        transport.close()
        with anyio.move_on_after(5):
            await _wait_for_disconnect(receive)
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]}
    )


class EmulatorTransport(httpx.AsyncBaseTransport):
    """An httpx transport that calls an :class:`Emulator`'s model directly (no sockets).

    Any host is accepted; the path picks the provider method. Faults behave as a
    network would: ``disconnect`` raises :class:`httpx.RemoteProtocolError`, ``hang``
    waits for the request's read timeout (then :class:`httpx.ReadTimeout`) or
    cancellation.

    >>> import httpx
    >>> emulator = Emulator()
    >>> client = httpx.AsyncClient(transport=emulator.transport)
    """

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await respond(self.emulator, request)


async def respond(emulator: Emulator, request: httpx.Request) -> httpx.Response:
    """Answer one httpx request from ``emulator`` (shared by the transport and respx)."""
    body = await request.aread()
    call = prepare(
        emulator,
        request.method,
        request.url.path,
        request.url.query,
        body,
        request.headers.get("content-type", ""),
    )
    if call.fault is None:  # the common path: no cancel scope, no await
        result = answer(emulator, call, record=True)
        return httpx.Response(
            result.status, headers=_headers(result.content_type), content=result.body, request=request
        )
    timeouts = request.extensions.get("timeout") or {}
    read_timeout = timeouts.get("read")
    outcome: _Reply | str | None = None
    with anyio.move_on_after(read_timeout if read_timeout is not None else float("inf")) as scope:
        outcome = await serve_call(emulator, call)
        if outcome == _Outcome.HANG:
            await anyio.sleep_forever()
    if scope.cancelled_caught or outcome is None or outcome == _Outcome.HANG:
        raise httpx.ReadTimeout("the emulator did not answer (hang fault)", request=request)
    if outcome == _Outcome.DROP:
        raise httpx.RemoteProtocolError(
            "Server disconnected without sending a response.", request=request
        )
    assert isinstance(outcome, _Reply)
    return httpx.Response(
        outcome.status, headers=_headers(outcome.content_type), content=outcome.body, request=request
    )


@functools.lru_cache(maxsize=16)
def _header_bytes(content_type: str) -> bytes:
    return content_type.encode("latin-1")


def _headers(content_type: str) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", _header_bytes(content_type))]
