"""Results of successful calls: frozen, slotted, keyword-only records. Pure.

Reprs mask phone numbers; no result holds a secret.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

from ._china import CHINA_TZ
from ._redact import mask_mobile

__all__ = ["Balance", "SendResult", "TemplateResult"]

#: China Standard Time, the provider's time zone (kept as an alias of ``_china.CHINA_TZ``).
CST = CHINA_TZ


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """A message the provider accepted (code 2 with a non-zero id).

    :ivar smsid: the provider's serial number, 20 digits, kept as text.
    :ivar segments: billed segments, computed locally (``None`` for a template
        whose text this client does not know).
    :ivar mobile: the 11-digit number it went to (masked in the repr).
    :ivar sent_at: when the request was made (aware, UTC+8).
    :ivar message: the provider's ``msg`` (``提交成功``).
    :ivar template_id: the template used, for template sends.
    :ivar replayed: ``True`` when this is the recorded outcome of an earlier call with
        the same idempotency key (nothing was sent this time).
    """

    smsid: str
    segments: int | None
    mobile: str = field(repr=False)
    sent_at: _dt.datetime
    message: str = ""
    template_id: int | None = None
    replayed: bool = False

    def __repr__(self) -> str:
        return (
            f"SendResult(smsid={self.smsid!r}, segments={self.segments!r}, "
            f"mobile={mask_mobile(self.mobile)!r}, sent_at={self.sent_at.isoformat()!r}"
            + (f", template_id={self.template_id!r}" if self.template_id is not None else "")
            + (", replayed=True" if self.replayed else "")
            + ")"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Balance:
    """The account's balance: :attr:`num` messages left."""

    num: int
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateResult:
    """A template submitted for review (review takes 15-30 minutes on working days)."""

    template_id: int
    message: str = ""
