"""The provider's other products: marketing SMS, international SMS, voice codes, voice notices.

Owns :class:`MarketingSmsClient`, :class:`InternationalSmsClient`,
:class:`VoiceCodeClient`, :class:`VoiceNoticeClient`, their results and their default
limiter rules. Each is a :class:`~._core._BaseClient` (the same wire, retry loop,
outcome rules, limiter settling and idempotency keys as :class:`~ihuyi_async.IhuyiClient`)
with its own endpoint (:data:`~._config.PRODUCTS`), its own account and environment
variables, its own local validation and the id field its answers carry (as public
integrations call these products, e.g. yii2-ihuyi's gateways and ihuyi106js; see the README
section "The provider's other products").

**Default limiter rules**, per product (pass ``limiter=Limiter(rules)`` to change them,
``limiter=None`` to drop them):

* marketing (:data:`MARKETING_RULES`): 1 message per second per number (4080; the
  provider documents it per number, we guess it holds for every product) and identical
  content 2 per minute / 20 per day per number (408; a promotion sent twice to one
  number is nearly always a mistake, and the provider blacklists after 20). No daily
  cap of 5: the provider documents that one for verification/notification SMS, and a
  marketing account's caps are its own (configurable on the platform);
* voice codes (:data:`VOICE_CODE_RULES`): the domestic SMS rules with every send a
  verification (1/s, 5 per day, 5 codes per day, identical 2/min, 20/day): the
  provider sells voice codes as the fallback of SMS codes, the same anti-bombing
  reasons apply, and the issue asks for them (a guess: the voice product's own caps
  are not published);
* voice notices and international SMS (:data:`VOICE_NOTICE_RULES`,
  :data:`INTERNATIONAL_RULES`): the domestic per-number rules without the verification
  quota (a guess: the provider publishes none for these products).
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import ssl
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypedDict

import httpx

from ._backends import Backend
from ._batch import BatchRun, Message, ProgressHook, send_many
from ._clock import Clock, SystemClock
from ._codes import error_for
from ._config import DEFAULT_TIMEOUT, MAX_RESPONSE_BYTES, PRODUCTS, Product, RetryPolicy
from ._core import DEFAULT, _BaseClient, _check_options, _credentials, _env_backend, _Outgoing
from ._exceptions import IhuyiError, InvalidRequestError
from ._forms import ProductForms, form_quote
from ._journal import Journal
from ._models import CST, SendResult
from ._redact import mask_mobile
from ._validation import (
    count_segments,
    join_variables,
    normalize_mobile,
    validate_content,
)
from .idempotency._store import KeyStore, check_key
from .limiter._limiter import Limiter  # at run time: ProductOptions' hints resolve (public)
from .limiter._rules import Rule, provider_rules

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .pushes import DeliveryReceipt

__all__ = [
    "INTERNATIONAL_RULES",
    "MARKETING_RULES",
    "OPT_OUT",
    "VOICE_CODE_RULES",
    "VOICE_NOTICE_RULES",
    "InternationalSmsClient",
    "InvalidVoiceCodeError",
    "MarketingChunk",
    "MarketingResult",
    "MarketingSmsClient",
    "ProductOptions",
    "VoiceCodeClient",
    "VoiceNoticeClient",
]

#: The opt-out text marketing messages end with by convention ("reply T to unsubscribe", as
#: public marketing integrations append it; README "Marketing SMS").
OPT_OUT = "退订回T"

MARKETING_RULES: tuple[Rule, ...] = provider_rules(per_day=None, verification_per_day=None)
VOICE_CODE_RULES: tuple[Rule, ...] = provider_rules()
VOICE_NOTICE_RULES: tuple[Rule, ...] = provider_rules(verification_per_day=None)
INTERNATIONAL_RULES: tuple[Rule, ...] = provider_rules(verification_per_day=None)


class ProductOptions(TypedDict, total=False):
    """The keyword options every product client takes, typed for mypy and IDEs.

    The same as :class:`~ihuyi_async.IhuyiClient`'s (minus ``flavour`` and ``templates``),
    plus ``id_field``; each product client adds its own (``chunk_size``, ``code_length``,
    ...). Defaults and meanings: those of :class:`~ihuyi_async.IhuyiClient`; ``id_field``
    (default: the product's documented id field) names the answer field that carries the
    id. These are the keyword parameters of every product client's constructor
    (``tests/products`` checks that the two lists agree).
    """

    base_url: str | None
    response_format: Literal["json", "xml"]
    signing: Literal["dynamic", "plain"]
    timeout: float | httpx.Timeout | None
    deadline: float | None
    limits: httpx.Limits | None
    transport: httpx.AsyncBaseTransport | None
    http_client: httpx.AsyncClient | None
    backend: Backend | None
    clock: Clock | None
    limiter: Limiter | None
    signature: str | None
    retry: RetryPolicy | None
    max_response_bytes: int
    idempotency: KeyStore | None
    idempotency_wait: bool
    id_field: str | None
    verify: ssl.SSLContext | str | bool


class _ProductClient(_BaseClient):
    """Construction shared by the product clients (see :class:`MarketingSmsClient`).

    Every product client takes ``id_field=``: the answer field that carries the id, for
    when the provider's answer differs from the documented one (the voice code's ``smsid``
    is a guess), and ``verify=`` as :class:`~ihuyi_async.IhuyiClient` does.
    """

    _product: Product
    _default_rules: tuple[Rule, ...]

    def __init__(
        self,
        account: str | None = None,
        api_key: str | None = None,
        *,
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
        retry: RetryPolicy | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        idempotency: KeyStore | None = None,
        idempotency_wait: bool = True,
        id_field: str | None = None,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        product, env = self._product, os.environ
        account, api_key = _credentials(product.env, account, api_key)
        where = f"{type(self).__name__} on this path"
        _check_options(response_format, product.formats, where, signing, max_response_bytes)
        if base_url is None:
            base_url = env.get(product.base_url_variable()) or product.default_base_url
        self._base_url = self._check_base_url(base_url)
        self._format = response_format
        self._forms = self._pforms = ProductForms(
            account,
            api_key,
            signing=signing,
            response_format=response_format,
            send_format=product.send_format,
        )
        self._clock = clock if clock is not None else SystemClock()
        self._retry = retry if retry is not None else RetryPolicy()
        self._signature = signature or ""
        self._backend = _env_backend(backend, transport is not None or http_client is not None)
        if id_field is not None and (not isinstance(id_field, str) or not id_field.isidentifier()):
            raise ValueError(f"id_field must be a field name such as 'smsid', not {id_field!r}")
        self._id_field = id_field or product.id_field
        self._setup_limiter(limiter, self._default_rules)
        self._submit_url = self._base_url + product.submit_path
        self._getnum_url = self._base_url + product.getnum_path
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

    def _submit_body(self, out: _Outgoing, ts: int) -> bytes:
        return self._pforms.submit(out.number, out.text, ts, out.template_id, out.extra)

    @property
    def product(self) -> str:
        """The product's name (``"marketing"``, ``"international"``, ``"voice-code"``, ...)."""
        return self._product.name

    def __repr__(self) -> str:
        forms = getattr(self, "_forms", None)
        if forms is None:
            return f"{type(self).__name__}(<not initialised>)"
        state = "closed" if getattr(self, "_closed", False) else "open"
        return (
            f"{type(self).__name__}(account={forms.account!r}, base_url={self._base_url!r}, "
            f"backend={self._backend!r}, {state})"
        )

    async def _send_one(self, out: _Outgoing, idempotency_key: str | None) -> SendResult:
        key = None if idempotency_key is None else check_key(idempotency_key)
        return await self._dispatch(out, None, key)


