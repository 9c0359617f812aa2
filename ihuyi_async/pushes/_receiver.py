"""The push receiver: a plain ASGI app that guards, parses, dedupes and dispatches.

Owns :class:`PushReceiver` and :class:`PushStatistics`. The request pipeline
(:meth:`PushReceiver._serve`) is framework-neutral; the ASGI entry point here and
the aiohttp adapter (``_aiohttp.py``) only read the request and write the answer.

Answers, and why (the provider treats anything but the body ``success`` as a
failure and pushes the item again, at most three times):

======  ================================  =========================================
status  body                              when
======  ================================  =========================================
200     ``success``                       the handler returned; or the item was
                                          handled within the window; or no handler
                                          is configured for its kind
400     ``bad request: ...``              undecodable body, malformed Content-Length
                                          or body framing, or a form that is no push
403     ``forbidden``                     wrong/missing token, source not allowed
405     ``method not allowed``            anything but POST
413     ``payload too large``             body over ``max_body``
415     ``unsupported media type``        not ``application/x-www-form-urlencoded``,
                                          or a ``charset`` that is unknown, not a text
                                          encoding, or not ASCII-compatible
500     ``handler failed``                the handler (or a custom parser) raised
                                          (logged); not marked handled
500     ``internal error``                anything else raised inside the receiver
                                          (logged): a request never makes it raise
503     ``busy, retry later``             the same item is being handled elsewhere and
                                          did not finish within ``busy_wait``; or the
                                          dedupe store failed
======  ================================  =========================================

No exception leaves the ASGI app or the aiohttp handler for any request: only
cancellation does. A client that went away before its body was read is answered
nothing. ``tests/fuzzing/test_fuzz_receiver.py`` (ASGI) and
``tests/pushes/test_push_fuzz.py`` (aiohttp, over the wire) hold that to random requests.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import anyio
import anyio.to_thread

from .._clock import Clock, SystemClock
from .._telemetry import TELEMETRY
from ._asgi import Receive, Scope, Send, serve_lifespan
from ._dedupe import ClaimState, DedupeStore, MemoryDedupe
from ._guards import DEFAULT_MAX_BODY, Guards, NetworkLike
from ._models import DeliveryReceipt, Push, PushParseError, Reply, TemplateReview, parse_push

__all__ = [
    "PushReceiver",
    "PushStatistics",
    "ReceiptHandler",
    "ReplyHandler",
    "TemplateReviewHandler",
]

logger = logging.getLogger("ihuyi_async.pushes")

#: A receipt handler: a plain or ``async`` callable. Plain ones run in a worker thread.
ReceiptHandler = Callable[[DeliveryReceipt], Awaitable[None] | None]
#: A reply handler: a plain or ``async`` callable. Plain ones run in a worker thread.
ReplyHandler = Callable[[Reply], Awaitable[None] | None]
#: A template review handler: a plain or ``async`` callable.
TemplateReviewHandler = Callable[[TemplateReview], Awaitable[None] | None]

#: Reads the body up to a limit: the bytes, or ``None`` over the limit. Raises
#: :class:`_Disconnected` when the client went away, :class:`_MalformedBody` when the
#: server could not frame the body (a broken chunked encoding, say).
BodyReader = Callable[[int], Awaitable[bytes | None]]

_MAX_FIELDS = 64
#: More digits than any Content-Length under a sane ``max_body`` (and far below the int limit).
_MAX_LENGTH_DIGITS = 18
_POLL_INTERVAL = 0.05


@dataclass(frozen=True, slots=True, kw_only=True)
class PushStatistics:
    """Counters of one receiver since it was created.

    :ivar received: requests that reached the receiver.
    :ivar handled: pushes whose handler returned (answered ``success``).
    :ivar duplicates: pushes acknowledged without calling the handler again.
    :ivar ignored: pushes of a kind with no handler (answered ``success``).
    :ivar failed: pushes whose handler (or parser) raised, and requests the receiver
        itself failed on (answered 500).
    :ivar rejected: requests refused by a guard or the parser (4xx).
    :ivar busy: pushes answered 503 (in progress elsewhere, or store failure).

    .. versionadded:: 0.1.0
    """

    received: int
    handled: int
    duplicates: int
    ignored: int
    failed: int
    rejected: int
    busy: int


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Incoming:
    method: str
    path: str
    query_string: str
    content_type: str | None
    content_length: str | None
    peer: str | None
    forwarded_for: Sequence[str]


_SUCCESS = _Answer(200, b"success")
_FORBIDDEN = _Answer(403, b"forbidden")
_NOT_ALLOWED = _Answer(405, b"method not allowed", (("allow", "POST"),))
_TOO_LARGE = _Answer(413, b"payload too large")
_MEDIA_TYPE = _Answer(415, b"unsupported media type")
_FAILED = _Answer(500, b"handler failed")
_INTERNAL = _Answer(500, b"internal error")
_BAD_LENGTH = _Answer(400, b"bad request: content-length")
_BAD_BODY = _Answer(400, b"bad request: malformed body")
_BAD_FORM = _Answer(400, b"bad request: undecodable form")
_BUSY = _Answer(503, b"busy, retry later", (("retry-after", "60"),))


class _Disconnected(Exception):
    """The client went away before its body was read."""


class _MalformedBody(Exception):
    """The server could not frame the body (raised by a :data:`BodyReader`)."""


def _is_async_callable(obj: object) -> bool:
    while isinstance(obj, functools.partial):
        obj = obj.func
    if inspect.iscoroutinefunction(obj):
        return True
    call = type(obj).__call__  # a callable's type has __call__
    return inspect.iscoroutinefunction(call)


def _check_seconds(name: str, value: float, *, positive: bool) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(
            f"{name} must be a finite {'positive' if positive else 'non-negative'} "
            "number of seconds"
        )
    return value


def _incoming_of(scope: Scope) -> _Incoming:
    """The request line and the headers the pipeline reads, from an ASGI ``http`` scope."""
    content_type = content_length = None
    forwarded: list[str] = []
    for raw_name, raw_value in scope.get("headers") or ():
        name = raw_name.decode("latin-1").lower()
        if name == "content-type":
            content_type = raw_value.decode("latin-1")
        elif name == "content-length":
            content_length = raw_value.decode("latin-1")
        elif name == "x-forwarded-for":
            forwarded.append(raw_value.decode("latin-1"))
    client = scope.get("client")
    return _Incoming(
        method=str(scope.get("method", "GET")).upper(),
        path=str(scope.get("path", "/")),
        query_string=bytes(scope.get("query_string", b"")).decode("latin-1"),
        content_type=content_type,
        content_length=content_length,
        peer=str(client[0]) if client else None,
        forwarded_for=forwarded,
    )


class PushReceiver:
    """Receive the provider's pushes: a plain ASGI app, with an aiohttp adapter.

    Mount it where the provider's console points (FastAPI/Starlette:
    ``app.mount("/ihuyi/push", receiver)``; aiohttp: :func:`aiohttp_app`). Each
    push is guarded (see :class:`PushReceiver` parameters), parsed with
    :func:`parse_push`, deduplicated, and given to the handler of its kind.

    **Acknowledgement.** ``success`` is answered only after the handler returned.
    A handler that raises gets HTTP 500 (logged on ``ihuyi_async.pushes`` with
    the number masked) and its item is *not* marked handled, so the provider's
    next push of it is handled afresh.

    **Exactly once within the window.** An item is identified by kind, id and
    status (receipt: ``smsid`` or ``task_id``, number and ``code``; reply:
    ``smsid``, number, content and time; template review: ``templateid`` and
    ``code``). An item handled within ``dedupe_window`` seconds is acknowledged
    without calling the handler. A new status of the same message (say "failed"
    then "delivered") is a new item: handlers decide how statuses combine.

    **Concurrent duplicates.** While an item's handler runs, a duplicate waits up
    to ``busy_wait`` seconds for it: if the handler succeeds the duplicate is
    answered ``success`` (the handler is not called again); if it fails, the
    duplicate claims the item and runs the handler itself; if the wait runs out
    the duplicate is answered 503 with ``Retry-After: 60`` and the provider
    pushes it again later. A claim lapses after ``lease`` seconds, so a worker
    that died mid-handler does not block an item for ever.

    **Kinds without a handler** are answered ``success`` (and logged at DEBUG):
    the provider stops retrying something you chose not to handle.

    **Dedupe store failures** are answered 503 (logged): neither acknowledged
    unhandled nor handled twice; the provider retries.

    Plain (non-``async``) handlers run in a worker thread (``anyio.to_thread``).

    :param on_receipt: called with each :class:`DeliveryReceipt`.
    :param on_reply: called with each :class:`Reply`.
    :param on_template_review: called with each :class:`TemplateReview`.
    :param token: a secret the provider's URL carries as its last path segment
        (``.../push/<token>``) or as the ``token_param`` query parameter.
        Compared in constant time. Use ``secrets.token_urlsafe()``.
    :param token_param: name of the query parameter that may carry the token.
    :param allowed_networks: networks pushes may come from (``"203.0.113.0/24"``,
        addresses or ``ipaddress`` objects); ``None`` allows any source.
    :param trusted_proxies: proxies whose ``X-Forwarded-For`` is believed, e.g. your
        load balancer; from any other peer the header is ignored.
    :param max_body: the largest body read, in bytes (default 64 KiB).
    :param dedupe: where handled items are remembered (default: a new
        :class:`MemoryDedupe`; several workers need a shared :class:`RedisDedupe`).
    :param dedupe_window: how long a handled item is remembered, in seconds
        (default 30 minutes; ``0`` remembers nothing once handled).
    :param lease: how long a claim holds while a handler runs, in seconds.
    :param busy_wait: how long a concurrent duplicate waits for the first, in seconds.
    :param clock: the time base of the dedupe window (default :class:`~ihuyi_async.SystemClock`).
    :param parser: turns a form into a push (default :func:`parse_push`; pass e.g.
        ``functools.partial(parse_push, tz=...)`` to change the time zone).
    :raises ValueError: no handler at all, or a bad setting.
    :raises TypeError: a handler that is not callable.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_busy_wait",
        "_clock",
        "_counts",
        "_dedupe",
        "_guards",
        "_handlers",
        "_inflight",
        "_lease",
        "_parser",
        "_window",
    )

    def __init__(
        self,
        on_receipt: ReceiptHandler | None = None,
        on_reply: ReplyHandler | None = None,
        on_template_review: TemplateReviewHandler | None = None,
        *,
        token: str | None = None,
        token_param: str = "token",
        allowed_networks: Iterable[NetworkLike] | None = None,
        trusted_proxies: Iterable[NetworkLike] = (),
        max_body: int = DEFAULT_MAX_BODY,
        dedupe: DedupeStore | None = None,
        dedupe_window: float = 1800.0,
        lease: float = 120.0,
        busy_wait: float = 5.0,
        clock: Clock | None = None,
        parser: Callable[[Mapping[str, str]], Push] = parse_push,
    ) -> None:
        handlers: dict[str, Callable[[Any], object]] = {}
        for kind, handler in (
            (DeliveryReceipt.kind, on_receipt),
            (Reply.kind, on_reply),
            (TemplateReview.kind, on_template_review),
        ):
            if handler is None:
                continue
            if not callable(handler):
                raise TypeError(f"the {kind} handler must be callable")
            handlers[kind] = handler
        if not handlers:
            raise ValueError(
                "PushReceiver needs at least one of on_receipt, on_reply, on_template_review"
            )
        self._handlers = handlers
        self._guards = Guards(
            token=token,
            allowed_networks=allowed_networks,
            trusted_proxies=trusted_proxies,
            max_body=max_body,
            token_param=token_param,
        )
        self._dedupe: DedupeStore = dedupe if dedupe is not None else MemoryDedupe()
        self._window = _check_seconds("dedupe_window", dedupe_window, positive=False)
        self._lease = _check_seconds("lease", lease, positive=True)
        self._busy_wait = _check_seconds("busy_wait", busy_wait, positive=False)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._parser = parser
        self._inflight: dict[str, anyio.Event] = {}
        self._counts = dict.fromkeys(
            ("received", "handled", "duplicates", "ignored", "failed", "rejected", "busy"), 0
        )

    @property
    def dedupe(self) -> DedupeStore:
        """The dedupe store in use."""
        return self._dedupe

    @property
    def max_body(self) -> int:
        """The body size limit, in bytes."""
        return self._guards.max_body

    def statistics(self) -> PushStatistics:
        """A snapshot of this receiver's counters."""
        return PushStatistics(**self._counts)

    def __repr__(self) -> str:
        kinds = ", ".join(sorted(self._handlers))
        return (
            f"PushReceiver(handlers=[{kinds}], guards={self._guards!r}, "
            f"dedupe={self._dedupe!r}, dedupe_window={self._window!r})"
        )

    # -- ASGI -----------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point (``http``; ``lifespan`` is acknowledged; other scopes closed)."""
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return

        async def read_body(limit: int) -> bytes | None:
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected
                chunk = bytes(message.get("body", b""))
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)

        try:
            incoming = _incoming_of(scope)
        except Exception:  # noqa: BLE001 - a scope no ASGI server builds (headers not bytes, ...)
            self._counts["received"] += 1
            answer = self._reject(_Answer(400, b"bad request: malformed request"), "scope", None)
        else:
            try:
                answer = await self._serve(incoming, read_body)
            except _Disconnected:
                return
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(answer.body)).encode("ascii")),
        ]
        headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers)
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    # -- the pipeline ------------------------------------------------------------

    def _reject(self, answer: _Answer, why: str, incoming: _Incoming | None) -> _Answer:
        self._counts["rejected"] += 1
        peer = incoming.peer if incoming is not None else None
        logger.info("push refused with %d (%s) from %s", answer.status, why, peer)
        return answer

    async def _serve(self, incoming: _Incoming, read_body: BodyReader) -> _Answer:
        """Answer one request; whatever fails inside is answered 500, never raised.

        :raises _Disconnected: the client went away before its body was read.
        """
        try:
            return await self._pipeline(incoming, read_body)
        except _Disconnected:
            raise
        except _MalformedBody:
            return self._reject(_BAD_BODY, "body framing", incoming)
        except Exception:
            self._counts["failed"] += 1
            logger.exception("push receiver failed; answered 500")
            return _INTERNAL

    async def _pipeline(self, incoming: _Incoming, read_body: BodyReader) -> _Answer:
        self._counts["received"] += 1
        guards = self._guards
        if not guards.source_ok(incoming.peer, incoming.forwarded_for):
            return self._reject(_FORBIDDEN, "source not allowed", incoming)
        if not guards.token_ok(incoming.path, incoming.query_string):
            return self._reject(_FORBIDDEN, "token missing or wrong", incoming)
        if incoming.method != "POST":
            return self._reject(_NOT_ALLOWED, f"method {incoming.method[:16]}", incoming)
        charset = guards.form_charset(incoming.content_type)
        if charset is None:
            return self._reject(_MEDIA_TYPE, "not a form", incoming)
        if incoming.content_length is not None:
            declared = incoming.content_length.strip()
            if not declared.isdigit() or not declared.isascii():
                return self._reject(_BAD_LENGTH, "length", incoming)
            digits = declared.lstrip("0")
            if len(digits) > _MAX_LENGTH_DIGITS or int(digits or "0") > guards.max_body:
                return self._reject(_TOO_LARGE, "declared length over the limit", incoming)
        body = await read_body(guards.max_body)
        if body is None:
            return self._reject(_TOO_LARGE, "body over the limit", incoming)
        try:
            text = body.decode(charset)
            pairs = parse_qsl(
                text,
                keep_blank_values=True,
                encoding=charset,
                errors="strict",
                max_num_fields=_MAX_FIELDS,
            )
        except ValueError:  # UnicodeDecodeError, too many fields
            return self._reject(_BAD_FORM, "form", incoming)
        form: dict[str, str] = {}
        for name, value in pairs:
            form.setdefault(name, value)
        try:
            push = self._parser(form)
        except PushParseError as exc:
            reason = str(exc.reason)
            return self._reject(
                _Answer(400, f"bad request: {reason}".encode("utf-8", "replace")), reason, incoming
            )
        except Exception:
            self._counts["failed"] += 1
            logger.exception("push parser failed; answered 500")
            return _FAILED
        if not TELEMETRY.enabled:
            return await self._dispatch(push)
        before = dict(self._counts)
        answer = await self._dispatch(push)
        result = next((k for k, v in self._counts.items() if v != before.get(k)), "handled")
        code = getattr(push, "code", None)
        TELEMETRY.push(
            str(push.kind),
            result,
            code=code if isinstance(code, int) else None,
            duplicate=result == "duplicates",
        )
        return answer

    async def _dispatch(self, push: Push) -> _Answer:
        handler = self._handlers.get(push.kind)
        if handler is None:
            self._counts["ignored"] += 1
            logger.debug("no handler for %s pushes; acknowledged %r", push.kind, push)
            return _SUCCESS
        key = push.dedupe_key
        token = uuid.uuid4().hex
        claimed = False
        try:
            with anyio.move_on_after(self._busy_wait):
                while True:
                    with anyio.CancelScope(shield=True):
                        state = await self._dedupe.claim(
                            key, token, now=self._clock.time(), lease=self._lease
                        )
                    if state is ClaimState.DONE:
                        self._counts["duplicates"] += 1
                        logger.debug("duplicate %r acknowledged", push)
                        return _SUCCESS
                    if state is ClaimState.CLAIMED:
                        claimed = True
                        break
                    event = self._inflight.get(key)
                    if event is not None:
                        await event.wait()
                    else:  # in progress in another worker: poll the shared store
                        await anyio.sleep(_POLL_INTERVAL)
        except Exception:
            self._counts["busy"] += 1
            logger.exception("dedupe store failed for %r; answered 503", push)
            return _BUSY
        if not claimed:
            self._counts["busy"] += 1
            logger.info("%r still in progress after %ss; answered 503", push, self._busy_wait)
            return _BUSY
        return await self._run(handler, push, key, token)

    async def _run(
        self, handler: Callable[[Any], object], push: Push, key: str, token: str
    ) -> _Answer:
        done = self._inflight[key] = anyio.Event()
        try:
            try:
                if _is_async_callable(handler):
                    result = handler(push)
                else:
                    result = await anyio.to_thread.run_sync(handler, push)
                if inspect.isawaitable(result):
                    await result
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    try:
                        await self._dedupe.release(key, token)
                    except Exception:
                        logger.exception("could not release the claim on %r", push)
                if not isinstance(exc, Exception):
                    raise
                self._counts["failed"] += 1
                logger.error(
                    "%s handler failed for %r; answered 500 so the provider pushes it again",
                    push.kind,
                    push,
                    exc_info=True,
                )
                return _FAILED
            with anyio.CancelScope(shield=True):
                try:
                    await self._dedupe.complete(
                        key, token, now=self._clock.time(), ttl=self._window
                    )
                except Exception:
                    logger.exception(
                        "handled %r but could not record it; a retry may handle it again", push
                    )
            self._counts["handled"] += 1
            return _SUCCESS
        finally:
            if self._inflight.get(key) is done:
                del self._inflight[key]
            done.set()
