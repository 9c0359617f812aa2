"""IhuyiClient: send, send_template, balance, add_template over one pooled connection.

The send path, in order: validate locally (no limiter token, no request for a
message the provider would refuse), take a limiter slot, sign, POST, parse,
classify (accepted / rejected / unknown), and settle the slot (kept, refunded,
or synced with the provider's rate-limit answer).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import uuid
import warnings
from asyncio import _get_running_loop as _asyncio_running_loop
from collections.abc import (
    AsyncIterable,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import anyio
import httpx
import sniffio

from ._backends import Backend, build_wire
from ._clock import Clock, SystemClock
from ._codes import RATE_LIMIT_CODES
from ._config import DEFAULT_KEEPALIVE_EXPIRY as DEFAULT_KEEPALIVE_EXPIRY
from ._config import DEFAULT_TIMEOUT, FLAVOURS, MAX_RESPONSE_BYTES, Flavour, RetryPolicy
from ._exceptions import (
    ApiError,
    DeliveryUnknownError,
    IdempotencyInProgressError,
    IdempotencyKeyReuseError,
    IhuyiError,
    ProtocolError,
    TransportError,
    UnsupportedOperationError,
)
from ._forms import Forms
from ._journal import Journal
from ._models import CST, Balance, SendResult, TemplateResult
from ._parsing import parse_balance, parse_submit, parse_template
from ._redact import content_digest, mask_mobile
from ._transport import (
    CallProgress,
    HttpxTransport,
    Transport,
    WireError,
    post_within,
    release_dead_loop,
)
from ._validation import (
    TRIAL_TEMPLATE,
    Kind,
    check_kind,
    count_segments,
    join_variables,
    normalize_mobile,
    render_template,
    validate_content,
)
from .idempotency._store import LOST, check_key, fingerprint, hash_key

if TYPE_CHECKING:
    from ._batch import BatchRun, ConflictPolicy, Message, ProgressHook
    from .idempotency import KeyStore
    from .limiter import Limiter, Reservation

__all__ = ["IhuyiClient"]

logger = logging.getLogger("ihuyi_async")


class _Default:
    """Sentinel: "use the library's default" (distinct from ``None``, which disables)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()


def _unknown(
    reason: str, number: str, content: str, sent_at: _dt.datetime | None, detail: str
) -> DeliveryUnknownError:
    return DeliveryUnknownError(
        reason, mobile=number, content_digest=content_digest(content), sent_at=sent_at, detail=detail
    )


def _check_flavour(flavour: str, response_format: str, signing: str) -> Flavour:
    """The flavour, once its answer format and the signing mode are known to fit it."""
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {sorted(FLAVOURS)}, not {flavour!r}")
    found = FLAVOURS[flavour]
    if response_format not in ("json", "xml"):
        raise ValueError(f"response_format must be 'json' or 'xml', not {response_format!r}")
    if response_format not in found.formats:
        raise ValueError(f"the {flavour!r} flavour answers only {found.formats}")
    if signing not in ("dynamic", "plain"):
        raise ValueError(f"signing must be 'dynamic' or 'plain', not {signing!r}")
    return found


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


def _left(end: float | None) -> float | None:
    """Seconds left until ``end`` (event-loop clock), never negative."""
    return None if end is None else max(0.0, end - anyio.current_time())


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
    raise DeliveryUnknownError(
        reason,
        mobile=number,
        content_digest=content_digest(str(params[-1])),
        sent_at=sent_at,
        detail="the outcome of the first call with this idempotency key; not sent again",
    )


