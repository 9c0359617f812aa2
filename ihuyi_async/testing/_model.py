"""The provider model: accounts, balances, numbers, templates, limits and the decisions.

Owns :class:`ProviderModel` (what the provider knows and decides: who may call, what
it accepts, bills and counts, what it answers) and its records (:class:`SentMessage`,
:class:`RecordedRequest`, :class:`Template`, :class:`Limits`). No HTTP here: the faces
in :mod:`~ihuyi_async.testing._http` turn bytes into a :class:`Call` and an answer
back into bytes. The rules themselves (segments, emoji, numbers, templates, MD5) come
from :mod:`~ihuyi_async.testing._rules`. All state is guarded by one
:class:`threading.Lock`, never held across an await, so concurrent calls from many
tasks or threads keep the balance and the log exact.

Where the provider's documents are silent the emulator guesses, and says so here:

* **Order of checks** (first failure answers): 0 (undecodable bytes, see
  :mod:`~ihuyi_async.testing._wire`), 401, 402, 4053 (unknown account),
  signature (405 / 40501 / 40502), 403, 406, 404, 4074, 4073, templates
  (4071 / 4072 / 40722), 407, 4030, 4051, then the per-number limits 4080, 408,
  4085, 4082.
* **Passwords**: the plain APIKEY and its MD5 (hex in either case) are accepted by every
  method; otherwise a ``time`` field makes it a dynamic password (40501 when
  ``|time - now| > time_window``, 40502 when it does not match or ``time`` is not
  a number); without ``time`` a wrong password is 405. The MD5 is taken over the
  UTF-8 bytes, and for a body in another charset (GBK) over that charset's bytes too.
* **Limits** count accepted messages only, per account and number; days are
  calendar days in China (UTC+8). With the default numbers 408 (20 identical
  per day) is unreachable behind 4082 (5 per day): raise ``per_day`` to see it.
  4085 is checked before 4082 so a sixth verification message answers 4085.
  408 puts the number on :attr:`Emulator.blacklist` (4030 afterwards).
* **Verification messages** (for 4085 and :meth:`Emulator.last_code_for`):
  content holding a standalone run of 4 to 10 digits *and* one of the words
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
* **Products** (as public integrations call them; README "The provider's other products"):
  ``webservice/isms.php`` is international SMS
  (``mobile`` ``"<cc> <number>"``, 86 refused with 406, answer id ``ismsid``);
  ``webservice/voice.php`` is a voice code when the account is not mapped to
  ``"voice-notice"`` in ``products`` (content 4-6 ASCII digits, else 4072), else a voice
  notice; ``vm/Submit.json`` is a voice notice (``templateid`` + variables, landlines
  accepted, answer ``voiceid``); ``webservice/sms.php`` is marketing for accounts mapped
  to ``"marketing"`` (up to 1000 comma-separated numbers, one bad number refuses the
  request with 406, ``stime`` kept on each message, receipts with ``task_id``). One
  serial per request, one :class:`SentMessage` per number; billing per number (voice:
  1 per call); per-number limits per product (``product_limits``; by default the SMS
  limits, marketing without daily caps); one number over a limit refuses the whole
  request. An ``stime`` that does not parse
  answers 0.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import re
import threading
import time as _time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from .._china import CHINA_TZ as _CHINA_TZ
from .._clock import Clock, FakeClock
from .._codes import lookup
from ._faults import Fault
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

__all__ = [
    "CHINA_TZ",
    "DEFAULT_ACCOUNTS",
    "Call",
    "FlavourName",
    "Limits",
    "ProviderModel",
    "RecordedRequest",
    "SentMessage",
    "Template",
]

#: China Standard Time: the provider's calendar and push times.
CHINA_TZ = _CHINA_TZ
#: The account an :class:`Emulator` gets when none is given.
DEFAULT_ACCOUNTS: Mapping[str, str] = {"test-apiid": "test-apikey"}
#: Id of the provider's trial template.
TRIAL_TEMPLATE_ID = 1

_DAY = 86400.0
_CHINA_OFFSET = 8 * 3600.0
_SIGNATURE = r"(?:【[^】]{2,30}】)?"
_FAILED = {"Submit": {"smsid": "0"}, "GetNum": {"num": "0"}, "AddTemplate": {"templateid": "0"}}
#: The id field of each product's accepted answer (README "The provider's other products").
_ID_FIELDS = {("international", "legacy"): "ismsid", ("voice-notice", "json"): "voiceid"}
_INTERNATIONAL = re.compile(r"([1-9][0-9]{0,3}) ([0-9]{4,14})")
_LANDLINE = re.compile(r"0[1-9][0-9]{1,2}-?[0-9]{7,8}")
_MAX_NUMBERS = 1000


def _product_numbers(product: str, raw: str) -> tuple[int, list[str]]:
    """The numbers of a product's ``mobile`` field, or 403 / 406.

    Marketing: up to :data:`_MAX_NUMBERS` mainland numbers, comma-separated (one bad
    number refuses the request: 406). International: ``"<country code> <number>"``, not
    86. Voice notices: a mainland mobile or a landline (``010-12345678``). Voice codes:
    a mainland mobile.
    """
    if not raw.strip():
        return 403, []
    if product == "marketing":
        parts = raw.split(",")
        if len(parts) > _MAX_NUMBERS:
            return 406, []
        numbers = []
        for part in parts:
            code, number = mobile_code(part)
            if code:
                return code, []
            numbers.append(number)
        return 0, numbers
    if product == "international":
        match = _INTERNATIONAL.fullmatch(raw.strip())
        if match is None or match.group(1) == "86":
            return 406, []
        return 0, [raw.strip()]
    code, number = mobile_code(raw)
    if code and product == "voice-notice" and _LANDLINE.fullmatch(raw.strip()):
        return 0, [raw.strip().replace("-", "")]
    return (code, []) if code else (0, [number])

FlavourName = Literal["legacy", "json"]


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
class SentMessage:
    """A message the emulator accepted (``ihuyi_async.testing.SentMessage``; not the batch
    :class:`~ihuyi_async.Message` a user sends).

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
    flavour: FlavourName
    product: str = "sms"
    scheduled: _dt.datetime | None = None


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
    flavour: FlavourName | None
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


