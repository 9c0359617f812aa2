"""What a :class:`~ihuyi_async.verify.Verifier` answers and raises, and its limits as data.

Pure: no I/O, no clock. The two errors carry the same shape whatever the reason,
so an app that maps them to HTTP answers reveals nothing about the number.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Literal

from .._exceptions import IhuyiError, StoreUnavailableError

__all__ = [
    "CheckStatus",
    "Checked",
    "Started",
    "VerificationRefusedError",
    "VerificationUnavailableError",
    "VerifyLimits",
]

CheckStatus = Literal["approved", "wrong", "expired", "too_many_attempts", "not_found"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Started:
    """A code was issued (and, unless ``send=False``, handed to the provider).

    :ivar delivery: ``"sent"`` (the provider accepted it), ``"unknown"`` (the send may
        have gone: the code is kept, it may have arrived) or ``"not_sent"`` (``send=False``).
    :ivar expires_at: when the pending code expires (aware datetime, UTC+8).
    :ivar resend_at: the earliest time another :meth:`~Verifier.start` for this number
        is allowed.
    :ivar sends: codes sent for this verification so far (1 for the first).
    :ivar smsid: the provider's serial of the message, when known.
    """

    delivery: Literal["sent", "unknown", "not_sent"]
    expires_at: _dt.datetime
    resend_at: _dt.datetime
    sends: int
    smsid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Checked:
    """The answer to a :meth:`~Verifier.check`.

    :ivar status: ``"approved"`` (the code matched and is now consumed), ``"wrong"``,
        ``"expired"``, ``"too_many_attempts"`` (the wrong-guess budget is spent: start a
        new code) or ``"not_found"`` (no code pending: never started, or already used).
    :ivar attempts_left: wrong guesses still allowed for the pending code (0 when none).
    """

    status: CheckStatus
    attempts_left: int = 0

    @property
    def approved(self) -> bool:
        """Whether the code was right (and is now consumed)."""
        return self.status == "approved"


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyLimits:
    """The abuse limits of :meth:`~Verifier.start`, each a rule of the limiter; ``None`` drops one.

    :ivar per_number_per_day: codes per number per calendar day, China time (the
        provider's own quota is 5 verification codes a day).
    :ivar per_source_per_hour: codes per source (the ``ip=`` or ``source=`` given) in
        any rolling hour, across all numbers: stops one client pumping many numbers.
    :ivar per_source_per_day: codes per source per calendar day, China time.
    :ivar global_per_hour: codes for the whole app in any rolling hour: a ceiling on
        what an attack can cost you.
    """

    per_number_per_day: int | None = 5
    per_source_per_hour: int | None = 10
    per_source_per_day: int | None = 50
    global_per_hour: int | None = 1000

    def __post_init__(self) -> None:
        for name in (
            "per_number_per_day",
            "per_source_per_hour",
            "per_source_per_day",
            "global_per_hour",
        ):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"VerifyLimits.{name} must be an int >= 1 or None, got {value!r}")


class VerificationRefusedError(IhuyiError):
    """:meth:`~Verifier.start` refused to issue a code now; nothing was sent.

    One shape for every reason (resend too soon, too many codes for the number, for
    the source, for the app, the provider's quota): map it to HTTP 429 with
    ``Retry-After: ceil(retry_after)``; the text never names the reason or the number.

    :ivar retry_after: seconds until a new start may succeed (``>= 0``).
    :ivar allowed_at: that moment (aware datetime, UTC+8).
    :ivar scope: which limit refused (``"resend"``, ``"verification"``, ``"number"``,
        ``"source"``, ``"global"``, ``"provider"``): for your logs, never for your users.
    """

    def __init__(self, *, retry_after: float, allowed_at: _dt.datetime, scope: str) -> None:
        self.retry_after = max(0.0, retry_after)
        self.allowed_at = allowed_at
        self.scope = scope
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return (
            f"too many verification codes requested; try again in {math.ceil(self.retry_after)} s"
        )

    def __repr__(self) -> str:
        return f"VerificationRefusedError(retry_after={self.retry_after:.3f}, scope={self.scope!r})"


class VerificationUnavailableError(StoreUnavailableError):
    """The verification store (e.g. Redis) cannot be reached: nothing was sent or checked."""