# --------------------------------------------------------------------------- marketing


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketingChunk:
    """One request of a marketing send: its numbers and their common outcome.

    :ivar mobiles: the numbers of this request (masked in the repr).
    :ivar task_id: the answer's serial (``task_id`` in this send's receipts) when
        accepted, else ``None``.
    :ivar error: why it was not accepted: an :class:`~ihuyi_async.ApiError` (refused,
        not sent), a :class:`~ihuyi_async.TransportError` (not sent) or a
        :class:`~ihuyi_async.DeliveryUnknownError` (unknown **for every number in it**).
    :ivar sent_at: when the request was made (UTC+8), ``None`` when it was not made.
    """

    mobiles: tuple[str, ...] = field(repr=False)
    task_id: str | None
    error: IhuyiError | None = None
    segments: int
    sent_at: _dt.datetime | None = None
    message: str = ""
    replayed: bool = False

    @property
    def accepted(self) -> bool:
        return self.task_id is not None

    @property
    def unknown(self) -> bool:
        from ._exceptions import DeliveryUnknownError

        return isinstance(self.error, DeliveryUnknownError)

    def __repr__(self) -> str:
        shown = ", ".join(mask_mobile(m) for m in self.mobiles[:3])
        more = f", … {len(self.mobiles)} numbers" if len(self.mobiles) > 3 else ""
        outcome = f"task_id={self.task_id!r}" if self.task_id else f"error={self.error!r}"
        return f"MarketingChunk({outcome}, mobiles=[{shown}{more}])"


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketingResult:
    """The outcome of :meth:`MarketingSmsClient.send`: one :class:`MarketingChunk` per request.

    :ivar scheduled_at: the scheduled time sent as ``stime`` (UTC+8), or ``None``.
    """

    chunks: tuple[MarketingChunk, ...]
    content: str = field(repr=False)
    scheduled_at: _dt.datetime | None = None

    @property
    def accepted(self) -> bool:
        """Every chunk was accepted."""
        return all(chunk.accepted for chunk in self.chunks)

    @property
    def task_ids(self) -> tuple[str, ...]:
        return tuple(chunk.task_id for chunk in self.chunks if chunk.task_id is not None)

    def chunk_of(self, mobile: str) -> MarketingChunk | None:
        """The chunk that carried ``mobile`` (any form :meth:`MarketingSmsClient.send` accepts)."""
        number = normalize_mobile(mobile)
        return next((c for c in self.chunks if number in c.mobiles), None)

    def match(self, receipt: DeliveryReceipt) -> MarketingChunk | None:
        """The chunk a marketing :class:`~ihuyi_async.pushes.DeliveryReceipt` is about: its
        ``task_id`` is the chunk's, and its number one of the chunk's (``None``: not this send)."""
        if receipt.task_id is None:
            return None
        for chunk in self.chunks:
            if chunk.task_id == receipt.task_id:
                number = receipt.mobile.strip()
                try:
                    number = normalize_mobile(number)
                except (InvalidRequestError, TypeError):
                    return None
                return chunk if number in chunk.mobiles else None
        return None