@dataclass(slots=True)
class Call:
    """One provider call as the HTTP faces decoded it: the model's input."""

    http_method: str
    path: str
    method: str | None
    flavour: FlavourName | None
    fields: dict[str, str]
    fault: Fault | None
    charset: str = "utf-8"
    undecodable: bool = False
    product: str = "sms"


class ProviderModel:
    """What the provider knows and decides, without any HTTP (see the module docs).

    :class:`~ihuyi_async.testing.Emulator` is this model with its faces (ASGI app, httpx
    transport, respx route) and its outbox of pushes; its docstring lists the parameters.
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
        max_length_legacy: int = 300,
        max_length_json: int = 500,
        products: Mapping[str, str] | None = None,
        product_limits: Mapping[str, Limits | bool] | None = None,
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
        self.max_length_legacy = max_length_legacy
        self.max_length_json = max_length_json
        #: APIID -> product, for the accounts ``webservice/sms.php`` serves as marketing
        #: (``"marketing"``); the other products are told by their paths.
        self.products: dict[str, str] = dict(products or {})
        #: Per-number limits of the sibling products (``None``: none); a product not listed
        #: has :attr:`limits`. Marketing has no daily caps by default.
        self.product_limits: dict[str, Limits | None] = (
            {}
            if self.limits is None
            else {"marketing": replace(self.limits, per_day=None, verification_per_day=None)}
        )
        for name, value in (product_limits or {}).items():
            self.product_limits[name] = (
                Limits() if value is True else None if value is False else value
            )

        self._lock = threading.Lock()
        self._messages: list[SentMessage] = []
        self._requests: list[RecordedRequest] = []
        self._numbers: dict[tuple[str, str], _NumberState] = {}
        self._templates: dict[int, Template] = {
            TRIAL_TEMPLATE_ID: Template(
                template_id=TRIAL_TEMPLATE_ID, account=None, content=TRIAL_TEMPLATE_TEXT, status="approved"
            )
        }
        self._template_ids = itertools.count(1001)
        self._serial = itertools.count(1)
        self._listeners: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ hooks

    def _accepted(self, message: SentMessage) -> None:
        """Called (lock held) for every message accepted; the emulator queues its receipt."""

    def _reviewed(self, template: Template) -> None:
        """Called (lock held) when a template is approved or rejected."""

    def add_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (from any thread, lock not held) after each recorded request
        or change of state; returns a function that removes it. Used by the web inbox and
        the command line's request log; keep callbacks short and thread-safe."""
        with self._lock:
            self._listeners.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return remove

    def changed(self) -> None:
        """Tell the listeners that something changed (the model calls it itself; call it
        after changing what it cannot see, e.g. the emulator's ``faults``, a
        :class:`~ihuyi_async.testing.FaultPlan`)."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    # ------------------------------------------------------------------ inspection

    @property
    def accounts(self) -> list[str]:
        """The APIIDs this emulator knows."""
        return list(self._accounts)

    def api_key_of(self, account: str) -> str:
        """The APIKEY of ``account`` (to build a client for it)."""
        return self._accounts[account].api_key

    @property
    def messages(self) -> list[SentMessage]:
        """Every message accepted, oldest first (a snapshot)."""
        with self._lock:
            return list(self._messages)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every HTTP call received, oldest first (a snapshot)."""
        with self._lock:
            return list(self._requests)

    def requests_from(self, start: int) -> list[RecordedRequest]:
        """The calls recorded from index ``start`` on (what a log tailing the requests needs,
        without copying the whole list each time)."""
        with self._lock:
            return self._requests[start:]

    def counts(self) -> dict[str, int]:
        """How many messages were accepted and calls recorded."""
        with self._lock:
            return {"messages": len(self._messages), "requests": len(self._requests)}

    @property
    def unexpected(self) -> list[RecordedRequest]:
        """Calls that were not a provider method (wrong path, method or HTTP verb)."""
        return [r for r in self.requests if r.method is None]

    @property
    def templates(self) -> dict[int, Template]:
        """Templates by id (a snapshot), the trial template (id 1) included."""
        with self._lock:
            return dict(self._templates)

    def messages_to(self, mobile: str) -> list[SentMessage]:
        """The messages accepted for ``mobile`` (``+86`` prefixes allowed), oldest first."""
        number = self._normalize(mobile)
        return [m for m in self.messages if m.mobile == number]

    def last_code_for(self, mobile: str) -> str:
        """The verification code of the last verification message sent to ``mobile``.

        The code is the first run of 4 to 10 digits after the verification keyword.

        :raises LookupError: no verification message was accepted for that number.
        """
        for message in reversed(self.messages_to(mobile)):
            if message.verification:
                code = extract_code(message.content)
                if code is not None:
                    return code
        raise LookupError("no verification message was sent to that number")

    def number_states(self) -> list[dict[str, object]]:
        """Per account and number: sends and verification codes today (China calendar day)
        against the limits, and when the next send is allowed (a Unix time, or ``None``)."""
        now = self.clock.time()
        today = int((now + _CHINA_OFFSET) // _DAY)
        limits = self.limits
        out: list[dict[str, object]] = []
        with self._lock:
            for (account, mobile), state in self._numbers.items():
                current = state.day == today
                count = state.count if current else 0
                codes = state.verifications if current else 0
                recent = [t for t in state.recent if now - t < 1.0]
                next_at: float | None = None
                if limits is not None:
                    if limits.per_day is not None and count >= limits.per_day:
                        next_at = (today + 1) * _DAY - _CHINA_OFFSET
                    elif limits.per_second is not None and len(recent) >= limits.per_second:
                        next_at = recent[0] + 1.0
                out.append({
                    "account": account,
                    "mobile": mobile,
                    "sent_today": count,
                    "per_day": limits.per_day if limits else None,
                    "codes_today": codes,
                    "codes_per_day": limits.verification_per_day if limits else None,
                    "next_allowed_at": next_at,
                    "blacklisted": mobile in self.blacklist,
                })
        return out

    def balance_of(self, account: str | None = None) -> int:
        """Messages left on ``account`` (default: the first account)."""
        with self._lock:
            return self._account(account).balance

    def set_balance(self, account: str | None, balance: int) -> None:
        """Set the messages left on ``account`` (``None``: the first account)."""
        with self._lock:
            self._account(account).balance = int(balance)
        self.changed()

    def _account(self, account: str | None) -> _Account:
        if account is None:
            return next(iter(self._accounts.values()))
        return self._accounts[account]
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
        self.changed()
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
            self._reviewed(template)
        self.changed()

    def _now_dt(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self.clock.time(), CHINA_TZ)

    @staticmethod
    def _normalize(mobile: str) -> str:
        code, number = mobile_code(str(mobile))
        return number if code == 0 else str(mobile).strip()

    def decide(self, call: Call) -> tuple[int, dict[str, str]]:
        """Run the model on a provider call: its code and the answer's extra fields."""
        assert call.method is not None
        with self._lock:
            if call.undecodable:
                return 0, dict(_FAILED[call.method])
            if call.method == "Submit":
                return self._submit(call)
            if call.method == "GetNum":
                return self._getnum(call)
            return self._add_template(call.fields)

    def record(self, call: Call, *, code: int | None, status: int | None) -> None:
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
        self.changed()

    def record_unreadable(self, http_method: str, target: bytes, status: int, reason: str) -> None:
        """Record a call the loopback server could not read (it answered ``status``)."""
        path = target.partition(b"?")[0].decode("utf-8", "replace")
        call = Call(http_method or "?", path, None, None, {"error": reason}, None)
        self.record(call, code=None, status=status)

    def text(self, code: int, call: Call) -> str:
        """The provider's ``msg`` for ``code`` (the limits' numbers filled in)."""
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
        self, call: Call, signed: Callable[[str, str, int], str]
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

    # long: the provider's checks in the order it applies them (one early return each)
    def _submit(self, call: Call) -> tuple[int, dict[str, str]]:
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
        product = call.product
        if product == "sms" and self.products.get(account) == "marketing":
            product = "marketing"
        if product != "sms":
            return self._submit_product(call, product, account)
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
        message = SentMessage(
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
        self._accepted(message)
        return 2, {"smsid": smsid}

    # long: a sibling product's checks in the provider's order, as _submit's
    def _submit_product(self, call: Call, product: str, account: str) -> tuple[int, dict[str, str]]:
        """A sibling product's Submit (lock held; the caller is authenticated); the
        guesses are listed in the module docs."""
        fields = call.fields
        id_field = _ID_FIELDS.get((product, call.flavour or "legacy"), "smsid")
        failed = {id_field: "0"}
        raw_mobile, content = fields.get("mobile", ""), fields.get("content", "")
        code, numbers = _product_numbers(product, raw_mobile)
        if code:
            return code, failed
        template_id: int | None = None
        raw_template = fields.get("templateid", "").strip()
        if product == "voice-code":
            if not content.strip():
                return 404, failed
            if not (content.isascii() and content.isdigit() and 4 <= len(content) <= 6):
                return 4072, failed
            text = content
        elif raw_template and product == "voice-notice":
            if not content.strip():
                return 404, failed
            code, text = self._render_template(account, raw_template, content)
            if code:
                return code, failed
            template_id = int(raw_template)
        else:
            max_length = self.max_length_json if call.flavour == "json" else self.max_length_legacy
            code = content_code(content, max_length)
            if code:
                return code, failed
            text = content
        if any(word and word in text for word in self.sensitive_words):
            return 407, failed
        scheduled: _dt.datetime | None = None
        raw_stime = fields.get("stime", "").strip()
        if product == "marketing" and raw_stime:
            try:
                scheduled = _dt.datetime.strptime(raw_stime, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA_TZ)
            except ValueError:
                return 0, failed
        if any(n in self.blacklist for n in numbers):
            return 4030, failed
        billed = 1 if product.startswith("voice") else segments(text)
        entry = self._accounts[account]
        if entry.balance < billed * len(numbers):
            return 4051, failed
        now = self.clock.time()
        verification = product == "voice-code" or (product != "marketing" and is_verification(text))
        for number in numbers:  # the whole request is refused if one number is over a limit
            code = self._check_limits(
                account, number, text, verification, now, product=product, commit=False
            )
            if code:
                return code, failed
        for number in numbers:
            self._check_limits(account, number, text, verification, now, product=product)
        entry.balance -= billed * len(numbers)
        serial = f"{int(now) % 10**10:010d}{next(self._serial) % 10**10:010d}"
        for number in numbers:
            message = SentMessage(
                account=account,
                mobile=number,
                content=text,
                smsid=serial,
                time=_dt.datetime.fromtimestamp(now, CHINA_TZ),
                template_id=template_id,
                segments=billed,
                verification=verification,
                flavour=call.flavour or "legacy",
                product=product,
                scheduled=scheduled,
            )
            self._messages.append(message)
            self._accepted(message)
        return 2, {id_field: serial}

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
        self,
        account: str,
        mobile: str,
        text: str,
        verification: bool,
        now: float,
        *,
        product: str = "sms",
        commit: bool = True,
    ) -> int:
        limits = self.product_limits.get(product, self.limits) if product != "sms" else self.limits
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
        if not commit:
            return 0
        recent.append(now)
        state.count += 1
        state.verifications += verification
        state.identical[text] = same + 1
        return 0

    def _getnum(self, call: Call) -> tuple[int, dict[str, str]]:
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
