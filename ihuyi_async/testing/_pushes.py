"""The emulator's side of the provider's pushes: the forms and a poster that retries as the provider does.

Owns :class:`PushRecord` (what the emulator pushed and how it went), the form
builders for receipts, replies and template reviews, and :func:`post_with_retries`.
The provider POSTs form fields to the customer's URL and counts anything but the
literal body ``success`` (surrounding whitespace ignored) as a failure; it then
retries at most 3 times, waiting 60, 120 and 180 seconds (*unverified*, so every
number here is a parameter). The emulator multiplies those waits by its
``time_scale``; :attr:`PushRecord.waits` keeps the provider's unscaled waits.

A private poster: ``ihuyi_async.pushes`` had no shared one when this was written.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Literal

import anyio
import httpx

__all__ = [
    "PushKind",
    "PushRecord",
    "post_with_retries",
    "receipt_form",
    "reply_form",
    "template_review_form",
]

PushKind = Literal["receipt", "reply", "template"]
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def receipt_form(*, smsid: str, mobile: str, code: int, msg: str, at: _dt.datetime) -> dict[str, str]:
    """A delivery receipt as the provider posts it (``report_time`` in China time)."""
    return {
        "code": str(code),
        "msg": msg,
        "mobilephone": mobile,
        "smsid": smsid,
        "report_time": at.strftime(_TIME_FORMAT),
    }


def reply_form(*, mobile: str, content: str, smsid: str, at: _dt.datetime) -> dict[str, str]:
    """An upstream reply (a recipient answered) as the provider posts it."""
    return {
        "mobilephone": mobile,
        "content": content,
        "smsid": smsid,
        "reply_time": at.strftime(_TIME_FORMAT),
    }


def template_review_form(*, template_id: int, approved: bool, msg: str) -> dict[str, str]:
    """A template review result (``code`` 2 approved, 0 rejected; fields unverified)."""
    return {"code": "2" if approved else "0", "msg": msg, "templateid": str(template_id)}


@dataclass(slots=True, kw_only=True)
class PushRecord:
    """One item the emulator pushed (or tried to).

    :ivar kind: ``"receipt"``, ``"reply"`` or ``"template"``.
    :ivar url: where it was posted.
    :ivar form: the form fields.
    :ivar attempts: POSTs made (1 + retries).
    :ivar delivered: the receiver answered ``success``.
    :ivar outcomes: one short text per attempt (``"200 success"``, ``"500"``, ``"ConnectError"``).
    :ivar waits: the provider's waits before each retry, unscaled (60, 120, 180 s).
    """

    kind: PushKind
    url: str
    form: dict[str, str]
    attempts: int = 0
    delivered: bool = False
    outcomes: list[str] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)


async def post_with_retries(
    client: httpx.AsyncClient,
    record: PushRecord,
    *,
    retries: int = 3,
    step: float = 60.0,
    time_scale: float = 1.0,
) -> PushRecord:
    """POST ``record.form`` to ``record.url`` until the receiver answers ``success``.

    The n-th retry waits ``n * step`` seconds times ``time_scale``. Network errors
    count as failed attempts; cancellation passes through.
    """
    for attempt in range(retries + 1):
        if attempt:
            wait = attempt * step
            record.waits.append(wait)
            await anyio.sleep(wait * time_scale)
        record.attempts += 1
        try:
            response = await client.post(record.url, data=record.form)
        except httpx.HTTPError as exc:
            record.outcomes.append(type(exc).__name__)
            continue
        text = response.text.strip()
        record.outcomes.append(f"{response.status_code} {text[:40]}".strip())
        if response.status_code == 200 and text == "success":
            record.delivered = True
            break
    return record