class MarketingSmsClient(_ProductClient):
    """Client of the marketing (bulk) SMS product: ``api.yx.ihuyi.com/webservice/sms.php``.

    Constructed like :class:`~ihuyi_async.IhuyiClient` (the same keyword options);
    account and key default to ``$IHUYI_MARKETING_ACCOUNT`` and
    ``$IHUYI_MARKETING_API_KEY``, the base URL to ``$IHUYI_MARKETING_BASE_URL``. The
    limiter defaults to ``provider_rules(per_day=None, verification_per_day=None)``
    (:func:`~ihuyi_async.limiter.provider_rules`).

    :param chunk_size: most numbers per request (default 500, *a guess*: the provider
        publishes no maximum; lower it if it refuses long lists).
    :param opt_out: append the opt-out text ``退订回T`` to content that does not
        contain it (default ``True``).

    .. versionadded:: 0.2.0
    """

    _product = PRODUCTS["marketing"]
    _default_rules = MARKETING_RULES

    def __init__(
        self,
        account: str | None = None,
        api_key: str | None = None,
        *,
        chunk_size: int = 500,
        opt_out: bool = True,
        **options: Unpack[ProductOptions],
    ) -> None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an int >= 1, not {chunk_size!r}")
        self._chunk_size = chunk_size
        self._opt_out = bool(opt_out)
        super().__init__(account, api_key, **options)

    async def send(
        self,
        mobiles: Iterable[str] | str,
        content: str,
        *,
        at: _dt.datetime | None = None,
        idempotency_key: str | None = None,
    ) -> MarketingResult:
        """Send ``content`` to every number of ``mobiles``, ``chunk_size`` numbers per request.

        Chunks go one after another; one chunk's failure does not stop the others, and
        each chunk's outcome (accepted with its ``task_id``, refused, not sent, or
        unknown for all its numbers) is in the result. Numbers given twice are sent once.

        :param mobiles: mainland numbers (a list, or one string with commas).
        :param at: a scheduled send: an aware datetime in the future, sent as ``stime``
            in China time (``YYYY-MM-DD HH:MM:SS``).
        :param idempotency_key: at most one send per chunk and key: chunk ``i`` is sent
            under the key ``f"{idempotency_key}#{i}"`` (see
            :meth:`~ihuyi_async.IhuyiClient.send`). A later call with the same key, numbers,
            content, schedule and ``chunk_size`` sends nothing again: each chunk comes back
            with its first outcome (``replayed``), or raises its unknown outcome again as
            its ``error``; a chunk the first call provably did not send is sent now. A
            chunk whose numbers, content or schedule differ from its key's first call gets
            :class:`~ihuyi_async.IdempotencyKeyReuseError` as its ``error``, nothing sent.
        :raises InvalidRequestError: no numbers (403), or an invalid one (406, naming
            its position); blank content (404). No request made.
        :raises ContentRejectedError: emoji or too long (after the opt-out text).
        :raises ValueError: ``at`` is naive or not in the future; an unusable
            ``idempotency_key``. No request made.

        A chunk the local limiter refuses (:class:`~ihuyi_async.LocalRateLimitError`: one
        of its numbers is over a rule) or whose limiter store is unreachable is not sent;
        its error is in its :class:`MarketingChunk` and the next chunks still go, so the
        chunks already accepted are never lost to an exception. Cancelling the call
        cancels the chunk in flight and sends no more; chunks accepted before it are
        then known only from the provider's receipts.
        """
        key = None if idempotency_key is None else check_key(idempotency_key)
        self._enter()
        try:
            numbers = _marketing_numbers(mobiles)
            ready = self._prepare(content, at)
        except Exception as exc:  # refused locally: still a span and a count (telemetry on)
            self._invalid("Submit", exc)
            raise
        chunks: list[MarketingChunk] = []
        size = self._chunk_size
        for index, start in enumerate(range(0, len(numbers), size)):
            part = tuple(numbers[start : start + size])
            chunk_key = None if key is None else f"{key}#{index}"
            chunks.append(await self._send_chunk(part, ready, chunk_key))
        return MarketingResult(chunks=tuple(chunks), content=ready.content, scheduled_at=ready.at)

    def send_many(
        self,
        mobiles: Iterable[str] | AsyncIterable[str] | str,
        content: str,
        *,
        at: _dt.datetime | None = None,
        concurrency: int = 4,
        on_progress: ProgressHook | None = None,
        journal: str | os.PathLike[str] | Journal | None = None,
        stop_on: Collection[int] | None = DEFAULT,
        resend_unknown: bool = False,
        idempotency_key: str | None = None,
    ) -> BatchRun:
        """Send ``content`` to a stream of numbers, ``chunk_size`` per request, one
        :class:`~ihuyi_async.Outcome` per chunk as each completes.

        The batch machinery of :meth:`~ihuyi_async.IhuyiClient.send_many`, with a chunk of
        numbers as its message: the input (any iterable or async iterable of numbers, read
        lazily) is cut into chunks as it is read, at most ``concurrency`` chunks are in
        flight, so memory holds a few chunks whatever the input's length. Each outcome's
        :attr:`~ihuyi_async.Outcome.mobiles` are its chunk's numbers and its ``smsid`` the
        chunk's ``task_id`` (what its receipts carry); a chunk whose outcome is
        ``unknown`` is unknown **for every number in it**. A number that is not a mainland
        mobile is its own outcome, ``invalid`` (406, naming its position in the input),
        and the other numbers still go. A number repeated within one chunk is sent once;
        across chunks it is not looked for (that would need memory growing with the input).

        ``journal``, ``on_progress``, ``stop_on`` and ``resend_unknown`` work as for
        :meth:`~ihuyi_async.IhuyiClient.send_many`, per chunk: a rerun with the same input
        and journal skips the chunks already accepted or of unknown outcome.

        :param idempotency_key: each chunk is sent under ``f"{idempotency_key}#{i}"`` (``i``
            counts chunks from 0), as by :meth:`send`: two runs of one campaign, on any
            hosts sharing the client's key store, send each chunk once.
        :raises InvalidRequestError: blank content (404).
        :raises ContentRejectedError: emoji or too long.
        :raises ValueError: ``at`` naive or not in the future, ``concurrency`` below 1, an
            unusable key. All before anything is read or sent.
        """
        from ._codes import ACCOUNT_LEVEL_CODES

        key = None if idempotency_key is None else check_key(idempotency_key)
        ready = self._prepare(content, at)
        chunker = _Chunker(self._chunk_size, ready.content, key)
        chunks: Iterable[Message] | AsyncIterable[Message]
        if isinstance(mobiles, AsyncIterable):
            chunks = chunker.from_async(mobiles)
        else:
            chunks = chunker.from_sync(mobiles.split(",") if isinstance(mobiles, str) else mobiles)
        return send_many(
            functools.partial(self._send_batch_chunk, ready),
            chunks,
            clock=self._limiter.clock if self._limiter is not None else None,
            start=self._enter,
            concurrency=concurrency,
            on_progress=on_progress,
            journal=journal if journal is None or isinstance(journal, Journal) else str(journal),
            stop_on=ACCOUNT_LEVEL_CODES if stop_on is DEFAULT else stop_on,
            resend_unknown=resend_unknown,
            idempotency_keys=key is not None,
        )

    def _prepare(self, content: str, at: _dt.datetime | None) -> _Prepared:
        """The content as sent (opt-out text added), validated; the schedule; segments."""
        if isinstance(content, str) and not content.strip():  # blank before the opt-out text too
            raise error_for(404, local=True)
        if self._opt_out and isinstance(content, str) and OPT_OUT not in content:
            content = content + OPT_OUT
        validate_content(content, max_length=self._product.max_content)
        extra, scheduled = "", None
        if at is not None:
            scheduled = self._check_schedule(at)
            extra = "&stime=" + form_quote(scheduled.strftime("%Y-%m-%d %H:%M:%S"))
        segments = count_segments(content, self._signature)
        return _Prepared(content=content, segments=segments, extra=extra, at=scheduled)

    def _check_schedule(self, at: _dt.datetime) -> _dt.datetime:
        if not isinstance(at, _dt.datetime):
            raise TypeError(f"at must be a datetime, not {type(at).__name__}")
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("at must be an aware datetime (with a time zone), not a naive one")
        now = _dt.datetime.fromtimestamp(self._clock.time(), CST)
        if at <= now:
            raise ValueError(f"at is in the past ({at.isoformat()}; now {now.isoformat()})")
        return at.astimezone(CST)

    def _outgoing(self, part: tuple[str, ...], ready: _Prepared) -> _Outgoing:
        text = ready.content
        return _Outgoing(",".join(part), text, text, ready.segments, None, numbers=part, extra=ready.extra)

    async def _send_chunk(
        self, part: tuple[str, ...], ready: _Prepared, key: str | None
    ) -> MarketingChunk:
        from ._exceptions import DeliveryUnknownError

        try:
            result = await self._dispatch(self._outgoing(part, ready), None, key)
        except IhuyiError as exc:  # refused, not sent or unknown: that chunk's outcome
            sent_at = exc.sent_at if isinstance(exc, DeliveryUnknownError) else None
            return MarketingChunk(
                mobiles=part, task_id=None, error=exc, segments=ready.segments, sent_at=sent_at
            )
        return MarketingChunk(
            mobiles=part,
            task_id=result.smsid,
            segments=ready.segments,
            sent_at=result.sent_at,
            message=result.message,
            replayed=result.replayed,
        )

    async def _send_batch_chunk(
        self, ready: _Prepared, message: Message, on_wire: Callable[[], None], key: str | None
    ) -> SendResult:
        """One batch message of :meth:`send_many`: a chunk, or a number that is not one."""
        part = tuple(message.mobile.split(","))
        if len(part) == 1:  # the chunker lets bad numbers through alone, to be refused here
            position = (message.metadata or {}).get("position")
            try:
                _marketing_numbers(part, position if isinstance(position, int) else 1)
            except Exception as exc:  # refused locally: still a span and a count
                self._invalid("Submit", exc)
                raise
        return await self._dispatch(self._outgoing(part, ready), on_wire, key)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A marketing send's content as sent, its segments, its ``stime`` field and time."""

    content: str
    segments: int
    extra: str
    at: _dt.datetime | None


