"""Push models and the parser that tells the provider's push kinds apart.

Owns :class:`DeliveryReceipt`, :class:`Reply`, :class:`TemplateReview`, the
:data:`Push` union, :class:`PushParseError` and :func:`parse_push`. Pure: no I/O,
no clock. The field names follow the provider's push documents (receipts and
replies are confirmed by public receivers; template reviews, the time format and
the time zone are not: see :func:`parse_push` for how each guess is softened).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import ClassVar

from .._china import CHINA_TZ as _CHINA_TZ
from .._redact import content_digest, mask_mobile

__all__ = [
    "CHINA_TZ",
    "DEFAULT_TIME_FORMATS",
    "DeliveryReceipt",
    "Push",
    "PushParseError",
    "Reply",
    "TemplateReview",
    "parse_push",
]

#: China Standard Time (UTC+8), the zone of every time the provider sends.
CHINA_TZ: tzinfo = _CHINA_TZ

#: The ``strptime`` formats tried, in order, for ``report_time`` and ``reply_time``.
#: The provider documents ``YYYY-MM-DD HH:MM:SS``; the others are seen in the wild.
#: A 10-digit Unix timestamp and ISO 8601 with an offset are accepted as well.
DEFAULT_TIME_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d %H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y%m%d%H%M%S",
)

_CODE = re.compile(r"-?[0-9]{1,9}")
_TEMPLATE_ID = re.compile(r"[0-9]{1,18}")
_UNIX_TS = re.compile(r"[0-9]{10}")
_MAX_ID = 128
_MAX_MOBILE = 32
_MAX_TEXT = 4096


class PushParseError(ValueError):
    """A form that is not a push this library knows, or a push with a broken field.

    The message names fields, never their values (a value may be a phone number
    or a message someone wrote).

    :ivar reason: what is wrong, in a few words.
    :ivar fields: the field names the form carried, sorted (at most 20).

    .. versionadded:: 0.1.0
    """

    def __init__(self, reason: str, *, fields: Sequence[str] = ()) -> None:
        self.reason = reason
        self.fields: tuple[str, ...] = tuple(sorted(fields))[:20]
        shown = ", ".join(repr(name[:40]) for name in self.fields)
        super().__init__(f"{reason} (fields: {shown or 'none'})")


def _key(kind: str, *parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return f"{kind}:{digest.hexdigest()[:40]}"


def _fmt_time(value: datetime | None) -> str:
    return "None" if value is None else repr(value.isoformat())


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryReceipt:
    """A delivery report (状态报告) for one message to one number.

    Ordinary sends carry ``smsid`` (the serial Submit returned); marketing sends
    carry ``task_id`` instead. Exactly one of the two is set.

    :ivar code: the provider's status code; ``2`` means delivered, anything else failed.
    :ivar msg: the provider's status text (may be empty).
    :ivar mobile: the recipient's number, as text.
    :ivar smsid: the Submit serial (20 digits, text), or ``None`` for marketing receipts.
    :ivar task_id: the marketing send's serial, or ``None``.
    :ivar report_time: when the operator reported, aware (UTC+8); ``None`` when the
        field was absent or in a format not recognised (its text stays in ``raw``).
    :ivar raw: every field of the form as received (excluded from repr and equality).

    .. versionadded:: 0.1.0
    """

    kind: ClassVar[str] = "receipt"

    code: int
    msg: str
    mobile: str
    smsid: str | None = None
    task_id: str | None = None
    report_time: datetime | None = None
    raw: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def delivered(self) -> bool:
        """``True`` when the message reached the handset (``code == 2``)."""
        return self.code == 2

    @property
    def serial(self) -> str:
        """The serial this receipt is about: ``smsid``, else ``task_id``."""
        return self.smsid if self.smsid is not None else (self.task_id or "")

    @property
    def dedupe_key(self) -> str:
        """Identity of this item for deduplication: serial, number and status.

        The number is part of it because one marketing ``task_id`` covers many
        numbers. The key is a digest: it never shows the number.
        """
        id_kind = "smsid" if self.smsid is not None else "task_id"
        return _key(self.kind, id_kind, self.serial, self.mobile, str(self.code))

    def __repr__(self) -> str:
        ident = f"smsid={self.smsid!r}" if self.smsid is not None else f"task_id={self.task_id!r}"
        return (
            f"DeliveryReceipt({ident}, code={self.code!r}, msg={self.msg!r}, "
            f"mobile={mask_mobile(self.mobile)!r}, report_time={_fmt_time(self.report_time)})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """An upstream message: a recipient answered.

    :ivar mobile: the number that replied, as text.
    :ivar content: what they wrote (the repr shows only a digest of it).
    :ivar smsid: the Submit serial the provider relates the reply to ("for reference
        only"), or ``None`` when absent or empty.
    :ivar reply_time: when the reply arrived, aware (UTC+8), from ``reply_time`` or
        ``replyTime``; ``None`` when absent or not recognised.
    :ivar raw: every field of the form as received (excluded from repr and equality).

    .. versionadded:: 0.1.0
    """

    kind: ClassVar[str] = "reply"

    mobile: str
    content: str
    smsid: str | None = None
    reply_time: datetime | None = None
    raw: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def dedupe_key(self) -> str:
        """Identity for deduplication: serial, number, content and the time as sent."""
        time_text = self.raw.get("reply_time", self.raw.get("replyTime", ""))
        return _key(self.kind, self.smsid or "", self.mobile, self.content, time_text)

    def __repr__(self) -> str:
        return (
            f"Reply(mobile={mask_mobile(self.mobile)!r}, smsid={self.smsid!r}, "
            f"content_digest={content_digest(self.content)!r}, "
            f"reply_time={_fmt_time(self.reply_time)})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateReview:
    """The result of a template review (fields *unverified*: ``templateid``, ``code``, ``msg``).

    :ivar template_id: the id AddTemplate returned.
    :ivar code: ``2`` approved, ``0`` rejected (other codes: not approved).
    :ivar msg: the reviewer's reason (may be empty).
    :ivar raw: every field of the form as received (excluded from repr and equality).

    .. versionadded:: 0.1.0
    """

    kind: ClassVar[str] = "template_review"

    template_id: int
    code: int
    msg: str = ""
    raw: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def approved(self) -> bool:
        """``True`` when the template passed review (``code == 2``)."""
        return self.code == 2

    @property
    def dedupe_key(self) -> str:
        """Identity for deduplication: template id and result."""
        return _key(self.kind, str(self.template_id), str(self.code))

    def __repr__(self) -> str:
        return (
            f"TemplateReview(template_id={self.template_id!r}, code={self.code!r}, "
            f"msg={self.msg!r})"
        )


#: Any push the parser returns.
Push = DeliveryReceipt | Reply | TemplateReview


def _text(form: Mapping[str, str], name: str, limit: int = _MAX_TEXT) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PushParseError(f"field {name!r} is not text", fields=list(form))
    if len(value) > limit:
        raise PushParseError(f"field {name!r} is too long", fields=list(form))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PushParseError(f"field {name!r} is not valid text", fields=list(form)) from None
    return value


def _ident(form: Mapping[str, str], name: str, limit: int = _MAX_ID) -> str | None:
    value = _text(form, name, limit)
    if value is None:
        return None
    value = value.strip()
    if not value or not value.isprintable():
        raise PushParseError(f"field {name!r} is empty or not printable", fields=list(form))
    return value


def _int(form: Mapping[str, str], name: str, pattern: re.Pattern[str] = _CODE) -> int:
    value = _text(form, name, 32)
    if value is None:
        raise PushParseError(f"field {name!r} is missing", fields=list(form))
    value = value.strip()
    if pattern.fullmatch(value) is None:
        raise PushParseError(f"field {name!r} is not an integer", fields=list(form))
    return int(value)


def _strptime(value: str, fmt: str) -> datetime | None:
    try:
        return datetime.strptime(value, fmt)
    except (ValueError, OverflowError):
        return None


def _time(value: str | None, tz: tzinfo, formats: Sequence[str]) -> datetime | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _UNIX_TS.fullmatch(value):
        return datetime.fromtimestamp(int(value), tz)
    for fmt in formats:
        parsed_naive = _strptime(value, fmt)
        if parsed_naive is not None:
            return parsed_naive.replace(tzinfo=tz)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=tz)
    try:
        return parsed.astimezone(tz)
    except (ValueError, OverflowError):
        return None


def parse_push(
    form: Mapping[str, str],
    *,
    tz: tzinfo = CHINA_TZ,
    time_formats: Sequence[str] = DEFAULT_TIME_FORMATS,
) -> Push:
    """Tell which push a form is and parse it.

    The kind is told apart from the fields present:

    * ``code`` with ``smsid`` or ``task_id``: a :class:`DeliveryReceipt`
      (``mobilephone`` required, ``msg`` and ``report_time`` optional);
    * ``mobilephone`` with ``content`` and no ``code``: a :class:`Reply`
      (``smsid``, ``reply_time``/``replyTime`` optional);
    * ``templateid`` with ``code`` and no ``mobilephone``: a :class:`TemplateReview`.

    Identity fields are strict (an unparseable ``code`` or an empty ``smsid`` is an
    error), times are lenient: the provider's time format is not verified, so a
    time that matches none of ``time_formats`` gives ``None`` instead of refusing
    the push (a refused push is retried, then lost). Naive times are read in ``tz``.
    Values of identity fields are stripped of surrounding blanks; ``content`` is
    kept verbatim. Unknown extra fields are ignored and kept in ``raw``.

    :param form: the decoded form fields.
    :param tz: the zone naive times are in (default UTC+8).
    :param time_formats: ``strptime`` formats tried in order.
    :raises PushParseError: the form is no known push, or a required field is missing
        or malformed. The message names fields, never values.

    .. versionadded:: 0.1.0
    """
    raw = dict(form)
    has = raw.__contains__
    if has("code") and (has("smsid") or has("task_id")):
        smsid = _ident(raw, "smsid") if has("smsid") else None
        task_id = _ident(raw, "task_id") if has("task_id") and smsid is None else None
        mobile = _ident(raw, "mobilephone", _MAX_MOBILE)
        if mobile is None:
            raise PushParseError("receipt without 'mobilephone'", fields=list(raw))
        return DeliveryReceipt(
            code=_int(raw, "code"),
            msg=(_text(raw, "msg") or "").strip(),
            mobile=mobile,
            smsid=smsid,
            task_id=task_id,
            report_time=_time(_text(raw, "report_time", 64), tz, time_formats),
            raw=raw,
        )
    if has("mobilephone") and has("content") and not has("code"):
        mobile = _ident(raw, "mobilephone", _MAX_MOBILE)
        content = _text(raw, "content")
        smsid_text = _text(raw, "smsid", _MAX_ID)
        smsid_value = smsid_text.strip() if smsid_text is not None else ""
        time_name = "reply_time" if has("reply_time") else "replyTime"
        return Reply(
            mobile=mobile or "",
            content=content or "",
            smsid=smsid_value or None,
            reply_time=_time(_text(raw, time_name, 64), tz, time_formats),
            raw=raw,
        )
    if has("templateid") and has("code") and not has("mobilephone"):
        return TemplateReview(
            template_id=_int(raw, "templateid", _TEMPLATE_ID),
            code=_int(raw, "code"),
            msg=(_text(raw, "msg") or "").strip(),
            raw=raw,
        )
    raise PushParseError("not a delivery receipt, reply or template review", fields=list(raw))