async def _settle(operation: Awaitable[None], number: str) -> None:
    """Record a keyed send's outcome, shielded; a store failure is logged, not raised (the
    claim then reads as unknown once its lease ends, which never resends)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(10):
        try:
            await operation
        except IhuyiError as exc:
            logger.warning("idempotency key for %s not settled: %s", mask_mobile(number), exc)


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """One validated message, as it goes out.

    :ivar text: what is sent as ``content``: the message, or the ``|``-joined variables.
    :ivar limiter_text: what the limiter's identical-content rules compare.
    """

    number: str
    text: str
    limiter_text: str
    segments: int | None
    kind: str | None
    template_id: int | None = None


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


class IhuyiClient:
    """Asynchronous client of the ihuyi SMS API.

    One instance holds one pooled HTTP connection set: create it once (e.g. in
    an app's lifespan), share it across tasks, close it with :meth:`aclose` or
    ``async with``. It is bound to the event loop it is first used on.

    :param account: the APIID (default: ``$IHUYI_ACCOUNT``).
    :param api_key: the APIKEY (default: ``$IHUYI_API_KEY``). Never logged, never
        in a repr or exception; with ``signing="dynamic"`` never on the wire.
    :param flavour: ``"legacy"`` (``106.ihuyi.com/webservice/sms.php``, default) or
        ``"json"`` (``api.ihuyi.com/sms/Submit.json``, template sends); default
        ``$IHUYI_FLAVOUR``, else legacy.
    :param base_url: scheme and host only; the flavour supplies the paths (default
        ``$IHUYI_BASE_URL``, else the flavour's host).
    :param response_format: ``"json"`` (default) or ``"xml"`` (legacy flavour only).
    :param signing: ``"dynamic"`` (MD5 dynamic password, default) or ``"plain"`` (the
        key itself as password; it then travels in the POST body).
    :param timeout: seconds, or an :class:`httpx.Timeout`: each phase's limit (waiting for
        a pooled connection, connecting, each write, each read).
    :param deadline: seconds one call may take on the wire in all, whatever the server
        does (a trickled or endless answer included): waiting for a pooled connection,
        connecting, writing, reading the whole answer, and retries of unsent sends.
        Default: twice the timeout's largest phase (20 s for ``timeout=10``); ``None``
        disables it. A send ended by it raises :class:`DeliveryUnknownError` if the
        request may have been written, :class:`TransportError` otherwise.
    :param limits: pool limits (:class:`httpx.Limits`), both backends.
    :param transport: an httpx transport (tests: ``emulator.transport``, respx, mocks).
    :param http_client: a user's own :class:`httpx.AsyncClient`; never closed by us.
    :param backend: ``"httpx"`` (default; asyncio and trio) or ``"aiohttp"``
        (extra ``aiohttp``; asyncio only; fastest under high concurrency); default
        ``$IHUYI_BACKEND`` unless ``transport=`` or ``http_client=`` is given.
    :param clock: time source for signing, the default limiter and retry waits.
    :param limiter: a :class:`~ihuyi_async.limiter.Limiter`; default: the provider's
        per-number rules in memory; ``None`` disables local limiting.
    :param signature: your approved signature (e.g. ``【互亿无线】``), counted in segments
        when the content does not already contain it.
    :param templates: known template texts by id, to count segments of template
        sends (the trial template, id 1, is known).
    :param retry: the :class:`RetryPolicy` (sends are never retried unless provably unsent).
    :param idempotency: where ``idempotency_key=`` sends keep their keys: a
        :class:`~ihuyi_async.idempotency.KeyStore` (share a ``RedisKeyStore`` between
        workers); default: in this process's memory, created on first use.
    :param idempotency_wait: a keyed call that finds the key's first call still in
        flight waits for its outcome (``True``, default; bounded by the deadline) or
        raises :class:`IdempotencyInProgressError` at once (``False``).
    """

    def __init__(
        self,
        account: str | None = None,
        api_key: str | None = None,
        *,
        flavour: Literal["legacy", "json"] | None = None,
        base_url: str | None = None,
        response_format: Literal["json", "xml"] = "json",
        signing: Literal["dynamic", "plain"] = "dynamic",
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        deadline: float | None = DEFAULT,
        limits: httpx.Limits | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        backend: Backend | None = None,
        clock: Clock | None = None,
        limiter: Limiter | None = DEFAULT,
        signature: str | None = None,
        templates: dict[int, str] | None = None,
        retry: RetryPolicy | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        idempotency: KeyStore | None = None,
        idempotency_wait: bool = True,
    ) -> None:
        env = os.environ
        account = account if account is not None else env.get("IHUYI_ACCOUNT")
        api_key = api_key if api_key is not None else env.get("IHUYI_API_KEY")
        if backend is None:  # the environment's choice, unless an httpx transport/client is given
            own = transport is None and http_client is None
            backend = (env.get("IHUYI_BACKEND") or "httpx") if own else "httpx"  # type: ignore[assignment]
        if not isinstance(account, str) or not account.strip():
            raise ValueError("no account: pass account= or set IHUYI_ACCOUNT")
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("no api_key: pass api_key= or set IHUYI_API_KEY")
        self._flavour: Flavour = _check_flavour(
            flavour if flavour is not None else env.get("IHUYI_FLAVOUR") or "legacy",
            response_format,
            signing,
        )
        if max_response_bytes < 256:
            raise ValueError("max_response_bytes must be at least 256")
        if base_url is None:
            base_url = env.get("IHUYI_BASE_URL") or self._flavour.default_base_url
        self._base_url = self._check_base_url(base_url)
        self._format: Literal["json", "xml"] = response_format
        self._forms = Forms(
            account,
            api_key,
            signing=signing,
            response_format=response_format,
            send_format=self._flavour.name == "legacy",
        )
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._retry = retry if retry is not None else RetryPolicy()
        self._signature = signature or ""
        self._templates = {1: TRIAL_TEMPLATE, **(templates or {})}
        self._backend: str = backend or "httpx"

        if limiter is DEFAULT:
            from .limiter import Limiter

            limiter = Limiter(clock=self._clock)
        self._limiter: Limiter | None = limiter
        self._write_spacing = _write_spacing(limiter)
        self._last_write: dict[str, float] = {}

        base, flav = self._base_url, self._flavour
        self._submit_url, self._getnum_url = base + flav.submit_path, base + flav.getnum_path
        self._addtemplate_url = base + flav.addtemplate_path if flav.addtemplate_path else None

        timeout_obj = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._deadline = _check_deadline(deadline, timeout_obj)
        self._wire: Transport = build_wire(
            self._backend,
            timeout=timeout_obj,
            limits=limits,
            transport=transport,
            http_client=http_client,
            max_bytes=max_response_bytes,
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
            raise RuntimeError("this IhuyiClient is closed; create a new one")
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
                "this IhuyiClient was opened on another event loop; create one client per loop"
            )

    async def __aenter__(self) -> IhuyiClient:
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
                "`async with IhuyiClient(...) as client:`",
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
    def flavour(self) -> str:
        return self._flavour.name

    @property
    def http_client(self) -> httpx.AsyncClient | None:
        """The underlying httpx client (``None`` on the aiohttp backend)."""
        return self._wire.client if isinstance(self._wire, HttpxTransport) else None

    def __repr__(self) -> str:
        # Safe on a half-built client (a traceback with locals formats it when __init__ raises).
        forms = getattr(self, "_forms", None)
        if forms is None:
            return "IhuyiClient(<not initialised>)"
        state = "closed" if getattr(self, "_closed", False) else "open"
        return (
            f"IhuyiClient(account={forms.account!r}, flavour={self._flavour.name!r}, "
            f"base_url={self._base_url!r}, backend={self._backend!r}, {state})"
        )

    # ----------------------------------------------------------------- public calls

    async def send(
        self,
        mobile: str,
        content: str,
        *,
        kind: Kind | None = None,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Send one message to one number.

        Validated locally first (blank, not a mainland number, emoji, too long), then
        the limiter may make the call wait its turn (per-second rule) or refuse it.

        :param kind: ``"verification"`` for verification codes (their own daily quota) or
            ``"notification"``; anything else raises :class:`ValueError`.
        :param idempotency_key: at most one send per key (1-200 characters): a later
            call with the same key returns this call's result (``replayed=True``) or
            raises its :class:`DeliveryUnknownError` again, and sends nothing; see
            :mod:`ihuyi_async.idempotency`.
        :raises IdempotencyKeyReuseError: the key was used with other parameters.
        :raises IdempotencyInProgressError: the key's first call is still in flight.
        :raises InvalidRequestError: 403/404/406, refused locally, no request made.
        :raises ContentRejectedError: 4073/4074 locally, or 407 etc. by the provider.
        :raises LocalRateLimitError: our limiter refused it; no request made.
        :raises RateLimitedError: the provider refused it for a per-number limit.
        :raises ApiError: any other rejection (subclass by category); not sent.
        :raises TransportError: not sent (connection refused, connect/pool timeout).
        :raises DeliveryUnknownError: it may have been sent; do not blindly resend.
        """
        key = None if idempotency_key is None else check_key(idempotency_key)
        self._enter()
        return await self._send_text(mobile, content, kind, None, key)

    async def _send_text(
        self,
        mobile: str,
        content: str,
        kind: Kind | None,
        on_wire: Callable[[], None] | None,
        idempotency_key: str | None = None,
    ) -> SendResult:
        kind = check_kind(kind)
        number = normalize_mobile(mobile)
        validate_content(content, max_length=self._flavour.max_content, mobile=number)
        segments = count_segments(content, self._signature)
        out = _Outgoing(number, content, content, segments, kind)
        return await self._dispatch(out, on_wire, idempotency_key)

    async def send_template(
        self,
        mobile: str,
        *,
        template_id: int,
        variables: Sequence[str | int],
        kind: Kind | None = None,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Send an approved template with its variables (``json`` flavour).

        :param idempotency_key: as for :meth:`send`.
        :raises UnsupportedOperationError: the legacy flavour has no template mode.
        :raises ValueError: no variables, an empty one, or one containing ``|``.
        """
        key = None if idempotency_key is None else check_key(idempotency_key)
        self._enter()
        return await self._send_template(mobile, template_id, variables, kind, None, key)

    async def _send_template(
        self,
        mobile: str,
        template_id: int,
        variables: Sequence[str | int],
        kind: Kind | None,
        on_wire: Callable[[], None] | None,
        idempotency_key: str | None = None,
    ) -> SendResult:
        kind = check_kind(kind)
        if not self._flavour.templates:
            raise UnsupportedOperationError(
                "the legacy flavour has no template mode: use IhuyiClient(flavour='json') "
                "or send the full text with send()"
            )
        if isinstance(template_id, bool) or not isinstance(template_id, int) or template_id <= 0:
            raise ValueError(f"template_id must be a positive int, not {template_id!r}")
        number = normalize_mobile(mobile)
        wire = join_variables(variables)
        validate_content(wire, max_length=self._flavour.max_content, mobile=number)
        template = self._templates.get(template_id)
        segments = None
        if template is not None:
            text = render_template(template, wire.split("|"))
            segments = count_segments(text, self._signature)
        out = _Outgoing(number, wire, f"#{template_id}:{wire}", segments, kind, template_id)
        return await self._dispatch(out, on_wire, idempotency_key)

    def send_many(
        self,
        messages: Iterable[Message | Mapping[str, Any]] | AsyncIterable[Message | Mapping[str, Any]],
        *,
        concurrency: int = 50,
        on_progress: ProgressHook | None = None,
        journal: str | os.PathLike[str] | Journal | None = None,
        on_conflict: ConflictPolicy = "stop",
        stop_on: Collection[int] | None = DEFAULT,
        resend_unknown: bool = False,
    ) -> BatchRun:
        """Send many messages, yielding one :class:`Outcome` per message as each completes.

        The input is consumed lazily (a generator of millions is never materialised);
        at most ``concurrency`` sends run at once over the shared pool. One message's
        failure never stops the others: each outcome carries its result or its typed
        error. Messages to the same number wait their turn (they do not fail on the
        per-second rule); quotas still refuse. Cancelling the iteration stops promptly
        and sends nothing new; waiting sends give their limiter slot back.

        With ``journal=path`` every outcome (and a "pending" mark right before each
        request) is appended to a JSON-lines file and flushed; a rerun with the same
        journal skips messages already accepted or of unknown outcome (reported as
        ``already_accepted`` / ``already_unknown``), so a crashed run resumes without
        double sends. A message is keyed by its ``id``; without one, by its number, its
        content and its occurrence among identical messages, so inserted, deleted or
        reordered input leaves the other keys alone and an edited message is a new one.
        The journal also keeps each key's fingerprint (number and content): an ``id``
        whose message changed is a conflict (see ``on_conflict``).

        To stop gracefully, call :meth:`BatchRun.stop` and keep iterating: nothing new
        is sent, requests on the wire finish, every message taken gets its outcome. To
        stop at once from the loop (``break``), use the context form, which closes the
        run in your task and lets requests already on the wire finish::

            async with client.send_many(msgs) as outcomes:
                async for outcome in outcomes: ...

        :param messages: :class:`Message` objects or dicts with the keys ``mobile``,
            ``content`` or ``template_id`` + ``variables``, ``id``, ``kind`` (others go
            to ``metadata``).
        :param on_progress: called (sync or async) with a :class:`BatchProgress` after
            every outcome.
        :param on_conflict: a resumed ``id`` whose message changed: ``"stop"`` (default:
            that message's outcome is ``conflict`` and the run stops as by
            :meth:`BatchRun.stop`), ``"skip"`` (trust the journal) or ``"send"`` (send it
            as new). List every conflict first with ``find_conflicts(msgs, Journal(path))``.
        :param stop_on: provider codes after which the run stops as by
            :meth:`BatchRun.stop`, since every other message would get the same answer.
            Default: the codes the registry marks ``account_level`` (wrong credentials,
            IP not allowed, frozen account, balance, clock); ``None`` or ``()`` never stops.
        :param resend_unknown: send again what the journal left unknown or pending.
            **Can send a message twice**: only after reconciling with delivery receipts.
        :raises ValueError: ``concurrency`` below 1, or an unknown ``on_conflict``.
        """
        from ._batch import send_many
        from ._codes import ACCOUNT_LEVEL_CODES

        path_or_journal = journal if journal is None or isinstance(journal, Journal) else str(journal)
        return send_many(
            self,
            messages,
            concurrency=concurrency,
            on_progress=on_progress,
            journal=path_or_journal,
            on_conflict=on_conflict,
            stop_on=ACCOUNT_LEVEL_CODES if stop_on is DEFAULT else stop_on,
            resend_unknown=resend_unknown,
        )

    async def balance(self) -> Balance:
        """Messages left on the account (GetNum; retried on transient failures)."""
        self._enter()
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

    async def add_template(self, content: str) -> TemplateResult:
        """Submit a template for review; ``【变量】`` marks each variable (legacy flavour).

        Never retried unless the request provably never left.
        """
        self._enter()
        if self._addtemplate_url is None:
            raise UnsupportedOperationError(
                "the json flavour documents no AddTemplate: use IhuyiClient(flavour='legacy')"
            )
        validate_content(content, max_length=self._flavour.max_content)
        body = self._forms.addtemplate(content)
        status, data = await self._post_once(
            self._addtemplate_url, body, "", content, None, CallProgress()
        )
        try:
            template_id, msg = parse_template(data, self._format, status_code=status)
        except ApiError:
            raise
        except ProtocolError as exc:
            raise DeliveryUnknownError(
                exc.reason, content_digest=content_digest(content), detail=str(exc)
            ) from exc
        except Exception as exc:  # a parser bug must not read as "not sent"
            raise DeliveryUnknownError(
                "unexpected_answer", content_digest=content_digest(content), detail=repr(exc)[:200]
            ) from exc
        return TemplateResult(template_id=template_id, message=msg)

    # ----------------------------------------------------------------- the wire

    def _call_end(self) -> float | None:
        """When this call's deadline ends, on the event loop's clock (``None``: never)."""
        return None if self._deadline is None else anyio.current_time() + self._deadline

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
        while True:
            attempt += 1
            try:
                status, data = await post_within(self._wire, url, body(), progress, _left(end))
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
        return end is None or anyio.current_time() + self._retry.backoff < end

    async def _post_once(
        self,
        url: str,
        body: bytes,
        number: str,
        content: str,
        sent_at: _dt.datetime | None,
        progress: CallProgress,
    ) -> tuple[int, bytes]:
        """POST a send (not idempotent): "not sent" or "unknown" from where it failed."""
        try:
            return await self._exchange(url, lambda: body, progress, idempotent=False)
        except WireError as exc:
            if exc.written:
                raise _unknown(exc.reason, number, content, sent_at, exc.detail) from exc
            raise TransportError(f"not sent: {exc.reason} ({exc.detail})") from exc
        except ProtocolError as exc:  # oversized answer
            raise _unknown(exc.reason, number, content, sent_at, str(exc)) from exc

    # ----------------------------------------------------------------- idempotency keys

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
        progress = CallProgress()
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
        if key is None:
            return await self._submit(out, on_wire, CallProgress())
        return await self._send_keyed(
            key,
            (out.number, out.kind, out.template_id, out.text),
            lambda progress: self._submit(out, on_wire, progress),
        )

    async def _submit(
        self, out: _Outgoing, on_wire: Callable[[], None] | None, progress: CallProgress
    ) -> SendResult:
        """Take a limiter slot, write the request, read the answer, settle the slot."""
        limiter = self._limiter
        reservation = (
            await limiter.acquire(out.number, content=out.limiter_text, kind=out.kind)
            if limiter is not None
            else None
        )
        if self._write_spacing is not None and progress.gate is None:
            number = out.number
            progress.gate = lambda: self._space_write(number)
        try:
            sent_at, status, data = await self._write(out, on_wire, progress)
        except DeliveryUnknownError as exc:
            logger.warning("outcome unknown for %s: %s", mask_mobile(out.number), exc.reason)
            raise
        except BaseException as exc:
            if not progress.written:
                # Nothing left (local failure, not sent, cancelled before the write): give the
                # slot back, shielded so a cancellation cannot cut the refund short.
                if reservation is not None:
                    with anyio.CancelScope(shield=True):
                        await reservation.refund()
            elif not isinstance(exc, Exception):
                # Cancelled while the request may be on the wire: keep the limiter slot.
                logger.warning(
                    "send to %s cancelled in flight: outcome unknown", mask_mobile(out.number)
                )
            raise
        return await self._read_answer(out, reservation, sent_at, status, data)

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
        if len(last_write) >= 4096:  # bounded: forget numbers whose spacing has passed
            for stale in [n for n, t in last_write.items() if t + spacing <= now]:
                del last_write[stale]
        last_write[number] = now

    async def _write(
        self, out: _Outgoing, on_wire: Callable[[], None] | None, progress: CallProgress
    ) -> tuple[_dt.datetime, int, bytes]:
        now = self._clock.time()
        body = self._forms.submit(out.number, out.text, int(now), out.template_id)
        sent_at = _dt.datetime.fromtimestamp(now, CST)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("submit to %s (%s segments)", mask_mobile(out.number), out.segments)
        if on_wire is not None:
            on_wire()  # e.g. the batch journal's "pending" entry, flushed before the request
        status, data = await self._post_once(
            self._submit_url, body, out.number, out.text, sent_at, progress
        )
        return sent_at, status, data

    async def _read_answer(
        self,
        out: _Outgoing,
        reservation: Reservation | None,
        sent_at: _dt.datetime,
        status: int,
        data: bytes,
    ) -> SendResult:
        """The outcome from the provider's answer; a rejection refunds (or syncs) the slot."""
        number = out.number
        try:
            smsid, msg = parse_submit(data, self._format, status_code=status, mobile=number)
        except ApiError as exc:
            if reservation is not None and self._limiter is not None:
                if exc.code in RATE_LIMIT_CODES:
                    await self._limiter.observe_provider_code(
                        number, exc.code, content=out.limiter_text, kind=out.kind
                    )
                else:
                    await reservation.refund()
            logger.debug("rejected for %s: %s", mask_mobile(number), exc.code)
            raise
        except ProtocolError as exc:
            logger.warning("outcome unknown for %s: %s", mask_mobile(number), exc.reason)
            raise _unknown(exc.reason, number, out.text, sent_at, str(exc)) from exc
        except Exception as exc:  # a parser bug must never read as "not sent"
            logger.warning("outcome unknown for %s: unexpected answer", mask_mobile(number))
            raise _unknown("unexpected_answer", number, out.text, sent_at, repr(exc)[:200]) from exc
        logger.debug("accepted for %s: smsid %s", mask_mobile(number), smsid)
        return SendResult(
            smsid=smsid,
            segments=out.segments,
            mobile=number,
            sent_at=sent_at,
            message=msg,
            template_id=out.template_id,
        )