class _Chunker:
    """:meth:`MarketingSmsClient.send_many`'s input, cut into chunk messages as it is read.

    Holds one chunk at a time. A number that does not normalise goes out alone, as its
    own message (the send refuses it, naming its position), so one bad number never
    holds back the chunk it would have been in.
    """

    __slots__ = ("_content", "_key", "_part", "_position", "_serial", "_size")

    def __init__(self, size: int, content: str, key: str | None) -> None:
        self._size, self._content, self._key = size, content, key
        self._part: dict[str, None] = {}  # the chunk being filled: its numbers, in order, once
        self._position = 0  # numbers read so far
        self._serial = 0  # chunks made so far

    def from_sync(self, mobiles: Iterable[str]) -> Iterator[Message]:
        for raw in mobiles:
            message = self._add(raw)
            if message is not None:
                yield message
        if self._part:
            yield self._chunk()

    async def from_async(self, mobiles: AsyncIterable[str]) -> AsyncIterator[Message]:
        async for raw in mobiles:
            message = self._add(raw)
            if message is not None:
                yield message
        if self._part:
            yield self._chunk()

    def _add(self, raw: object) -> Message | None:
        """Take one number: the chunk it completes, a bad number alone, or ``None``.

        An int is read as its digits (as a batch message's ``mobile`` is); anything else
        that is not a str is a bad number."""
        self._position += 1
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        try:
            if not isinstance(raw, str):
                raise TypeError(type(raw).__name__)
            number = normalize_mobile(raw)
        except (InvalidRequestError, TypeError):
            text = str(raw).strip().replace(",", " ") or " "
            key = None if self._key is None else f"{self._key}!{self._position}"
            return Message(text, self._content, id=key, metadata={"position": self._position})
        self._part[number] = None
        return self._chunk() if len(self._part) >= self._size else None

    def _chunk(self) -> Message:
        numbers, self._part = ",".join(self._part), {}
        key = None if self._key is None else f"{self._key}#{self._serial}"
        self._serial += 1
        return Message(numbers, self._content, id=key)


