"""What every product client shares: the wire, the outcome rules, limiter settling, keys.

Owns :class:`_BaseClient`, the base of :class:`~ihuyi_async.IhuyiClient` and of the
product clients (:mod:`._products`): its lifecycle (one event loop, ``aclose``, the
never-closed warning), the wire (``_exchange``: one retry loop within the call's
deadline; ``_post_once``: "not sent" or "unknown" from where a send failed), the send
path (take limiter slots, write, read the answer, settle the slots: kept, refunded, or
synced with the provider's rate-limit answer) and idempotency keys. A subclass says
where it sends (``_submit_url``), how its body is built (:meth:`_BaseClient._submit_body`)
and which field of the answer carries the id (``_id_field``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import ssl
import uuid
import warnings
from asyncio import _get_running_loop as _asyncio_running_loop
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import httpx
import sniffio

from ._backends import build_wire
from ._clock import Clock
from ._codes import RATE_LIMIT_CODES
from ._config import RetryPolicy
from ._exceptions import (
    ApiError,
    DeliveryUnknownError,
    IdempotencyInProgressError,
    IdempotencyKeyReuseError,
    IhuyiError,
    ProtocolError,
    TransportError,
)
from ._forms import Forms
from ._models import CST, Balance, SendResult
from ._parsing import parse_balance, parse_submit
from ._redact import content_digest, mask_mobile
from ._telemetry import NO_SPAN, TELEMETRY, CallSpan
from ._transport import (
    CallProgress,
    HttpxTransport,
    Transport,
    WireError,
    post_within,
    release_dead_loop,
)
from .idempotency._store import LOST, fingerprint, hash_key

if TYPE_CHECKING:
    from .idempotency import KeyStore
    from .limiter import Limiter, Reservation, Rule

__all__: list[str] = []

logger = logging.getLogger("ihuyi_async")

_C = TypeVar("_C", bound="_BaseClient")


class _Default:
    """Sentinel: "use the library's default" (distinct from ``None``, which disables)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()


def _unknown(
    reason: str,
    number: str,
    content: str,
    sent_at: _dt.datetime | None,
    detail: str,
    kind: object = None,
) -> DeliveryUnknownError:
    """The unknown outcome of a send of ``content``. No digest without content, nor for a
    verification send, whose content is a code: with 10^4 to 10^6 codes an unkeyed digest
    gives the code away to whoever reads the error or the log."""
    digest = content_digest(content) if content and kind != "verification" else ""
    return DeliveryUnknownError(
        reason, mobile=number, content_digest=digest, sent_at=sent_at, detail=detail
    )


#: Seconds a request takes from our socket to the provider's, as it varies between two
#: sends to one number: what the write spacing adds to a per-second rule's period.
WRITE_JITTER = 0.05


def _write_spacing(limiter: Limiter | None) -> float | None:
    """The per-number write spacing: the strictest one-per-period bucket of the limiter's
    rules (the provider's 1/s), plus the smaller of its margin and :data:`WRITE_JITTER`."""
    if limiter is None:
        return None
    spacings = [
        rule.period + min(rule.margin, WRITE_JITTER)
        for rule in limiter.rules
        if rule.algorithm == "token_bucket" and rule.limit == 1 and not rule.per_content
        and rule.kind is None
    ]
    return max(spacings) if spacings else None


def _credentials(prefix: str, account: str | None, api_key: str | None) -> tuple[str, str]:
    """The account and key, from the arguments or ``$<prefix>_ACCOUNT`` / ``$<prefix>_API_KEY``."""
    env = os.environ
    account = account if account is not None else env.get(f"{prefix}_ACCOUNT")
    api_key = api_key if api_key is not None else env.get(f"{prefix}_API_KEY")
    if not isinstance(account, str) or not account.strip():
        raise ValueError(f"no account: pass account= or set {prefix}_ACCOUNT")
    if not isinstance(api_key, str) or not api_key.strip():
        raise ValueError(f"no api_key: pass api_key= or set {prefix}_API_KEY")
    return account, api_key


