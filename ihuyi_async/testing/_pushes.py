"""The emulator's side of the provider's pushes: records, and a poster that retries as the provider does.

Owns :class:`PushRecord` (what the emulator pushed and how it went) and
:func:`post_with_retries`. The forms come from :mod:`ihuyi_async.pushes`
(:func:`~ihuyi_async.pushes.receipt_form`, :func:`~ihuyi_async.pushes.reply_form`,
:func:`~ihuyi_async.pushes.template_review_form`) and each POST goes through
:func:`~ihuyi_async.pushes.post_push`, so the emulator sends exactly what the
library's own receiver is tested against.

The provider counts anything but HTTP 200 with the literal body ``success`` as a
failure and retries at most 3 times, waiting 60, 120 and 180 seconds
(*unverified*, so every number here is a parameter). The emulator multiplies
those waits by its ``time_scale``; :attr:`PushRecord.waits` keeps the provider's
unscaled waits so tests can check them without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import anyio
import httpx

from ..pushes import post_push

__all__ = ["PushKind", "PushRecord", "post_with_retries"]

PushKind = Literal["receipt", "reply", "template"]


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
    """POST ``record.form`` to ``record.url`` until the receiver acknowledges it.

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
            answer = await post_push(client, record.form, url=record.url)
        except httpx.HTTPError as exc:
            record.outcomes.append(type(exc).__name__)
            continue
        record.outcomes.append(f"{answer.status_code} {answer.body[:40]}".strip())
        if answer.acknowledged:
            record.delivered = True
            break
    return record