def _marketing_numbers(mobiles: Iterable[str] | str, first: int = 1) -> list[str]:
    """The normalised numbers, in order, each once; the first bad one named by position
    (``first``: the position of the first of ``mobiles`` in the caller's input)."""
    items: Sequence[str] | Iterable[str] = (
        mobiles.split(",") if isinstance(mobiles, str) else mobiles
    )
    numbers: list[str] = []
    seen: set[str] = set()
    for index, raw in enumerate(items, start=first):
        try:
            number = normalize_mobile(raw)
        except InvalidRequestError as exc:
            shown = mask_mobile(str(raw).strip())
            raise error_for(
                exc.code,
                f"{exc.message} (number {index} of the list: {shown!r})",
                local=True,
                mobile=str(raw).strip(),
            ) from None
        if number not in seen:
            seen.add(number)
            numbers.append(number)
    if not numbers:
        raise error_for(403, "手机号码为空 (no numbers given)", local=True)
    return numbers


# --------------------------------------------------------------------------- international


def _with_country_code(text: str) -> str:
    """``text`` as ``+<cc>…`` when it says its country code, else a local 406.

    Accepted: ``+85251234567``, ``0085251234567`` or ``"852 51234567"`` (the country code,
    a space, the number). A bare string of digits is refused rather than guessed: read
    as ``+<digits>``, the mainland mobile ``15012345678`` would become the US number
    ``+1 5012345678`` and be sent there.
    """
    if text.startswith("+"):
        return text
    if text.startswith("00"):
        return "+" + text[2:]
    head, sep, _rest = text.partition(" ")
    if sep and head.isascii() and head.isdigit() and 1 <= len(head) <= 3:
        return "+" + text
    try:
        normalize_mobile(text)
    except InvalidRequestError:
        pass
    else:
        raise error_for(
            406,
            "a mainland China number: send it with IhuyiClient, not InternationalSmsClient",
            local=True,
            mobile=text,
        )
    raise error_for(
        406,
        f"no country code in {mask_mobile(text)!r}: give it as +85251234567, "
        "0085251234567 or '852 51234567'",
        local=True,
        mobile=text,
    )