def _env_backend(backend: str | None, custom_httpx: bool) -> str:
    """The backend: as given, else ``$IHUYI_BACKEND`` unless an httpx transport/client is given."""
    if backend is not None:
        return backend
    return "httpx" if custom_httpx else os.environ.get("IHUYI_BACKEND") or "httpx"


def _check_options(
    response_format: str, formats: tuple[str, ...], where: str, signing: str, max_response_bytes: int
) -> None:
    """The options every client takes, each refused in one line when wrong."""
    if response_format not in ("json", "xml"):
        raise ValueError(f"response_format must be 'json' or 'xml', not {response_format!r}")
    if response_format not in formats:
        raise ValueError(f"{where} answers only {formats}")
    if signing not in ("dynamic", "plain"):
        raise ValueError(f"signing must be 'dynamic' or 'plain', not {signing!r}")
    if max_response_bytes < 256:
        raise ValueError("max_response_bytes must be at least 256")


def _check_deadline(deadline: object, timeout: httpx.Timeout) -> float | None:
    """The call deadline: ``DEFAULT`` is twice the timeout's largest phase."""
    if deadline is DEFAULT:
        phases = [p for p in (timeout.connect, timeout.read, timeout.write, timeout.pool) if p]
        return 2.0 * max(phases) if phases else None
    if deadline is None:
        return None
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
        raise TypeError(f"deadline must be a number of seconds or None, not {deadline!r}")
    if not math.isfinite(deadline) or deadline <= 0:
        raise ValueError(f"deadline must be a positive number of seconds, not {deadline!r}")
    return float(deadline)


def _loop_time() -> float:
    """``anyio.current_time()``: the running asyncio loop's clock read directly (no sniffio)."""
    loop = _asyncio_running_loop()
    return loop.time() if loop is not None else anyio.current_time()


def _left(end: float | None) -> float | None:
    """Seconds left until ``end`` (event-loop clock), never negative."""
    return None if end is None else max(0.0, end - _loop_time())


async def _close_elsewhere(home: object, wire: Transport) -> None:
    """Close ``wire``, opened on the event loop ``home``, from another one."""
    import asyncio

    import anyio.to_thread

    if not isinstance(home, asyncio.AbstractEventLoop):
        wire.abandon()  # a trio run: its sockets were closed when it ended
    elif home.is_closed():
        wire.abandon()
        release_dead_loop(home)
    elif home.is_running():  # in another thread
        future = asyncio.run_coroutine_threadsafe(wire.aclose(), home)
        await anyio.to_thread.run_sync(future.result)
    else:  # stopped but not closed: run the close on it, in a worker thread
        await anyio.to_thread.run_sync(home.run_until_complete, wire.aclose())


def _accepted_record(result: SendResult) -> str:
    return json.dumps(
        {
            "s": "accepted",
            "smsid": result.smsid,
            "segments": result.segments,
            "sent_at": result.sent_at.isoformat(),
            "message": result.message,
            "template_id": result.template_id,
        },
        ensure_ascii=False,
    )


def _unknown_record(exc: BaseException, progress: CallProgress) -> str:
    reason = exc.reason if isinstance(exc, DeliveryUnknownError) else "cancelled"
    sent_at = exc.sent_at if isinstance(exc, DeliveryUnknownError) else None
    return json.dumps(
        {"s": "unknown", "reason": reason, "sent_at": sent_at.isoformat() if sent_at else None}
    )


