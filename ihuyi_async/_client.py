"""IhuyiClient: send, send_template, balance, add_template over one pooled connection.

The send path, in order: validate locally (no limiter token, no request for a
message the provider would refuse), take a limiter slot, sign, POST, parse,
classify (accepted / rejected / unknown), and settle the slot (kept, refunded,
or synced with the provider's rate-limit answer).
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import (
    AsyncIterable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, Literal

import httpx

from ._backends import Backend
from ._clock import Clock, SystemClock
from ._config import DEFAULT_KEEPALIVE_EXPIRY as DEFAULT_KEEPALIVE_EXPIRY
from ._config import DEFAULT_TIMEOUT, FLAVOURS, MAX_RESPONSE_BYTES, Flavour, RetryPolicy
from ._core import DEFAULT as DEFAULT
from ._core import WRITE_JITTER as WRITE_JITTER
from ._core import (
    _BaseClient,
    _check_options,
    _credentials,
    _env_backend,
    _Outgoing,
    _report,
)
from ._exceptions import (
    ApiError,
    DeliveryUnknownError,
    ProtocolError,
    UnsupportedOperationError,
)
from ._forms import Forms
from ._journal import Journal
from ._models import SendResult, TemplateResult
from ._parsing import parse_submit, parse_template
from ._redact import content_digest
from ._transport import (
    CallProgress,
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
from .idempotency._store import check_key

if TYPE_CHECKING:
    from ._batch import BatchRun, ConflictPolicy, Message, ProgressHook
    from .idempotency import KeyStore
    from .limiter import Limiter

__all__ = ["IhuyiClient"]

logger = logging.getLogger("ihuyi_async")


def _check_flavour(flavour: str) -> Flavour:
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {sorted(FLAVOURS)}, not {flavour!r}")
    return FLAVOURS[flavour]


class IhuyiClient(_BaseClient):
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
    :param backend: ``"httpx"`` (default; asyncio and trio), ``"aiohttp"`` (extra
        ``aiohttp``; asyncio only) or ``"native"`` (extra ``native``; asyncio only; the
        cheapest under high concurrency); default ``$IHUYI_BACKEND`` unless
        ``transport=`` or ``http_client=`` is given.
    :param verify: TLS certificate verification, every backend: ``True`` (system CAs), a
        CA bundle path, or an :class:`ssl.SSLContext` (named as httpx names it; cannot be off).
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
        verify: ssl.SSLContext | str | bool = True,
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
        account, api_key = _credentials("IHUYI", account, api_key)
        self._flavour: Flavour = _check_flavour(
            flavour if flavour is not None else env.get("IHUYI_FLAVOUR") or "legacy"
        )
        where = f"the {self._flavour.name!r} flavour"
        _check_options(response_format, self._flavour.formats, where, signing, max_response_bytes)
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
        self._backend = _env_backend(backend, transport is not None or http_client is not None)

        self._setup_limiter(limiter)

        base, flav = self._base_url, self._flavour
        self._submit_url, self._getnum_url = base + flav.submit_path, base + flav.getnum_path
        self._addtemplate_url = base + flav.addtemplate_path if flav.addtemplate_path else None

        self._setup_wire(
            timeout=timeout,
            deadline=deadline,
            limits=limits,
            transport=transport,
            http_client=http_client,
            max_response_bytes=max_response_bytes,
            idempotency=idempotency,
            idempotency_wait=idempotency_wait,
            verify=verify,
        )

    # ----------------------------------------------------------------- lifecycle

    @property
    def flavour(self) -> str:
        return self._flavour.name

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

    def _parse_submit(self, data: bytes, status: int, number: str) -> tuple[str, str]:
        return parse_submit(data, self._format, status_code=status, mobile=number)

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
        try:
            kind = check_kind(kind)
            number = normalize_mobile(mobile)
            validate_content(content, max_length=self._flavour.max_content, mobile=number)
        except Exception as exc:  # refused locally: still a span and a count (telemetry on)
            self._invalid("Submit", exc)
            raise
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
        try:
            kind = check_kind(kind)
            if not self._flavour.templates:
                raise UnsupportedOperationError(
                    "the legacy flavour has no template mode: use IhuyiClient(flavour='json') "
                    "or send the full text with send()"
                )
            if isinstance(template_id, bool) or not isinstance(template_id, int) or template_id <= 0:
                raise ValueError(f"template_id must be a positive int, not {template_id!r}")
            number = normalize_mobile(mobile)
            joined = join_variables(variables)  # what goes out as ``content``: "v1|v2|…"
            validate_content(joined, max_length=self._flavour.max_content, mobile=number)
        except Exception as exc:  # refused locally: still a span and a count (telemetry on)
            self._invalid("Submit", exc)
            raise
        template = self._templates.get(template_id)
        segments = None
        if template is not None:
            text = render_template(template, joined.split("|"))
            segments = count_segments(text, self._signature)
        out = _Outgoing(number, joined, f"#{template_id}:{joined}", segments, kind, template_id)
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
        idempotency_keys: bool = False,
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
        :param idempotency_keys: send each message with its ``id`` as its idempotency key
            (the client's key store; share a ``RedisKeyStore``), so two runs of one batch,
            on any hosts, send each message once: one replayed by its key comes back
            ``already_accepted`` (``result.replayed``), one another run still holds
            ``in_progress``, an id used for another message ``conflict``.
        :raises ValueError: ``concurrency`` below 1, an unknown ``on_conflict``, or with
            ``idempotency_keys`` a message of a list (or other sized input) without ``id``.
        """
        from ._batch import send_many
        from ._codes import ACCOUNT_LEVEL_CODES

        path_or_journal = journal if journal is None or isinstance(journal, Journal) else str(journal)
        return send_many(
            self._send_message,
            messages,
            clock=self._limiter.clock if self._limiter is not None else None,
            start=self._enter,
            concurrency=concurrency,
            on_progress=on_progress,
            journal=path_or_journal,
            on_conflict=on_conflict,
            stop_on=ACCOUNT_LEVEL_CODES if stop_on is DEFAULT else stop_on,
            resend_unknown=resend_unknown,
            idempotency_keys=idempotency_keys,
        )

    async def _send_message(
        self, message: Message, on_wire: Callable[[], None] | None, idempotency_key: str | None
    ) -> SendResult:
        """One batch message, a template or a text: the send function ``send_many`` runs."""
        if idempotency_key is not None:
            check_key(idempotency_key)
        if message.template_id is not None:
            return await self._send_template(
                message.mobile, message.template_id, message.variables or (), message.kind,
                on_wire, idempotency_key,
            )
        if message.content is None:
            raise ValueError("message has neither content nor template_id")
        return await self._send_text(message.mobile, message.content, message.kind, on_wire, idempotency_key)

    async def add_template(self, content: str) -> TemplateResult:
        """Submit a template for review; ``【变量】`` marks each variable (legacy flavour).

        Never retried unless the request provably never left.
        """
        self._enter()
        span = self._span("AddTemplate")
        with span:
            try:
                result = await self._add_template(content)
            except BaseException as exc:
                _report(span, exc)
                raise
            span.outcome("accepted", 2)
            return result

    async def _add_template(self, content: str) -> TemplateResult:
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