def _international_number(mobile: str) -> str:
    """``+85251234567``, ``0085251234567`` or ``852 51234567`` -> ``"852 51234567"``,
    validated by ``phonenumbers``.

    :raises InvalidRequestError: 403 blank; 406 no country code, not a valid number, or a
        mainland one.
    """
    if not isinstance(mobile, str):
        raise TypeError(f"mobile must be a str, not {type(mobile).__name__}")
    text = mobile.strip()
    if not text:
        raise error_for(403, local=True)
    try:
        import phonenumbers
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise ImportError(
            "InternationalSmsClient needs the 'international' extra: "
            "pip install 'ihuyi-async[international]'"
        ) from exc
    candidate = _with_country_code(text)
    try:
        parsed = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException:
        raise error_for(
            406, f"not an international number: {mask_mobile(text)!r}", local=True, mobile=text
        ) from None
    if parsed.country_code == 86:
        raise error_for(
            406,
            "a mainland China number: send it with IhuyiClient, not InternationalSmsClient",
            local=True,
            mobile=text,
        )
    if not phonenumbers.is_valid_number(parsed):
        raise error_for(
            406,
            f"not a valid number of +{parsed.country_code}: {mask_mobile(text)!r}",
            local=True,
            mobile=text,
        )
    return f"{parsed.country_code} {phonenumbers.national_significant_number(parsed)}"