def _replay(record: str, number: str, params: tuple[object, ...]) -> SendResult:
    """The first call's outcome, again: its result (``replayed``), or its unknown outcome."""
    try:
        data = json.loads(record)
        if not isinstance(data, dict):
            raise ValueError(record)
        sent_at = _dt.datetime.fromisoformat(data["sent_at"]) if data.get("sent_at") else None
        if data.get("s") == "accepted" and sent_at is not None:
            return SendResult(
                smsid=str(data["smsid"]),
                segments=data.get("segments"),
                mobile=number,
                sent_at=sent_at,
                message=str(data.get("message") or ""),
                template_id=data.get("template_id"),
                replayed=True,
            )
        reason = str(data.get("reason") or "unknown")
    except (ValueError, KeyError, TypeError):  # a damaged record: never a reason to resend
        reason, sent_at = "unreadable_record", None
    # params: (number, kind, template_id, [extra,] text), as _dispatch builds them
    raise _unknown(
        reason,
        number,
        str(params[-1]),
        sent_at,
        "the outcome of the first call with this idempotency key; not sent again",
        kind=params[1],
    )


async def _settle(operation: Awaitable[None], number: str) -> None:
    """Record a keyed send's outcome, shielded; a store failure is logged, not raised (the
    claim then reads as unknown once its lease ends, which never resends)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(10):
        try:
            await operation
        except IhuyiError as exc:
            logger.warning("idempotency key for %s not settled: %s", mask_mobile(number), exc)


@dataclass(slots=True, eq=False)  # not frozen: a frozen __init__ costs ~1 µs more per send
class _Outgoing:
    """One validated message, as it goes out (never changed once built).

    :ivar text: what is sent as ``content``: the message, or the ``|``-joined variables.
    :ivar limiter_text: what the limiter's identical-content rules compare.
    :ivar numbers: the numbers of a multi-number send (``number`` is then their
        comma-joined wire form); empty for one number.
    :ivar extra: further form fields, already encoded (``&stime=...``).
    """

    number: str
    text: str
    limiter_text: str
    segments: int | None
    kind: str | None
    template_id: int | None = None
    numbers: tuple[str, ...] = ()
    extra: str = ""

    @property
    def recipients(self) -> tuple[str, ...]:
        """The numbers the limiter counts: ``numbers`` (a multi-number send), else ``number``."""
        return self.numbers or (self.number,)


#: The telemetry span of the call running in this task (the limiter reports its wait to it).
_SPAN: ContextVar[CallSpan | None] = ContextVar("ihuyi_call_span", default=None)


def _report(span: CallSpan, exc: BaseException) -> None:
    """How a failed call ended, for its span and metrics (``_telemetry.outcome_of``)."""
    span.failed(exc)


def _loop_token() -> object:
    """Identity of the running event loop (asyncio loop or trio run)."""
    library = sniffio.current_async_library()
    if library == "asyncio":
        import asyncio

        return asyncio.get_running_loop()
    if library == "trio":
        import trio

        return trio.lowlevel.current_trio_token()
    return library  # pragma: no cover - other anyio backends


class _BaseClient:
    """The shared core of every client (see the module docs); not public.

    A subclass's constructor sets ``_format``, ``_forms``, ``_submit_url``, ``_clock``,
    ``_retry``, ``_backend`` and calls :meth:`_setup_limiter` and :meth:`_setup_wire`.
    """

    #: The answer field that carries the accepted message's id: ``smsid``, or the sibling
    #: product's own (``ismsid``, ``voiceid``; README "The provider's other products").
    _id_field: str = "smsid"

    _format: Literal["json", "xml"]
    _forms: Forms
    _submit_url: str
    _getnum_url: str
    _clock: Clock
    _retry: RetryPolicy
    _backend: str

    # ----------------------------------------------------------------- construction

    def _setup_limiter(self, limiter: Limiter | None, rules: tuple[Rule, ...] | None = None) -> None:
        """The limiter (``DEFAULT``: ``rules``, else the provider's SMS rules, in memory)."""
        if limiter is DEFAULT:
            from .limiter import Limiter

            limiter = Limiter(rules, clock=self._clock)
        self._limiter: Limiter | None = limiter
        self._write_spacing = _write_spacing(limiter)
        self._last_write: OrderedDict[str, float] = OrderedDict()

    def _setup_wire(
        self,
        *,
        timeout: float | httpx.Timeout | None,
        deadline: float | None,
        limits: httpx.Limits | None,
        transport: httpx.AsyncBaseTransport | None,
        http_client: httpx.AsyncClient | None,
        max_response_bytes: int,
        idempotency: KeyStore | None,
        idempotency_wait: bool,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        """The call deadline, the backend, the key store, and the loop it is not yet bound to."""
        timeout_obj = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._deadline = _check_deadline(deadline, timeout_obj)
        self._wire: Transport = build_wire(
            self._backend,
            timeout=timeout_obj,
            limits=limits,
            transport=transport,
            http_client=http_client,
            max_bytes=max_response_bytes,
            verify=verify,
        )
        self._key_store = idempotency
        self._key_wait = bool(idempotency_wait)
        if idempotency is not None:
            self._check_lease(idempotency)
        self._loop: object | None = None
        self._closed = False

    # ----------------------------------------------------------------- lifecycle

    @staticmethod
    def _check_base_url(url: str) -> str:
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"base_url must be http(s)://host[:port], not {url!r}")
        if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
            raise ValueError("base_url takes scheme and host only; the flavour supplies the paths")
        return url.rstrip("/")

    def _enter(self) -> None:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed; create a new one")
        if self._loop is not None and _asyncio_running_loop() is self._loop:
            return  # the common case, without asking sniffio
        token = _loop_token()
        if self._loop is None:
            if self._wire.asyncio_only and sniffio.current_async_library() != "asyncio":
                raise RuntimeError(
                    f"backend={self._backend!r} runs on asyncio only; use backend='httpx' on trio"
                )
            self._loop = token
        elif token is not self._loop:
            raise RuntimeError(
                f"this {type(self).__name__} was opened on another event loop; create one "
                "client per loop"
            )

    async def __aenter__(self: _C) -> _C:
        self._enter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (not a user's own ``http_client``). Idempotent.

        Works from another event loop too (after the "opened on another event loop"
        error): on asyncio, the pool is closed on the loop it was opened on if that
        loop still runs, or its sockets are released if that loop is closed.
        """
        if self._closed:
            return
        self._closed = True
        home = self._loop
        if home is None or _asyncio_running_loop() is home or _loop_token() is home:
            await self._wire.aclose()
            return
        await _close_elsewhere(home, self._wire)

    def __del__(self) -> None:
        # As httpx does: a client that was used and never closed holds open sockets.
        if getattr(self, "_loop", None) is not None and not getattr(self, "_closed", True):
            warnings.warn(
                f"{self!r} was never closed: call `await client.aclose()` or use "
                f"`async with {type(self).__name__}(...) as client:`",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def limiter(self) -> Limiter | None:
        """The limiter in use (``None`` when disabled)."""
        return self._limiter

    @property
    def http_client(self) -> httpx.AsyncClient | None:
        """The underlying httpx client (``None`` on the aiohttp backend)."""
        return self._wire.client if isinstance(self._wire, HttpxTransport) else None

    # ----------------------------------------------------------------- calls

    async def balance(self) -> Balance:
        """Messages left on the account (GetNum; retried on transient failures)."""
        self._enter()
        span = self._span("GetNum")
        with span:
            token = _SPAN.set(span)
            try:
                balance = await self._balance()
            except BaseException as exc:
                _report(span, exc)
                raise
            finally:
                _SPAN.reset(token)
            span.outcome("accepted", 2)
            return balance

    async def _balance(self) -> Balance:
        forms, clock = self._forms, self._clock
        try:
            status, data = await self._exchange(
                self._getnum_url, lambda: forms.getnum(int(clock.time())), CallProgress(), idempotent=True
            )
        except WireError as exc:
            raise TransportError(
                f"balance query failed: {exc.reason} ({exc.detail})",
                sent=None if exc.written else False,
            ) from exc
        num, msg = parse_balance(data, self._format, status_code=status)
        return Balance(num=num, message=msg)

    def _invalid(self, method: str, exc: BaseException) -> None:
        """A call refused by local validation before its span opened: its span and count
        all the same (outcome ``invalid``), without the number. Nothing when telemetry is off."""
        span = self._span(method)
        if span is not NO_SPAN:
            with span:
                span.failed(exc)

    def _span(self, method: str, mobile: str = "", segments: int | None = None) -> CallSpan:
        """The telemetry span of one call: the shared no-op one unless an SDK records."""
        if not TELEMETRY.enabled:
            return NO_SPAN
        product = getattr(self, "_product", None)  # a sibling product's Product, or none
        return TELEMETRY.call(
            method,
            product=str(getattr(product, "name", "sms")),
            flavour=str(getattr(getattr(self, "_flavour", None), "name", "")),
            server_address=httpx.URL(self._submit_url).host,
            mobile=mobile,
            segments=segments,
        )

    def _call_end(self) -> float | None:
        """When this call's deadline ends, on the event loop's clock (``None``: never)."""
        return None if self._deadline is None else _loop_time() + self._deadline

    async def _exchange(
        self, url: str, body: Callable[[], bytes], progress: CallProgress, *, idempotent: bool
    ) -> tuple[int, bytes]:
        """POST within the call's deadline, retried as :class:`RetryPolicy` says: an
        idempotent call (GetNum) on any transport failure and on HTTP 5xx; any other only
        while provably unsent. ``body`` is rebuilt per attempt (a fresh signature time).

        :raises WireError: the last failure (``written``: it may have arrived).
        :raises ProtocolError: the answer was over the size cap.
        """
        policy, end, attempt = self._retry, self._call_end(), 0
        span = _SPAN.get()
        while True:
            attempt += 1
            if span is not None:
                span.set("ihuyi.retry.attempts", attempt)
            try:
                status, data = await post_within(self._wire, url, body(), progress, end)
            except WireError as exc:
                if exc.reason == "deadline":
                    exc.detail = f"no complete answer within the {self._deadline:g} s deadline"
                    if not exc.written:
                        exc.detail += ", before the request was written"
                    raise
                retryable = idempotent or (not exc.written and policy.retry_unsent_sends)
                if not retryable or not self._may_retry(attempt, end):
                    raise
            else:
                if not (idempotent and status >= 500 and self._may_retry(attempt, end)):
                    return status, data
            await self._clock.sleep(policy.delay(attempt))

    def _may_retry(self, attempt: int, end: float | None) -> bool:
        """Another attempt is allowed and its backoff still ends before the deadline."""
        if attempt >= self._retry.max_attempts:
            return False
        return end is None or _loop_time() + self._retry.backoff < end

    async def _post_once(
        self,
        url: str,
        body: bytes,
        number: str,
        content: str,
        sent_at: _dt.datetime | None,
        progress: CallProgress,
        kind: object = None,
    ) -> tuple[int, bytes]:
        """POST a send (not idempotent): "not sent" or "unknown" from where it failed."""
        try:
            return await self._exchange(url, lambda: body, progress, idempotent=False)
        except WireError as exc:
            if exc.written:
                raise _unknown(exc.reason, number, content, sent_at, exc.detail, kind) from exc
            raise TransportError(f"not sent: {exc.reason} ({exc.detail})") from exc
        except ProtocolError as exc:  # oversized answer
            raise _unknown(exc.reason, number, content, sent_at, str(exc), kind) from exc

    def _check_lease(self, store: KeyStore) -> None:
        limiter_wait = self._limiter.max_wait if self._limiter is not None else 0.0
        if self._deadline is None or store.lease <= self._deadline + limiter_wait:
            raise ValueError(
                f"the idempotency store's lease ({store.lease:g} s) must exceed the call "
                f"deadline ({self._deadline} s) plus the limiter's max_wait ({limiter_wait:g} s): "
                "a live sender must never outlast its claim"
            )

    def _keys(self) -> KeyStore:
        store = self._key_store
        if store is None:
            from .idempotency import MemoryKeyStore

            store = MemoryKeyStore(clock=self._clock)
            self._check_lease(store)
            self._key_store = store
        return store

    async def _send_keyed(
        self,
        key: str,
        params: tuple[object, ...],
        send: Callable[[CallProgress], Awaitable[SendResult]],
    ) -> SendResult:
        """At most one send per key: claim it, send, record the outcome (or free the key)."""
        store = self._keys()
        hashed, owner = hash_key(key), uuid.uuid4().hex
        number = str(params[0])
        claim = await self._claim(store, hashed, fingerprint(*params), owner, number)
        if claim is not None:
            return _replay(claim, number, params)
        # Right before the request can go out, the claim becomes "sending": a worker that
        # dies before that (waiting for its turn, say) leaves a key a later call may take.
        progress = CallProgress(gate=lambda: store.mark_sending(hashed, owner))
        try:
            result = await send(progress)
        except BaseException as exc:
            sent = isinstance(exc, DeliveryUnknownError) or (
                progress.written and not isinstance(exc, (ApiError, TransportError))
            )
            if sent:  # it may have gone: the key keeps "unknown", never resends
                record = _unknown_record(exc, progress)
                await _settle(store.finish(hashed, owner, record), number)
            else:  # provably not sent: a later call may send
                await _settle(store.release(hashed, owner), number)
            raise
        await _settle(store.finish(hashed, owner, _accepted_record(result)), number)
        return result

    async def _claim(
        self, store: KeyStore, hashed: str, digest: str, owner: str, number: str
    ) -> str | None:
        """Claim the key (``None``: ours, send) or wait out its first call (its record)."""
        end = self._call_end()
        while True:
            claim = await store.claim(hashed, digest, owner)
            if claim.state == "claimed":
                return None
            if claim.state == "mismatch":
                raise IdempotencyKeyReuseError(
                    "this idempotency key was used with other parameters (number, content, "
                    "template or variables); nothing was sent"
                )
            if claim.state == "done":
                return claim.record or LOST
            left = _left(end)
            if not self._key_wait or (left is not None and left <= 0):
                raise IdempotencyInProgressError(
                    f"the first call with this idempotency key (to {mask_mobile(number)}) is "
                    "still in flight; nothing was sent: try again later for its outcome"
                )
            await store.settled(hashed, 0.5 if left is None else min(0.5, left))

    async def _dispatch(
        self, out: _Outgoing, on_wire: Callable[[], None] | None, key: str | None
    ) -> SendResult:
        span = self._span("Submit", out.number, out.segments)
        if span is NO_SPAN and key is None:  # no telemetry: nothing to record or report
            return await self._submit(out, on_wire, CallProgress())
        with span:
            token = _SPAN.set(span)
            try:
                if key is None:
                    result = await self._submit(out, on_wire, CallProgress())
                else:
                    result = await self._send_keyed(
                        key,
                        # further fields (a marketing ``stime``) only when present, so
                        # the keys of other sends keep their fingerprints
                        (out.number, out.kind, out.template_id, *filter(None, [out.extra]), out.text),
                        lambda progress: self._submit(out, on_wire, progress),
                    )
            except BaseException as exc:
                _report(span, exc)
                raise
            finally:
                _SPAN.reset(token)
            span.outcome("accepted", 2)
            span.set("ihuyi.smsid", result.smsid)
            if result.replayed:
                span.set("ihuyi.replayed", True)
            return result

    async def _submit(
        self, out: _Outgoing, on_wire: Callable[[], None] | None, progress: CallProgress
    ) -> SendResult:
        """Take a limiter slot, write the request, read the answer, settle the slot."""
        reservations = await self._reserve(out)
        if self._write_spacing is not None and self._wire.watches_writes:
            numbers = out.numbers or (out.number,)
            then = progress.gate  # e.g. an idempotency key's "sending" mark, after the spacing
            progress.gate = lambda: self._write_gate(numbers, then, progress.end)
        try:
            sent_at, status, data = await self._write(out, on_wire, progress)
        except DeliveryUnknownError as exc:
            logger.warning("outcome unknown for %s: %s", mask_mobile(out.number), exc.reason)
            raise
        except BaseException as exc:
            if not progress.written:
                # Nothing left (local failure, not sent, cancelled before the write): give the
                # slot back, shielded so a cancellation cannot cut the refund short.
                if reservations:
                    with anyio.CancelScope(shield=True):
                        for reservation in reservations:
                            await reservation.refund()
            elif not isinstance(exc, Exception):
                # Cancelled while the request may be on the wire: keep the limiter slot.
                logger.warning(
                    "send to %s cancelled in flight: outcome unknown", mask_mobile(out.number)
                )
            raise
        return await self._read_answer(out, reservations, sent_at, status, data)

    async def _reserve(self, out: _Outgoing) -> list[Reservation]:
        """One limiter slot per recipient (none without a limiter); all or none."""
        limiter = self._limiter
        if limiter is None:
            return []
        if not out.numbers:
            slot = await limiter.acquire(out.number, content=out.limiter_text, kind=out.kind)
            span = _SPAN.get()
            if span is not None:
                span.waited(slot.waited)
            return [slot]
        taken: list[Reservation] = []
        try:
            for number in out.numbers:
                slot = await limiter.acquire(number, content=out.limiter_text, kind=out.kind)
                taken.append(slot)
        except BaseException:
            with anyio.CancelScope(shield=True):
                for reservation in taken:
                    await reservation.refund()
            raise
        return taken

    def _write_gate(
        self,
        numbers: tuple[str, ...],
        then: Callable[[], Awaitable[None] | None] | None,
        end: float | None,
    ) -> Awaitable[None] | None:
        """The send's write gate (:attr:`CallProgress.gate`): ``None`` when nothing has to
        wait (no number went out less than the spacing ago, no further gate), its writes
        noted at once; else the awaitable :meth:`_space_writes`. The common case, a number
        not written within the last second, then costs no coroutine at all."""
        now = self._clock.time()
        if then is None and not self._must_wait(numbers, now):
            for number in numbers:
                self._note_write(number, now)
            return None
        return self._space_writes(numbers, then, end)

    async def _space_writes(
        self,
        numbers: tuple[str, ...],
        then: Callable[[], Awaitable[None] | None] | None = None,
        end: float | None = None,
    ) -> None:
        """:meth:`_space_write` for each number of a send, then the next gate if any;
        a wait (a spacing, the next gate) within ``end`` (event-loop clock) when given.

        :raises WireError: ``deadline`` (not written) when the waits pass ``end``.
        """
        if end is not None and (then is not None or self._must_wait(numbers)):
            with anyio.CancelScope(deadline=end):
                await self._pass_gate(numbers, then)
                return
            raise WireError("deadline", written=False, detail="waiting to write")
        await self._pass_gate(numbers, then)

    async def _pass_gate(
        self, numbers: tuple[str, ...], then: Callable[[], Awaitable[None] | None] | None
    ) -> None:
        for number in numbers:
            await self._space_write(number)
        if then is not None:
            pending = then()
            if pending is not None:
                await pending

    def _must_wait(self, numbers: tuple[str, ...], now: float | None = None) -> bool:
        """Whether a number of the send went out less than the write spacing ago."""
        spacing, last_write = self._write_spacing, self._last_write
        assert spacing is not None
        if now is None:
            now = self._clock.time()
        for number in numbers:
            last = last_write.get(number)
            if last is not None and last + spacing > now:
                return True
        return False

    async def _space_write(self, number: str) -> None:
        """Keep one number's requests at least the per-second spacing apart *as written*.

        The limiter spaces turns; a busy event loop can still delay one send's write
        more than the next one's, and the provider counts on arrival. Right before a
        request goes out (connection in hand), this waits if the number's previous
        request in this process went out less than the spacing ago.
        """
        spacing, last_write, clock = self._write_spacing, self._last_write, self._clock
        assert spacing is not None
        now = clock.time()
        last = last_write.get(number)
        if last is not None and last + spacing > now:
            await clock.sleep(last + spacing - now)
            now = clock.time()
        self._note_write(number, now)

    def _note_write(self, number: str, now: float) -> None:
        """Record that ``number`` was written at ``now`` (the spacing table's bookkeeping)."""
        spacing, last_write = self._write_spacing, self._last_write
        assert spacing is not None
        # Kept in write order (oldest first): forget the numbers whose spacing has passed,
        # each once, so the work per write stays constant however many numbers are recent.
        last_write[number] = now
        last_write.move_to_end(number)
        while True:
            oldest = next(iter(last_write))
            if last_write[oldest] + spacing > now:
                break
            del last_write[oldest]

    async def _write(
        self, out: _Outgoing, on_wire: Callable[[], None] | None, progress: CallProgress
    ) -> tuple[_dt.datetime, int, bytes]:
        now = self._clock.time()
        body = self._submit_body(out, int(now))
        sent_at = _dt.datetime.fromtimestamp(now, CST)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("submit to %s (%s segments)", mask_mobile(out.number), out.segments)
        if on_wire is not None:
            on_wire()  # e.g. the batch journal's "pending" entry, flushed before the request
        status, data = await self._post_once(
            self._submit_url, body, out.number, out.text, sent_at, progress, out.kind
        )
        return sent_at, status, data

    def _submit_body(self, out: _Outgoing, ts: int) -> bytes:
        """The Submit form for ``out``, signed at ``ts``."""
        return self._forms.submit(out.number, out.text, ts, out.template_id)

    def _parse_submit(self, data: bytes, status: int, number: str) -> tuple[str, str]:
        """``(id, msg)`` of an accepted answer (the id from :attr:`_id_field`)."""
        return parse_submit(
            data, self._format, status_code=status, id_field=self._id_field, mobile=number
        )

    async def _read_answer(
        self,
        out: _Outgoing,
        reservations: list[Reservation],
        sent_at: _dt.datetime,
        status: int,
        data: bytes,
    ) -> SendResult:
        """The outcome from the provider's answer; a rejection refunds (or syncs) the slots."""
        number = out.number
        try:
            smsid, msg = self._parse_submit(data, status, number)
        except ApiError as exc:
            if reservations and self._limiter is not None:
                for recipient, reservation in zip(out.recipients, reservations, strict=True):
                    if exc.code in RATE_LIMIT_CODES:
                        await self._limiter.observe_provider_code(
                            recipient, exc.code, content=out.limiter_text, kind=out.kind
                        )
                    else:
                        await reservation.refund()
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("rejected for %s: %s", mask_mobile(number), exc.code)
            raise
        except ProtocolError as exc:
            logger.warning("outcome unknown for %s: %s", mask_mobile(number), exc.reason)
            raise _unknown(exc.reason, number, out.text, sent_at, str(exc), out.kind) from exc
        except Exception as exc:  # a parser bug must never read as "not sent"
            logger.warning("outcome unknown for %s: unexpected answer", mask_mobile(number))
            detail = repr(exc)[:200]
            raise _unknown("unexpected_answer", number, out.text, sent_at, detail, out.kind) from exc
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("accepted for %s: smsid %s", mask_mobile(number), smsid)
        return SendResult(
            smsid=smsid,
            segments=out.segments,
            mobile=number,
            sent_at=sent_at,
            message=msg,
            template_id=out.template_id,
        )
