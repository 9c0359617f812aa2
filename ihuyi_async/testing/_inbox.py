"""The live web inbox and its JSON API: what Mailpit is to email, for the SMS emulator.

Owns :func:`handle`, which the emulator's ASGI app calls first for every HTTP request:
it serves the paths that are not the provider's and answers ``False`` for the rest.
Nothing it serves is recorded in :attr:`Emulator.requests` (it is not a provider call).

* ``GET /`` -- the page (plain HTML, CSS and JavaScript shipped in ``testing/inbox/``,
  no build step): every message as it arrives (number, content, segments, smsid,
  time, the verification code picked out), per-number state against the limits, every
  request with its code (refusals highlighted), pushes, templates with approve / reject
  buttons, a "reply as this user" box and switches for fault injection. It updates
  live from server-sent events.
* ``GET /api/events`` -- ``text/event-stream``: a ``change`` event after every change.
* The JSON API, for test suites in any language:

  ============================================  ==============================================
  ``GET /api/state[?last=N]``                   all of the below in one object (``last``: the
                                                newest N messages, requests and pushes)
  ``GET /api/messages[?mobile=N]``              accepted messages, oldest first
  ``GET /api/messages/last-code?mobile=N``      ``{"mobile", "code"}``; 404 when none was sent
  ``GET /api/requests``                         every call (fields without ``password``)
  ``GET /api/numbers``                          per-number counts and the next allowed send
  ``GET /api/templates``, ``/api/pushes``       templates (trial template included), pushes
  ``GET /api/faults``                           the fault schedule
  ``POST /api/templates/<id>/approve``          approve (``reject``: ``{"reason": "..."}``)
  ``POST /api/reply``                           ``{"mobile", "content"[, "smsid"]}``: push a reply
  ``POST /api/faults``                          ``{"kind"[, "method", "times", "status", "seconds"]}``
  ``DELETE /api/faults[/<n>]``                  remove one scheduled fault, or all
  ``POST /api/reset``                           forget messages, requests, pushes and counters
  ============================================  ==============================================

  Bodies are JSON (a form body works too); errors are ``{"error": "..."}`` with 400, 404
  or 409.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import anyio

from ..pushes._asgi import Receive, Scope, Send
from . import _faults
from ._model import CHINA_TZ, RecordedRequest, SentMessage, Template
from ._outbox import PushRecord, Waker
from ._rules import extract_code

if TYPE_CHECKING:
    from ._emulator import Emulator

__all__ = ["handle", "state"]

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/inbox.js": ("inbox.js", "text/javascript; charset=utf-8"),
    "/inbox.css": ("inbox.css", "text/css; charset=utf-8"),
}
_HEARTBEAT = 15.0
_COALESCE = 0.05
_MAX_BODY = 64 * 1024
_TEMPLATE_ACTION = re.compile(r"/api/templates/(\d+)/(approve|reject)")
_FAULT_ITEM = re.compile(r"/api/faults/(\d+)")


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _time(value: _dt.datetime | float | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        value = _dt.datetime.fromtimestamp(value, CHINA_TZ)
    return value.astimezone(CHINA_TZ).isoformat(timespec="milliseconds")


def _message(message: SentMessage) -> dict[str, Any]:
    return {
        "smsid": message.smsid,
        "account": message.account,
        "mobile": message.mobile,
        "content": message.content,
        "segments": message.segments,
        "time": _time(message.time),
        "template_id": message.template_id,
        "verification": message.verification,
        "code": extract_code(message.content) if message.verification else None,
        "flavour": message.flavour,
    }


def _request(request: RecordedRequest) -> dict[str, Any]:
    return {
        "time": _time(request.time),
        "http_method": request.http_method,
        "path": request.path,
        "method": request.method,
        "flavour": request.flavour,
        "mobile": request.fields.get("mobile"),
        "fields": {k: v for k, v in request.fields.items() if k != "password"},
        "code": request.code,
        "status": request.status,
        "fault": request.fault,
        "charset": request.charset,
    }


def _template(template: Template) -> dict[str, Any]:
    return {
        "template_id": template.template_id,
        "account": template.account,
        "content": template.content,
        "status": template.status,
        "reason": template.reason,
    }


def _push(record: PushRecord) -> dict[str, Any]:
    return {
        "kind": record.kind,
        "url": record.url,
        "form": record.form,
        "attempts": record.attempts,
        "delivered": record.delivered,
        "outcomes": record.outcomes,
    }


def _faults_json(emulator: Emulator) -> list[dict[str, Any]]:
    return [
        {
            "index": index,
            "kind": entry.fault.kind,
            "status": entry.fault.status if entry.fault.kind == "http_error" else None,
            "seconds": entry.fault.seconds if entry.fault.kind == "latency" else None,
            "method": entry.method,
            "remaining": entry.remaining,
            "probability": entry.probability,
            "fired": entry.fired,
        }
        for index, entry in enumerate(emulator.faults.entries)
        if not entry.exhausted
    ]


def _numbers(emulator: Emulator) -> list[dict[str, Any]]:
    return [{**n, "next_allowed_at": _time(n["next_allowed_at"])} for n in emulator.number_states()]  # type: ignore[arg-type]


def state(emulator: Emulator, *, last: int | None = None) -> dict[str, Any]:
    """Everything the inbox shows, as JSON-ready data (``last``: only the newest that many
    messages, requests and pushes; ``totals`` has the full counts)."""
    messages, requests, pushes = emulator.messages, emulator.requests, emulator.pushes
    totals = {"messages": len(messages), "requests": len(requests), "pushes": len(pushes)}
    if last is not None:
        messages = messages[max(0, len(messages) - last):]
        requests = requests[max(0, len(requests) - last):]
        pushes = pushes[max(0, len(pushes) - last):]
    return {
        "now": _time(emulator.clock.time()),
        "totals": totals,
        "accounts": [
            {"account": account, "balance": emulator.balance_of(account)} for account in emulator.accounts
        ],
        "messages": [_message(m) for m in messages],
        "requests": [_request(r) for r in requests],
        "numbers": _numbers(emulator),
        "templates": [_template(t) for t in sorted(emulator.templates.values(), key=lambda t: t.template_id)],
        "pushes": [_push(p) for p in pushes],
        "pending_pushes": emulator.pending_pushes,
        "faults": _faults_json(emulator),
        "push_urls": {
            "receipt": emulator.receipt_url,
            "reply": emulator.reply_url or emulator.receipt_url,
            "template": emulator.template_url or emulator.receipt_url,
        },
    }


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode("latin-1")),
                (b"content-length", str(len(body)).encode("latin-1")),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _json(send: Send, data: object, status: int = 200) -> None:
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    await _respond(send, status, body, "application/json; charset=utf-8")


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > _MAX_BODY:
            raise _HttpError(413, "body too large")
        chunks.append(chunk)
        more = bool(message.get("more_body", False))
    return b"".join(chunks)


def _parse_body(body: bytes, content_type: str) -> dict[str, Any]:
    if not body.strip():
        return {}
    if "json" in content_type or body.lstrip()[:1] == b"{":
        try:
            data = json.loads(body)
        except ValueError:
            raise _HttpError(400, "the body is not JSON") from None
        if not isinstance(data, dict):
            raise _HttpError(400, "the body must be a JSON object")
        return data
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


def _fault(data: Mapping[str, Any]) -> _faults.Fault:
    kind = str(data.get("kind", ""))
    try:
        if kind == "http_error":
            return _faults.http_error(int(data.get("status", 502)))
        if kind == "latency":
            return _faults.latency(float(data.get("seconds", 1.0)))
        if kind == "garbage":
            return _faults.garbage()
        if kind == "disconnect":
            return _faults.disconnect()
        if kind == "hang":
            return _faults.hang()
    except (TypeError, ValueError) as exc:
        raise _HttpError(400, str(exc)) from None
    raise _HttpError(400, "kind must be one of http_error, latency, garbage, disconnect, hang")


# long: the JSON API's route table, one branch per documented route, read top to bottom
async def _api(emulator: Emulator, method: str, path: str, query: Mapping[str, str], data: dict[str, Any], send: Send) -> None:
    if method == "GET":
        if path == "/api/state":
            last = query.get("last")
            return await _json(send, state(emulator, last=int(last) if last and last.isdigit() else None))
        if path == "/api/messages":
            mobile = query.get("mobile")
            messages = emulator.messages_to(mobile) if mobile else emulator.messages
            return await _json(send, [_message(m) for m in messages])
        if path == "/api/messages/last-code":
            mobile = query.get("mobile", "")
            try:
                code = emulator.last_code_for(mobile)
            except LookupError as exc:
                raise _HttpError(404, str(exc)) from None
            return await _json(send, {"mobile": mobile, "code": code})
        if path == "/api/requests":
            return await _json(send, [_request(r) for r in emulator.requests])
        if path == "/api/numbers":
            return await _json(send, _numbers(emulator))
        if path == "/api/templates":
            return await _json(send, state(emulator)["templates"])
        if path == "/api/pushes":
            return await _json(send, [_push(p) for p in emulator.pushes])
        if path == "/api/faults":
            return await _json(send, _faults_json(emulator))
        raise _HttpError(404, f"no such resource: {path}")
    if method == "POST":
        match = _TEMPLATE_ACTION.fullmatch(path)
        if match is not None:
            template_id = int(match.group(1))
            try:
                if match.group(2) == "approve":
                    emulator.approve_template(template_id)
                else:
                    emulator.reject_template(template_id, str(data.get("reason") or "模板内容不符合规范"))
            except KeyError:
                raise _HttpError(404, f"no template {template_id}") from None
            return await _json(send, _template(emulator.templates[template_id]))
        if path == "/api/reply":
            mobile, content = str(data.get("mobile", "")).strip(), str(data.get("content", ""))
            if not mobile or not content:
                raise _HttpError(400, "a reply needs mobile and content")
            try:
                record = await emulator.reply(mobile, content, smsid=data.get("smsid") or None)
            except RuntimeError as exc:
                raise _HttpError(409, str(exc)) from None
            emulator.changed()
            return await _json(send, _push(record))
        if path == "/api/faults":
            fault = _fault(data)
            times = data.get("times")
            method_name = data.get("method") or None
            try:
                emulator.faults.add(
                    fault,
                    times=None if times in (None, "", "always") else int(times),
                    method=str(method_name) if method_name else None,
                )
            except (TypeError, ValueError) as exc:
                raise _HttpError(400, str(exc)) from None
            emulator.changed()
            return await _json(send, _faults_json(emulator))
        if path == "/api/reset":
            emulator.reset()
            return await _json(send, {"ok": True})
        raise _HttpError(404, f"no such action: {path}")
    if method == "DELETE":
        if path == "/api/faults":
            emulator.faults.clear()
            emulator.changed()
            return await _json(send, [])
        match = _FAULT_ITEM.fullmatch(path)
        if match is not None:
            entries = emulator.faults.entries
            index = int(match.group(1))
            if index >= len(entries):
                raise _HttpError(404, f"no fault {index}")
            emulator.faults.remove(entries[index])
            emulator.changed()
            return await _json(send, _faults_json(emulator))
    raise _HttpError(405, f"{method} is not allowed on {path}")


async def _events(emulator: Emulator, receive: Receive, send: Send) -> None:
    """Server-sent events: ``change`` after every change, a comment every 15 s."""
    waker = Waker()
    remove = emulator.add_listener(waker.wake)
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"retry: 1000\nevent: change\ndata: 0\n\n", "more_body": True})
        async with anyio.create_task_group() as tg:

            async def until_disconnect() -> None:
                while True:  # bounded: ends when the client goes away
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(until_disconnect)
            version = 0
            while True:  # bounded by the client's disconnect (cancels the group)
                with anyio.move_on_after(_HEARTBEAT) as scope:
                    await waker.wait()
                if scope.cancelled_caught:
                    chunk = b": heartbeat\n\n"
                else:
                    await anyio.sleep(_COALESCE)  # one event for a burst of changes
                    version += 1
                    chunk = f"event: change\ndata: {version}\n\n".encode()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        remove()


async def handle(emulator: Emulator, scope: Scope, receive: Receive, send: Send) -> bool:
    """Serve ``scope`` when it is an inbox path; ``False`` (nothing sent) otherwise."""
    path: str = scope.get("path", "")
    method: str = scope.get("method", "GET").upper()
    static = _STATIC.get(path)
    if static is not None and method in ("GET", "HEAD"):
        name, content_type = static
        body = resources.files(__package__).joinpath("inbox").joinpath(name).read_bytes()
        await _respond(send, 200, body, content_type)
        return True
    if path == "/favicon.ico":  # browsers ask for it: not a provider call to record
        await _respond(send, 204, b"", "image/x-icon")
        return True
    if not path.startswith("/api/"):
        return False
    if path == "/api/events" and method == "GET":
        await _events(emulator, receive, send)
        return True
    query = dict(parse_qsl(bytes(scope.get("query_string", b"")).decode("utf-8", "replace")))
    try:
        data = _parse_body(await _read_body(receive), _header(scope, b"content-type"))
        await _api(emulator, method, path, query, data, send)
    except _HttpError as exc:
        await _json(send, {"error": str(exc)}, exc.status)
    return True
