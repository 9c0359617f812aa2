"""The emulator: an in-memory model of the ihuyi SMS service and the ways in to it.

Owns :class:`Emulator` (accounts, balances, signatures, validations, per-number
limits, templates, the message log, pushes), its records (:class:`Message`,
:class:`RecordedRequest`, :class:`Template`), :class:`Limits`, the ASGI app and
:class:`EmulatorTransport` (an ``httpx.AsyncBaseTransport`` calling the model
directly). Every way in (transport, ASGI app, loopback server, respx side
effect) goes through the same model, guarded by one :class:`threading.Lock`
and never awaiting inside it, so concurrent calls from many tasks or threads
keep the balance and the log exact.

Where the provider's documents are silent the emulator guesses, and says so here:

* **Order of checks** (first failure answers): 0 (undecodable bytes, see
  :mod:`~ihuyi_async.testing._wire`), 401, 402, 4053 (unknown account),
  signature (405 / 40501 / 40502), 403, 406, 404, 4074, 4073, templates
  (4071 / 4072 / 40722), 407, 4030, 4051, then the per-number limits 4080, 408,
  4085, 4082.
* **Passwords**: the plain APIKEY and its MD5 (hex in either case) are accepted by every
  method; otherwise a ``time`` field makes it a dynamic password (40501 when
  ``|time - now| > time_window``, 40502 when it does not match or ``time`` is not
  a number); without ``time`` a wrong password is 405.
* **Limits** count accepted messages only, per account and number; days are
  calendar days in China (UTC+8). With the default numbers 408 (20 identical
  per day) is unreachable behind 4082 (5 per day): raise ``per_day`` to see it.
  4085 is checked before 4082 so a sixth verification message answers 4085.
  408 puts the number on :attr:`Emulator.blacklist` (4030 afterwards).
* **Verification messages** (for 4085 and :meth:`Emulator.last_code_for`):
  content holding a standalone run of 4 to 8 digits *and* one of the words
  验证码, 校验码, 动态码, 确认码, 激活码 or ``code`` (any case). The trial
  template qualifies.
* **Strict templates** (``strict_templates=True``): full-content sends must
  match an approved template of the account (the trial template included),
  each ``【变量】`` standing for 1 to 8 characters, optionally with one
  signature ``【…】`` (2 to 30 characters) before or after; otherwise 4072.
  Template-mode sends (``templateid``) are always checked: unknown id 4071,
  not approved 4072, wrong variable count 4072, a variable over 8 characters
  40722; the trial template's variable must be 4 to 8 digits (4072).
* **Billing**: :func:`~ihuyi_async.testing._rules.segments` of the content
  as delivered (in template mode, the rendered template).
* **smsid**: 20 digits, the 10-digit Unix time of the emulator's clock followed
  by a 10-digit serial (the real ones look like that).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import itertools
import json
import re
import threading
import time as _time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal
from xml.sax.saxutils import escape

import anyio
import httpx
import sniffio

from .._clock import Clock, FakeClock
from .._codes import lookup
from ..pushes import receipt_form, reply_form, template_review_form
from ..pushes._asgi import Receive, Scope, Send, serve_lifespan
from ._faults import Fault, FaultPlan
from ._pushes import PushRecord, post_with_retries
from ._rules import (
    PLACEHOLDER,
    TRIAL_TEMPLATE_TEXT,
    content_code,
    extract_code,
    fill_template,
    has_emoji,
    is_verification,
    md5_hex,
    mobile_code,
    same_hex,
    segments,
)
from ._wire import read_fields

__all__ = [
    "CHINA_TZ",
    "DEFAULT_ACCOUNTS",
    "Emulator",
    "EmulatorTransport",
    "Limits",
    "Message",
    "RecordedRequest",
    "Template",
    "is_verification",
]

#: China Standard Time: the provider's calendar and push times.
CHINA_TZ = _dt.timezone(_dt.timedelta(hours=8), "UTC+08:00")
#: The account an :class:`Emulator` gets when none is given.
DEFAULT_ACCOUNTS: Mapping[str, str] = {"test-apiid": "test-apikey"}
#: Id of the provider's trial template.
TRIAL_TEMPLATE_ID = 1

_NAMESPACE = "http://106.ihuyi.com/"
_DAY = 86400.0
_CHINA_OFFSET = 8 * 3600.0
_SIGNATURE = r"(?:【[^】]{2,30}】)?"
_METHODS = {"submit": "Submit", "getnum": "GetNum", "addtemplate": "AddTemplate"}
_JSON_PATHS = {"/sms/submit.json": "Submit", "/sms/getnum.json": "GetNum"}
_MAX_BODY = 1 << 20
_FAILED = {"Submit": {"smsid": "0"}, "GetNum": {"num": "0"}, "AddTemplate": {"templateid": "0"}}

Flavour = Literal["legacy", "json"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The per-number limits the emulator enforces (the provider's defaults).

    Each counts accepted messages per account and number; ``None`` turns a rule off.

    :ivar per_second: messages in any 1-second window (4080).
    :ivar per_day: messages per China calendar day (4082).
    :ivar verification_per_day: verification messages per China calendar day (4085).
    :ivar identical_per_day: identical messages per China calendar day; the next one
        answers 408 and blacklists the number.
    """

    per_second: int | None = 1
    per_day: int | None = 5
    verification_per_day: int | None = 5
    identical_per_day: int | None = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A message the emulator accepted.

    :ivar content: the text as delivered (template mode: the rendered template).
    :ivar time: when it was accepted, an aware datetime in China time.
    :ivar template_id: the ``templateid`` of a template-mode send, else ``None``.
    :ivar segments: billed segments.
    :ivar verification: whether the emulator counts it as a verification message.
    """

    account: str
    mobile: str
    content: str
    smsid: str
    time: _dt.datetime
    template_id: int | None
    segments: int
    verification: bool
    flavour: Flavour


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedRequest:
    """One HTTP call the emulator received.

    :ivar http_method: ``"GET"`` or ``"POST"`` (or whatever came).
    :ivar path: the URL path.
    :ivar method: the provider method (``"Submit"``, ``"GetNum"``, ``"AddTemplate"``) or
        ``None`` when the call was not one.
    :ivar flavour: ``"legacy"`` (``webservice/sms.php``) or ``"json"`` (``sms/*.json``).
    :ivar fields: query and form fields (form wins), as sent.
    :ivar code: the provider code answered (``None`` when the model did not answer).
    :ivar status: the HTTP status answered (``None`` for a dropped or hung call).
    :ivar fault: the kind of fault acted out, if any.
    :ivar charset: the codec the fields were read with (``"utf-8"``, ``"gb18030"``, ...).
    """

    http_method: str
    path: str
    method: str | None
    flavour: Flavour | None
    fields: Mapping[str, str]
    time: _dt.datetime
    code: int | None
    status: int | None
    fault: str | None
    charset: str = "utf-8"


@dataclass(slots=True, kw_only=True)
class Template:
    """A message template: ``status`` is ``"pending"``, ``"approved"`` or ``"rejected"``."""

    template_id: int
    account: str | None
    content: str
    status: Literal["pending", "approved", "rejected"]
    reason: str = ""
    _pattern: re.Pattern[str] | None = field(default=None, repr=False)

    def matches(self, content: str) -> bool:
        if self._pattern is None:
            parts = [re.escape(p) for p in self.content.split(PLACEHOLDER)]
            self._pattern = re.compile(_SIGNATURE + "(?:.{1,8})".join(parts) + _SIGNATURE, re.S)
        return self._pattern.fullmatch(content) is not None


@dataclass(slots=True)
class _Account:
    api_key: str
    digest: str
    balance: int


@dataclass(slots=True)
class _NumberState:
    day: int = -1
    count: int = 0
    verifications: int = 0
    identical: dict[str, int] = field(default_factory=dict)
    recent: deque[float] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    content_type: str
    body: bytes


@dataclass(slots=True)
class _Call:
    http_method: str
    path: str
    method: str | None
    flavour: Flavour | None
    fields: dict[str, str]
    fault: Fault | None
    charset: str = "utf-8"
    undecodable: bool = False


class _Outcome:
    """Sentinels for calls that get no HTTP answer."""

    DROP = "drop"
    HANG = "hang"


class _Waker:
    """Wakes a push dispatcher in its event loop, from any thread."""

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._soon: Callable[[Callable[[], object]], object]
        if sniffio.current_async_library() == "trio":
            import trio

            self._soon = trio.lowlevel.current_trio_token().run_sync_soon
        else:
            self._soon = asyncio.get_running_loop().call_soon_threadsafe

    def wake(self) -> None:
        try:
            self._soon(self._event.set)
        except RuntimeError:  # pragma: no cover - the dispatcher's loop already closed
            pass

    async def wait(self) -> None:
        await self._event.wait()
        self._event = anyio.Event()


class Emulator:
    """An in-memory ihuyi SMS service that behaves like the provider.

    >>> emulator = Emulator(accounts={"APIID": "APIKEY"}, balance=1000)

    Point a client at :attr:`transport` (in-process) or :attr:`app` (ASGI; serve it
    on loopback with :class:`~ihuyi_async.testing.EmulatorServer`). Inspect
    :attr:`messages`, :attr:`requests` and :attr:`pushes`; move :attr:`clock`.

    :param accounts: APIID -> APIKEY.
    :param balance: messages left, for every account (an ``int``) or per account.
    :param clock: the emulator's time (signature window, limits, smsids, record
        times). Default: a :class:`~ihuyi_async.FakeClock` started at the real time
        with ``auto_advance=True``: it moves when a test moves it or when something
        sleeps on it (a client sharing it waits its limiter's turn instantly).
    :param time_window: seconds the dynamic password's ``time`` may differ from now (40501).
    :param strict_templates: full-content sends must match an approved template (4072).
    :param limits: the per-number limits; ``True`` for the provider's, ``False`` for none.
    :param blacklist: numbers answered 4030.
    :param sensitive_words: words answered 407.
    :param receipt_url: where delivery receipts are pushed (``None``: no pushes).
    :param reply_url: where replies are pushed (default: ``receipt_url``).
    :param template_url: where template reviews are pushed (default: ``receipt_url``).
    :param auto_receipts: queue a ``DELIVRD`` receipt for every accepted message.
    :param push_transport: httpx transport for pushes (e.g. ``httpx.ASGITransport(app)``).
    :param time_scale: multiplies the provider's push retry waits (60, 120, 180 s).
    :param push_retries: retries after a failed push (the provider's: 3).
    :param max_length_legacy: longest content on ``webservice/sms.php`` (4073).
    :param max_length_json: longest content on ``sms/Submit.json`` (4073).
    :param seed: seed of the probabilistic faults' random draws.
    """

    def __init__(
        self,
        accounts: Mapping[str, str] | None = None,
        balance: int | Mapping[str, int] = 1000,
        *,
        clock: Clock | None = None,
        time_window: float = 300.0,
        strict_templates: bool = False,
        limits: Limits | bool = True,
        blacklist: Iterable[str] = (),
        sensitive_words: Iterable[str] = (),
        receipt_url: str | None = None,
        reply_url: str | None = None,
        template_url: str | None = None,
        auto_receipts: bool = True,
        push_transport: httpx.AsyncBaseTransport | None = None,
        time_scale: float = 0.001,
        push_retries: int = 3,
        max_length_legacy: int = 300,
        max_length_json: int = 500,
        seed: int | None = 0,
    ) -> None:
        accounts = dict(DEFAULT_ACCOUNTS if accounts is None else accounts)
        if not accounts:
            raise ValueError("an emulator needs at least one account")
        self._accounts: dict[str, _Account] = {}
        for account, api_key in accounts.items():
            start = balance if isinstance(balance, int) else int(balance.get(account, 0))
            self._accounts[account] = _Account(api_key, md5_hex(api_key), start)
        self.clock: Clock = (
            clock if clock is not None else FakeClock(_time.time(), auto_advance=True)
        )
        self.time_window = float(time_window)
        self.strict_templates = strict_templates
        if limits is True:
            self.limits: Limits | None = Limits()
        elif limits is False:
            self.limits = None
        else:
            self.limits = limits
        self.blacklist: set[str] = set(blacklist)
        self.sensitive_words: tuple[str, ...] = tuple(sensitive_words)
        self.receipt_url = receipt_url
        self.reply_url = reply_url
        self.template_url = template_url
        self.auto_receipts = auto_receipts
        self.push_transport = push_transport
        self.time_scale = float(time_scale)
        self.push_retries = push_retries
        self.push_retry_step = 60.0
        self.max_length_legacy = max_length_legacy
        self.max_length_json = max_length_json
        self.faults = FaultPlan(seed=seed)

        self._lock = threading.Lock()
        self._messages: list[Message] = []
        self._requests: list[RecordedRequest] = []
        self._pushes: list[PushRecord] = []
        self._outbox: list[PushRecord] = []
        self._receipted: set[str] = set()
        self._numbers: dict[tuple[str, str], _NumberState] = {}
        self._templates: dict[int, Template] = {
            TRIAL_TEMPLATE_ID: Template(
                template_id=TRIAL_TEMPLATE_ID, account=None, content=TRIAL_TEMPLATE_TEXT, status="approved"
            )
        }
        self._template_ids = itertools.count(1001)
        self._serial = itertools.count(1)
        self._wakers: list[_Waker] = []
        self.transport = EmulatorTransport(self)

    # ------------------------------------------------------------------ inspection

    @property
    def accounts(self) -> list[str]:
        """The APIIDs this emulator knows."""
        return list(self._accounts)

    def api_key_of(self, account: str) -> str:
        """The APIKEY of ``account`` (to build a client for it)."""
        return self._accounts[account].api_key

    @property
    def messages(self) -> list[Message]:
        """Every message accepted, oldest first (a snapshot)."""
        with self._lock:
            return list(self._messages)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every HTTP call received, oldest first (a snapshot)."""
        with self._lock:
            return list(self._requests)

    @property
    def unexpected(self) -> list[RecordedRequest]:
        """Calls that were not a provider method (wrong path, method or HTTP verb)."""
        return [r for r in self.requests if r.method is None]

    @property
    def pushes(self) -> list[PushRecord]:
        """Every push made so far, oldest first (a snapshot)."""
        with self._lock:
            return list(self._pushes)

    @property
    def templates(self) -> dict[int, Template]:
        """Templates by id (a snapshot), the trial template (id 1) included."""
        with self._lock:
            return dict(self._templates)

    def messages_to(self, mobile: str) -> list[Message]:
        """The messages accepted for ``mobile`` (``+86`` prefixes allowed), oldest first."""
        number = self._normalize(mobile)
        return [m for m in self.messages if m.mobile == number]

    def last_code_for(self, mobile: str) -> str:
        """The verification code of the last verification message sent to ``mobile``.

        The code is the first run of 4 to 8 digits after the verification keyword.

        :raises LookupError: no verification message was accepted for that number.
        """
        for message in reversed(self.messages_to(mobile)):
            if message.verification:
                code = extract_code(message.content)
                if code is not None:
                    return code
        raise LookupError("no verification message was sent to that number")

    def balance_of(self, account: str | None = None) -> int:
        """Messages left on ``account`` (default: the first account)."""
        with self._lock:
            return self._account(account).balance

    def set_balance(self, account: str | None, balance: int) -> None:
        """Set the messages left on ``account`` (``None``: the first account)."""
        with self._lock:
            self._account(account).balance = int(balance)

    def _account(self, account: str | None) -> _Account:
        if account is None:
            return next(iter(self._accounts.values()))
        return self._accounts[account]

    def verify(self) -> None:
        """Fail when the test left loose ends: calls that were not provider calls, or
        faults scheduled for a number of calls that did not happen.

        :raises AssertionError: describing what is left.
        """
        problems = []
        unexpected = self.unexpected
        if unexpected:
            shown = ", ".join(f"{r.http_method} {r.path}" for r in unexpected[:5])
            problems.append(f"{len(unexpected)} unexpected call(s): {shown}")
        unused = self.faults.unused
        if unused:
            shown = ", ".join(f"{e.fault.kind} x{e.remaining}" for e in unused)
            problems.append(f"scheduled faults never used: {shown}")
        if problems:
            raise AssertionError("ihuyi emulator: " + "; ".join(problems))

    def reset(self) -> None:
        """Forget messages, requests, pushes and limit counters (balances and templates stay)."""
        with self._lock:
            self._messages.clear()
            self._requests.clear()
            self._pushes.clear()
            self._outbox.clear()
            self._receipted.clear()
            self._numbers.clear()
        self.faults.clear()

    # ------------------------------------------------------------------ faults

    def fail_next(
        self, fault: Fault, *, times: int = 1, method: str | None = None
    ) -> None:
        """Act ``fault`` out on the next ``times`` calls (of ``method`` only, if given).

        >>> from ihuyi_async.testing import faults
        >>> Emulator().fail_next(faults.http_error(503), method="Submit")
        """
        self.faults.add(fault, times=times, method=method)

    # ------------------------------------------------------------------ templates

    def add_template(self, content: str, *, account: str | None = None, approved: bool = True) -> int:
        """Register a template directly (approved by default) and return its id."""
        with self._lock:
            owner = account if account is not None else next(iter(self._accounts))
            template_id = next(self._template_ids)
            self._templates[template_id] = Template(
                template_id=template_id,
                account=owner,
                content=content,
                status="approved" if approved else "pending",
            )
        return template_id

    def approve_template(self, template_id: int) -> None:
        """Approve a template (queues a review push when a template URL is configured).

        :raises KeyError: no such template.
        """
        self._review(template_id, approved=True, reason="审核通过")

    def reject_template(self, template_id: int, reason: str = "模板内容不符合规范") -> None:
        """Reject a template with ``reason`` (queues a review push when configured).

        :raises KeyError: no such template.
        """
        self._review(template_id, approved=False, reason=reason)

    def _review(self, template_id: int, *, approved: bool, reason: str) -> None:
        with self._lock:
            template = self._templates[template_id]
            template.status = "approved" if approved else "rejected"
            template.reason = reason
            url = self.template_url or self.receipt_url
            if url is not None:
                form = template_review_form(
                    template_id=template_id, code=2 if approved else 0, msg=reason
                )
                self._outbox.append(PushRecord(kind="template", url=url, form=form))
        self._wake()

    # ------------------------------------------------------------------ pushes

    async def deliver(
        self, smsid: str | None = None, *, code: int = 2, msg: str = "DELIVRD"
    ) -> list[PushRecord]:
        """Push delivery receipts now: for ``smsid``, or for every message not yet receipted.

        :param code: 2 delivered, anything else failed.
        :param msg: the status text (``DELIVRD``, ``UNDELIV``, …).
        :raises RuntimeError: no ``receipt_url`` configured.
        :raises KeyError: ``smsid`` is not an accepted message.
        """
        url = self.receipt_url
        if url is None:
            raise RuntimeError("the emulator has no receipt_url to push to")
        now = self._now_dt()
        with self._lock:
            if smsid is not None:
                targets = [m for m in self._messages if m.smsid == smsid]
                if not targets:
                    raise KeyError(smsid)
            else:
                targets = [m for m in self._messages if m.smsid not in self._receipted]
            chosen = {m.smsid for m in targets}
            self._receipted.update(chosen)
            self._outbox = [
                p for p in self._outbox if not (p.kind == "receipt" and p.form["smsid"] in chosen)
            ]
        records = [
            PushRecord(
                kind="receipt",
                url=url,
                form=receipt_form(
                    smsid=m.smsid, mobile=m.mobile, code=code, msg=msg, report_time=now
                ),
            )
            for m in targets
        ]
        return await self._post_all(records)

    async def reply(self, mobile: str, content: str, *, smsid: str | None = None) -> PushRecord:
        """Push an upstream reply from ``mobile`` now.

        :param smsid: the serial it relates to (default: the last message to that number, or ``"0"``).
        :raises RuntimeError: no reply (or receipt) URL configured.
        """
        url = self.reply_url or self.receipt_url
        if url is None:
            raise RuntimeError("the emulator has no reply_url (or receipt_url) to push to")
        number = self._normalize(mobile)
        if smsid is None:
            sent = self.messages_to(number)
            smsid = sent[-1].smsid if sent else "0"
        record = PushRecord(
            kind="reply",
            url=url,
            form=reply_form(
                mobile=number, content=content, smsid=smsid, reply_time=self._now_dt()
            ),
        )
        return (await self._post_all([record]))[0]

    async def flush_pushes(self) -> list[PushRecord]:
        """Push everything queued (automatic receipts, template reviews) and wait for the outcome."""
        with self._lock:
            records, self._outbox = self._outbox, []
            self._receipted.update(p.form["smsid"] for p in records if p.kind == "receipt")
        return await self._post_all(records)

    @property
    def pending_pushes(self) -> int:
        """Pushes queued and not yet sent."""
        with self._lock:
            return len(self._outbox)

    @asynccontextmanager
    async def pushing(self) -> AsyncIterator[None]:
        """Run a background dispatcher that pushes queued items as they arrive.

        Leaving the block sends what is still queued, then stops the dispatcher.
        """
        waker = _Waker()
        async with anyio.create_task_group() as tg:

            async def dispatch() -> None:
                while True:  # bounded by cancellation when the block is left
                    await waker.wait()
                    await self.flush_pushes()

            tg.start_soon(dispatch)
            with self._lock:
                self._wakers.append(waker)
            waker.wake()
            try:
                yield
            finally:
                with self._lock:
                    self._wakers.remove(waker)
                tg.cancel_scope.cancel()
        await self.flush_pushes()

    def _wake(self) -> None:
        with self._lock:
            wakers = list(self._wakers)
        for waker in wakers:
            waker.wake()

    async def _post_all(self, records: list[PushRecord]) -> list[PushRecord]:
        if not records:
            return []
        async with httpx.AsyncClient(transport=self.push_transport, timeout=10.0) as client:
            async with anyio.create_task_group() as tg:
                for record in records:
                    tg.start_soon(self._post_one, client, record)
        return records

    async def _post_one(self, client: httpx.AsyncClient, record: PushRecord) -> None:
        try:
            await post_with_retries(
                client,
                record,
                retries=self.push_retries,
                step=self.push_retry_step,
                time_scale=self.time_scale,
            )
        finally:
            with self._lock:
                self._pushes.append(record)

    # ------------------------------------------------------------------ the model

    def _now_dt(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self.clock.time(), CHINA_TZ)

    @staticmethod
    def _normalize(mobile: str) -> str:
        code, number = mobile_code(str(mobile))
        return number if code == 0 else str(mobile).strip()

    def _prepare(
        self, http_method: str, path: str, query: bytes, body: bytes, content_type: str = ""
    ) -> _Call:
        """Parse one HTTP call and choose its fault (if any). No model state changes."""
        decoded = read_fields(query, body[:_MAX_BODY], content_type)
        fields = decoded.values
        lowered = path.lower()
        method: str | None = None
        flavour: Flavour | None = None
        if http_method.upper() in ("GET", "POST"):
            if lowered.endswith("/webservice/sms.php"):
                flavour = "legacy"
                method = _METHODS.get(fields.get("method", "").lower())
            else:
                for suffix, name in _JSON_PATHS.items():
                    if lowered.endswith(suffix):
                        flavour, method = "json", name
                        break
        fault = self.faults.pick(method) if method is not None else None
        return _Call(
            http_method.upper(), path, method, flavour, fields, fault, decoded.charset,
            decoded.undecodable,
        )

    async def _serve(self, call: _Call) -> _Answer | str:
        """Act out the call's fault around the model; an answer, or DROP / HANG."""
        fault = call.fault
        if fault is None or fault.kind == "latency":
            if fault is not None and fault.seconds > 0:
                await self.clock.sleep(fault.seconds)
            return self._answer(call, record=True)
        code = _code_of(self._answer(call, record=False)) if fault.processed else None
        if fault.kind == "http_error":
            result: _Answer | str = _Answer(fault.status, "text/html; charset=utf-8", fault.body)
        elif fault.kind == "garbage":
            result = _Answer(200, "text/html; charset=utf-8", fault.body)
        elif fault.kind == "disconnect":
            result = _Outcome.DROP
        else:
            result = _Outcome.HANG
        self._record(call, code=code, status=result.status if isinstance(result, _Answer) else None)
        return result

    def _answer(self, call: _Call, *, record: bool) -> _Answer:
        """Run the model on a call (under the lock) and shape the provider's answer."""
        if call.method is None:
            answer = _Answer(404, "text/plain; charset=utf-8", b"Not Found")
            if call.http_method not in ("GET", "POST"):
                answer = _Answer(405, "text/plain; charset=utf-8", b"Method Not Allowed")
            if record:
                self._record(call, code=None, status=answer.status)
            return answer
        as_json = call.flavour == "json" or call.fields.get("format", "").lower() == "json"
        with self._lock:
            if call.undecodable:
                code, extra = 0, _FAILED[call.method]
            elif call.method == "Submit":
                code, extra = self._submit(call)
            elif call.method == "GetNum":
                code, extra = self._getnum(call)
            else:
                code, extra = self._add_template(call.fields)
        answer = _render(call.method, code, self._text(code, call), extra, as_json=as_json)
        if record:
            self._record(call, code=code, status=answer.status)
        return answer

    def _record(self, call: _Call, *, code: int | None, status: int | None) -> None:
        entry = RecordedRequest(
            http_method=call.http_method,
            path=call.path,
            method=call.method,
            flavour=call.flavour,
            fields=call.fields,
            time=self._now_dt(),
            code=code,
            status=status,
            fault=call.fault.kind if call.fault is not None else None,
            charset=call.charset,
        )
        with self._lock:
            self._requests.append(entry)

    def _record_unreadable(self, http_method: str, target: bytes, status: int, reason: str) -> None:
        """Record a call the loopback server could not read (it answered ``status``)."""
        path = target.partition(b"?")[0].decode("utf-8", "replace")
        call = _Call(http_method or "?", path, None, None, {"error": reason}, None)
        self._record(call, code=None, status=status)

    def _text(self, code: int, call: _Call) -> str:
        if code == 2:
            return "查询成功" if call.method == "GetNum" else "提交成功"
        text = lookup(code).text or "提交失败"
        limits = self.limits
        if limits is not None:
            if code == 4082 and limits.per_day is not None:
                text = text.replace("【5】", f"【{limits.per_day}】")
            elif code == 4085 and limits.verification_per_day is not None:
                text = text.replace("【5】", f"【{limits.verification_per_day}】")
            elif code == 408 and limits.identical_per_day is not None:
                text = text.replace("[20]", f"[{limits.identical_per_day}]")
        return text

    def _authenticate(
        self, call: _Call, signed: Callable[[str, str, int], str]
    ) -> int:
        """0 when the caller is who it says, else the provider's code. Lock held.

        ``signed`` gives the text a dynamic password hashes (account, key, ..., time);
        its MD5 is taken over UTF-8 and, for a body in another charset, over that charset.
        """
        fields = call.fields
        account = fields.get("account", "").strip()
        if not account:
            return 401
        password = fields.get("password", "").strip()
        if not password:
            return 402
        entry = self._accounts.get(account)
        if entry is None:
            return 4053
        if password == entry.api_key or same_hex(password, entry.digest):
            return 0
        raw_time = fields.get("time", "").strip()
        if not raw_time:
            return 405
        try:
            timestamp = int(raw_time)
        except ValueError:
            return 40502
        if abs(timestamp - self.clock.time()) > self.time_window:
            return 40501
        text = signed(account, entry.api_key, timestamp)
        encodings = ("utf-8",) if call.charset == "utf-8" else ("utf-8", call.charset)
        if not any(same_hex(password, md5_hex(text, encoding)) for encoding in encodings):
            return 40502
        return 0

    def _submit(self, call: _Call) -> tuple[int, dict[str, str]]:
        fields = call.fields
        failed = {"smsid": "0"}
        raw_mobile = fields.get("mobile", "")
        content = fields.get("content", "")

        def signed(account: str, api_key: str, timestamp: int) -> str:
            return f"{account}{api_key}{raw_mobile}{content}{timestamp}"

        code = self._authenticate(call, signed)
        if code:
            return code, failed
        account = fields["account"].strip()
        code, mobile = mobile_code(raw_mobile)
        if code:
            return code, failed
        max_length = self.max_length_json if call.flavour == "json" else self.max_length_legacy
        raw_template = fields.get("templateid", "").strip() if call.flavour == "json" else ""
        template_id: int | None = None
        if raw_template:
            if not content.strip():
                return 404, failed
            if has_emoji(content):
                return 4074, failed
            code, text = self._render_template(account, raw_template, content)
            if code:
                return code, failed
            template_id = int(raw_template)
            if len(text) > max_length:
                return 4073, failed
        else:
            code = content_code(content, max_length)
            if code:
                return code, failed
            text = content
            if self.strict_templates and not any(
                t.status == "approved" and t.account in (None, account) and t.matches(text)
                for t in self._templates.values()
            ):
                return 4072, failed
        if any(word and word in text for word in self.sensitive_words):
            return 407, failed
        if mobile in self.blacklist:
            return 4030, failed
        billed = segments(text)
        entry = self._accounts[account]
        if entry.balance < billed:
            return 4051, failed
        now = self.clock.time()
        verification = is_verification(text)
        code = self._check_limits(account, mobile, text, verification, now)
        if code:
            return code, failed
        entry.balance -= billed
        smsid = f"{int(now) % 10**10:010d}{next(self._serial) % 10**10:010d}"
        message = Message(
            account=account,
            mobile=mobile,
            content=text,
            smsid=smsid,
            time=_dt.datetime.fromtimestamp(now, CHINA_TZ),
            template_id=template_id,
            segments=billed,
            verification=verification,
            flavour=call.flavour or "legacy",
        )
        self._messages.append(message)
        if self.auto_receipts and self.receipt_url is not None:
            form = receipt_form(
                smsid=smsid, mobile=mobile, code=2, msg="DELIVRD", report_time=message.time
            )
            self._outbox.append(PushRecord(kind="receipt", url=self.receipt_url, form=form))
            for waker in self._wakers:
                waker.wake()
        return 2, {"smsid": smsid}

    def _render_template(self, account: str, raw_id: str, content: str) -> tuple[int, str]:
        try:
            template = self._templates.get(int(raw_id))
        except ValueError:
            template = None
        if template is None or template.account not in (None, account):
            return 4071, ""
        if template.status != "approved":
            return 4072, ""
        variables = content.split("|")
        if any(len(v) > 8 for v in variables):
            return 40722, ""
        if template.template_id == TRIAL_TEMPLATE_ID and not all(
            v.isascii() and v.isdigit() and len(v) >= 4 for v in variables
        ):
            return 4072, ""
        text = fill_template(template.content, variables)
        return (4072, "") if text is None else (0, text)

    def _check_limits(
        self, account: str, mobile: str, text: str, verification: bool, now: float
    ) -> int:
        limits = self.limits
        if limits is None:
            return 0
        state = self._numbers.get((account, mobile))
        if state is None:
            state = self._numbers[(account, mobile)] = _NumberState()
        day = int((now + _CHINA_OFFSET) // _DAY)
        if state.day != day:
            state.day, state.count, state.verifications = day, 0, 0
            state.identical.clear()
        recent = state.recent
        while recent and now - recent[0] >= 1.0:
            recent.popleft()
        if limits.per_second is not None and len(recent) >= limits.per_second:
            return 4080
        same = state.identical.get(text, 0)
        if limits.identical_per_day is not None and same >= limits.identical_per_day:
            self.blacklist.add(mobile)
            return 408
        if (
            verification
            and limits.verification_per_day is not None
            and state.verifications >= limits.verification_per_day
        ):
            return 4085
        if limits.per_day is not None and state.count >= limits.per_day:
            return 4082
        recent.append(now)
        state.count += 1
        state.verifications += verification
        state.identical[text] = same + 1
        return 0

    def _getnum(self, call: _Call) -> tuple[int, dict[str, str]]:
        code = self._authenticate(call, lambda account, key, timestamp: f"{account}{key}{timestamp}")
        if code:
            return code, {"num": "0"}
        return 2, {"num": str(self._accounts[call.fields["account"].strip()].balance)}

    def _add_template(self, fields: Mapping[str, str]) -> tuple[int, dict[str, str]]:
        failed = {"templateid": "0"}
        account = fields.get("account", "").strip()
        password = fields.get("password", "").strip()
        if not account:
            return 401, failed
        if not password:
            return 402, failed
        entry = self._accounts.get(account)
        if entry is None:
            return 4053, failed
        if password != entry.api_key and not same_hex(password, entry.digest):
            return 405, failed
        content = fields.get("content", "")
        if not content.strip():
            return 404, failed
        if has_emoji(content):
            return 4074, failed
        if any(word and word in content for word in self.sensitive_words):
            return 407, failed
        template_id = next(self._template_ids)
        self._templates[template_id] = Template(
            template_id=template_id, account=account, content=content, status="pending"
        )
        return 2, {"templateid": str(template_id)}

    # ------------------------------------------------------------------ ASGI

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The emulator as a pure ASGI 3 application (HTTP and lifespan)."""
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
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
        call = self._prepare(scope["method"], scope["path"], query, b"".join(chunks), content_type)
        outcome = await self._serve(call)
        if outcome == _Outcome.HANG:
            await _wait_for_disconnect(receive)
            return
        if outcome == _Outcome.DROP:
            await _drop_connection(scope, receive, send)
            return
        assert isinstance(outcome, _Answer)
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

    def __repr__(self) -> str:
        return (
            f"Emulator(accounts={len(self._accounts)}, messages={len(self._messages)}, "
            f"requests={len(self._requests)}, clock={self.clock!r})"
        )


def _code_of(answer: _Answer | None) -> int | None:
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


def _render(method: str, code: int, msg: str, extra: Mapping[str, str], *, as_json: bool) -> _Answer:
    """Shape an answer exactly as the provider does (XML by default, or JSON)."""
    if as_json:
        # Built by hand (same bytes as compact json.dumps): the extra values are digits we made.
        parts = [f'{{"code":{code},"msg":{_json_string(msg)}']
        for key, value in extra.items():
            parts.append(f',"{key}":{int(value)}' if key in ("num", "templateid") else f',"{key}":"{value}"')
        parts.append("}")
        return _Answer(200, "application/json; charset=utf-8", "".join(parts).encode("utf-8"))
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<{method}Result xmlns="{_NAMESPACE}">',
        f"<code>{code}</code>",
        f"<msg>{escape(msg)}</msg>",
    ]
    lines.extend(f"<{key}>{escape(value)}</{key}>" for key, value in extra.items())
    lines.append(f"</{method}Result>")
    return _Answer(200, "text/xml; charset=utf-8", "\n".join(lines).encode("utf-8"))


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
    call = emulator._prepare(
        request.method,
        request.url.path,
        request.url.query,
        body,
        request.headers.get("content-type", ""),
    )
    if call.fault is None:  # the common path: no cancel scope, no await
        answer = emulator._answer(call, record=True)
        return httpx.Response(
            answer.status, headers=_headers(answer.content_type), content=answer.body, request=request
        )
    timeouts = request.extensions.get("timeout") or {}
    read_timeout = timeouts.get("read")
    outcome: _Answer | str | None = None
    with anyio.move_on_after(read_timeout if read_timeout is not None else float("inf")) as scope:
        outcome = await emulator._serve(call)
        if outcome == _Outcome.HANG:
            await anyio.sleep_forever()
    if scope.cancelled_caught or outcome is None or outcome == _Outcome.HANG:
        raise httpx.ReadTimeout("the emulator did not answer (hang fault)", request=request)
    if outcome == _Outcome.DROP:
        raise httpx.RemoteProtocolError(
            "Server disconnected without sending a response.", request=request
        )
    assert isinstance(outcome, _Answer)
    return httpx.Response(
        outcome.status, headers=_headers(outcome.content_type), content=outcome.body, request=request
    )


@functools.lru_cache(maxsize=16)
def _header_bytes(content_type: str) -> bytes:
    return content_type.encode("latin-1")


def _headers(content_type: str) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", _header_bytes(content_type))]