class InternationalSmsClient(_ProductClient):
    """Client of the international SMS product: ``api.isms.ihuyi.com/webservice/isms.php``.

    Numbers are given as E.164 (``+85251234567``), as ``0085251234567`` or as
    ``852 51234567`` (bare digits are refused: ``15012345678`` could be a mainland or a US number), validated and
    normalised with ``phonenumbers`` (extra ``international``) and sent as
    ``"<country code> <number>"``; the answer's id is ``ismsid`` (returned as
    :attr:`SendResult.smsid`). Environment: ``$IHUYI_INTERNATIONAL_ACCOUNT``,
    ``$IHUYI_INTERNATIONAL_API_KEY``, ``$IHUYI_INTERNATIONAL_BASE_URL``. Limiter:
    ``provider_rules(verification_per_day=None)`` (:func:`~ihuyi_async.limiter.provider_rules`).

    .. versionadded:: 0.2.0
    """

    _product = PRODUCTS["international"]
    _default_rules = INTERNATIONAL_RULES

    async def send(
        self, mobile: str, content: str, *, idempotency_key: str | None = None
    ) -> SendResult:
        """Send one message to one international number.

        :raises InvalidRequestError: the number has no country code (bare digits), does
            not parse, is not valid, or is a mainland number (406, use
            :class:`~ihuyi_async.IhuyiClient`); blank content.
        :raises ContentRejectedError: emoji or too long.
        :raises ApiError: refused by the provider.
        :raises TransportError: not sent.
        :raises DeliveryUnknownError: it may have been sent.
        """
        self._enter()
        try:
            number = _international_number(mobile)
            validate_content(content, max_length=self._product.max_content, mobile=number)
        except Exception as exc:  # refused locally: still a span and a count (telemetry on)
            self._invalid("Submit", exc)
            raise
        out = _Outgoing(number, content, content, count_segments(content, self._signature), None)
        return await self._send_one(out, idempotency_key)


# --------------------------------------------------------------------------- voice


class InvalidVoiceCodeError(InvalidRequestError, ValueError):
    """A voice code that is not ``code_length`` ASCII digits, refused locally (code 404,
    the content being unusable; ``local`` set). An :class:`~ihuyi_async.InvalidRequestError`
    like every other refusal of bad input, and still a :class:`ValueError`."""

    def __init__(self, message: str, mobile: str = "") -> None:
        super().__init__(404, message, category="request", local=True, mobile=mobile)


class VoiceCodeClient(_ProductClient):
    """Client of the voice verification code product: ``api.voice.ihuyi.com/webservice/voice.php``.

    The content is the code itself, read out by a call: ASCII digits, 4 to 6 by default
    (``code_length``). Every send counts as ``kind="verification"`` for the limiter
    (``provider_rules()``, :func:`~ihuyi_async.limiter.provider_rules`). The answer's id field is ``smsid`` (*a guess*: no public
    source names another; ``id_field=`` changes it). Environment: ``$IHUYI_VOICE_CODE_ACCOUNT``,
    ``$IHUYI_VOICE_CODE_API_KEY``, ``$IHUYI_VOICE_CODE_BASE_URL``.

    :param code_length: ``(shortest, longest)`` code accepted (default ``(4, 6)``).

    .. versionadded:: 0.2.0
    """

    _product = PRODUCTS["voice-code"]
    _default_rules = VOICE_CODE_RULES

    def __init__(
        self,
        account: str | None = None,
        api_key: str | None = None,
        *,
        code_length: tuple[int, int] = (4, 6),
        **options: Unpack[ProductOptions],
    ) -> None:
        low, high = code_length
        if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high <= 20):
            raise ValueError(
                f"code_length must be (shortest, longest) with 1 <= shortest <= longest, not {code_length!r}"
            )
        self._code_length = (low, high)
        super().__init__(account, api_key, **options)

    @property
    def code_length(self) -> tuple[int, int]:
        """``(shortest, longest)`` code this client sends (the ``code_length`` given)."""
        return self._code_length

    async def send(
        self, mobile: str, code: str | int, *, idempotency_key: str | None = None
    ) -> SendResult:
        """Call ``mobile`` and read ``code`` out.

        :raises InvalidRequestError: ``code`` is not 4-6 ASCII digits (``code_length``;
            code 404, ``local``, also a :class:`ValueError`), or ``mobile`` not a mainland
            mobile number (406). No request.
        """
        self._enter()
        text = str(code) if isinstance(code, int) and not isinstance(code, bool) else code
        try:
            if not isinstance(text, str):
                raise TypeError(f"code must be a str of digits, not {type(code).__name__}")
            number = normalize_mobile(mobile)
            low, high = self._code_length
            digits = text.isascii() and text.isdigit()
            if not (digits and low <= len(text) <= high):
                what = f"{len(text)} characters" + ("" if digits else ", not all ASCII digits")
                raise InvalidVoiceCodeError(
                    f"a voice code must be {low} to {high} ASCII digits, not {what}", mobile=number
                )
        except Exception as exc:  # refused locally: still a span and a count (telemetry on)
            self._invalid("Submit", exc)
            raise
        out = _Outgoing(number, text, text, 1, "verification")
        return await self._send_one(out, idempotency_key)


def _landline_or_mobile(mobile: str) -> str:
    """A mainland mobile (normalised) or a landline ``0AA(A)-NNNNNNN(N)`` (digits kept)."""
    if not isinstance(mobile, str):
        raise TypeError(f"mobile must be a str, not {type(mobile).__name__}")
    text = mobile.strip()
    if not text:
        raise error_for(403, local=True)
    try:
        return normalize_mobile(text)
    except InvalidRequestError:
        pass
    digits = text.replace("-", "").replace(" ", "")
    if not (
        digits.isascii()
        and digits.isdigit()
        and digits[:1] == "0"
        and 10 <= len(digits) <= 12
        and digits[1:2] != "0"
    ):
        raise error_for(
            406,
            f"neither a mainland mobile nor a landline (0AA-NNNNNNNN): {mask_mobile(text)!r}",
            local=True,
            mobile=text,
        )
    return digits


class VoiceNoticeClient(_ProductClient):
    """Client of the voice notification product.

    Two paths (``flavour``): ``"legacy"`` (``api.vm.ihuyi.com/webservice/voice.php``,
    default), where ``send`` takes the full content of an approved template; and
    ``"json"`` (``api.ihuyi.com/vm/Submit.json``), where ``send_template`` takes a
    ``templateid`` and its variables and the answer's id is ``voiceid``. Mainland
    mobiles and landlines (``010-12345678``) are accepted. Environment:
    ``$IHUYI_VOICE_NOTICE_ACCOUNT``, ``$IHUYI_VOICE_NOTICE_API_KEY``,
    ``$IHUYI_VOICE_NOTICE_BASE_URL`` (legacy path) or ``$IHUYI_VOICE_NOTICE_JSON_BASE_URL``
    (``json``: its default host differs, so a base URL meant for one path never sends the
    other's requests). Limiter: ``provider_rules(verification_per_day=None)``
    (:func:`~ihuyi_async.limiter.provider_rules`).

    .. versionadded:: 0.2.0
    """

    _product = PRODUCTS["voice-notice"]
    _default_rules = VOICE_NOTICE_RULES

    def __init__(
        self,
        account: str | None = None,
        api_key: str | None = None,
        *,
        flavour: Literal["legacy", "json"] = "legacy",
        **options: Unpack[ProductOptions],
    ) -> None:
        if flavour not in ("legacy", "json"):
            raise ValueError(f"flavour must be 'legacy' or 'json', not {flavour!r}")
        self._product = PRODUCTS["voice-notice-json" if flavour == "json" else "voice-notice"]
        super().__init__(account, api_key, **options)

    async def send(
        self, mobile: str, content: str, *, idempotency_key: str | None = None
    ) -> SendResult:
        """Call ``mobile`` and read ``content`` (an approved template's full text; legacy path)."""
        self._enter()
        try:
            number = _landline_or_mobile(mobile)
            validate_content(content, max_length=self._product.max_content, mobile=number)
        except Exception as exc:  # refused locally: still a span and a count (telemetry on)
            self._invalid("Submit", exc)
            raise
        return await self._send_one(_Outgoing(number, content, content, 1, None), idempotency_key)

    async def send_template(
        self,
        mobile: str,
        *,
        template_id: int,
        variables: Sequence[str | int],
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Call ``mobile`` with an approved template and its variables (``json`` flavour).

        :raises UnsupportedOperationError: on the legacy path.
        """
        from ._exceptions import UnsupportedOperationError

        self._enter()
        try:
            if self._product.name != "voice-notice-json":
                raise UnsupportedOperationError(
                    "template sends go through vm/Submit.json: use VoiceNoticeClient(flavour='json')"
                )
            if isinstance(template_id, bool) or not isinstance(template_id, int) or template_id <= 0:
                raise ValueError(f"template_id must be a positive int, not {template_id!r}")
            number = _landline_or_mobile(mobile)
            wire = join_variables(variables)
            validate_content(wire, max_length=self._product.max_content, mobile=number)
        except Exception as exc:  # refused locally: still a span and a count (telemetry on)
            self._invalid("Submit", exc)
            raise
        out = _Outgoing(number, wire, f"#{template_id}:{wire}", 1, None, template_id)
        return await self._send_one(out, idempotency_key)
