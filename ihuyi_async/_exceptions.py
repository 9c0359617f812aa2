"""The exception tree of ihuyi-async. Pure: no I/O, no transport, no client.

::

    IhuyiError
    ├─ TransportError          not sent: refused, connect/pool timeout
    ├─ DeliveryUnknownError    a send that may have gone: read timeout,
    │                          lost after write, non-200, ambiguous answer;
    │                          .reason, masked number, content digest, sent_at
    ├─ ProtocolError           unparseable answer: .status_code, .excerpt
    ├─ StoreUnavailableError   a shared store failed; nothing sent
    │  ├─ LimiterUnavailableError   the limiter's
    │  └─ KeyStoreUnavailableError  the idempotency keys'
    ├─ IdempotencyError        a key unusable for this call; nothing sent
    │  ├─ IdempotencyKeyReuseError    same key, other parameters (a ValueError)
    │  └─ IdempotencyInProgressError  the key's first call is still in flight
    └─ ApiError                code != 2: .code, .message, .category, .local
       ├─ AuthenticationError  AccountError  InvalidRequestError
       ├─ ContentRejectedError  TemplateError  BlacklistedError
       └─ RateLimitedError     4080 4082 4085 4086 408
          └─ LocalRateLimitError  our limiter: .rule, .retry_after, .resets_at

Misuse (a closed client, a client used from another event loop) raises
:class:`RuntimeError`; a wrong argument type raises :class:`TypeError`; a
template send on a flavour that has no template mode raises
:class:`UnsupportedOperationError` (a :class:`ValueError`).
Cancellation is never translated.

No exception built here ever holds the API key; phone numbers appear masked.
"""

from __future__ import annotations

import datetime as _dt

from ._china import CHINA_TZ
from ._redact import mask_mobile

__all__ = [
    "AccountError",
    "ApiError",
    "AuthenticationError",
    "BlacklistedError",
    "ContentRejectedError",
    "DeliveryUnknownError",
    "IdempotencyError",
    "IdempotencyInProgressError",
    "IdempotencyKeyReuseError",
    "IhuyiError",
    "InvalidRequestError",
    "KeyStoreUnavailableError",
    "LimiterUnavailableError",
    "LocalRateLimitError",
    "ProtocolError",
    "RateLimitedError",
    "StoreUnavailableError",
    "TemplateError",
    "TransportError",
    "UnsupportedOperationError",
]


class IhuyiError(Exception):
    """Root of every error this library raises for a failed call."""


class TransportError(IhuyiError):
    """The request was **not sent**: connection refused, DNS failure, connect or pool timeout.

    For a send this means the provider never saw the request: safe to retry.
    :ivar sent: ``False`` when the request provably never left; ``None`` for a
        read-only call (balance) that failed after the request was written.
    """

    def __init__(self, message: str, *, sent: bool | None = False) -> None:
        super().__init__(message)
        self.sent = sent


class ProtocolError(IhuyiError):
    """The provider's answer could not be understood.

    :ivar status_code: the HTTP status of the answer (``None`` if there was none).
    :ivar excerpt: a short, secret-free excerpt of the body.
    :ivar reason: a short tag (``"http_status"``, ``"malformed_answer"``, ``"missing_code"``,
        ``"missing_smsid"``, ``"oversized"``), reused as a send's unknown-outcome reason.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        excerpt: str = "",
        reason: str = "malformed_answer",
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.excerpt = excerpt
        self.reason = reason

    def __str__(self) -> str:
        base = super().__str__()
        parts = [base]
        if self.status_code is not None:
            parts.append(f"status={self.status_code}")
        if self.excerpt:
            parts.append(f"body={self.excerpt!r}")
        return " ".join(parts)


class DeliveryUnknownError(IhuyiError):
    """A send may or may not have been accepted; the library cannot tell.

    Do **not** blindly resend: the provider may have billed and delivered it.
    Reconcile with delivery receipts by ``mobile_masked``, ``content_digest`` and
    ``sent_at`` (no usable answer arrived, so there is no smsid to match).

    :ivar reason: why the outcome is unknown (``"read_timeout"``, ``"disconnected"``,
        ``"http_status"``, ``"malformed_answer"``, ``"missing_smsid"``, ``"oversized"``,
        ``"cancelled"``, …).
    :ivar mobile_masked: the number, masked (``138****8000``); ``""`` if not known.
    :ivar content_digest: the first 12 hex digits of the content's SHA-256 (never the
        content); ``""`` if not known.
    :ivar sent_at: when the request was made (aware, UTC+8), if it was.
    :ivar detail: more about the failure, if any.
    """

    sent = None

    def __init__(
        self,
        reason: str,
        *,
        mobile: str = "",
        content_digest: str = "",
        sent_at: _dt.datetime | None = None,
        detail: str = "",
    ) -> None:
        self.reason = reason
        self.mobile_masked = mask_mobile(mobile) if mobile else ""
        self.content_digest = content_digest
        self.sent_at = sent_at
        self.detail = detail
        super().__init__(self._text())

    def _text(self) -> str:
        text = f"outcome unknown ({self.reason}) for {self.mobile_masked or 'request'}"
        if self.content_digest:
            text += f", content {self.content_digest}"
        if self.sent_at is not None:
            text += f", sent at {self.sent_at.isoformat()}"
        if self.detail:
            text += f": {self.detail}"
        return text


class StoreUnavailableError(IhuyiError):
    """A shared store (the limiter's, the idempotency keys') failed; nothing was sent."""


class LimiterUnavailableError(StoreUnavailableError):
    """The limiter's store (e.g. Redis) could not be reached; nothing was sent."""


class KeyStoreUnavailableError(StoreUnavailableError):
    """The idempotency key store (e.g. Redis) could not be reached; nothing was sent."""


class IdempotencyError(IhuyiError):
    """An idempotency key could not be used for this call; nothing was sent by it."""


class IdempotencyKeyReuseError(IdempotencyError, ValueError):
    """The key was used before with other parameters (number, content, template, variables)."""


class IdempotencyInProgressError(IdempotencyError):
    """The first call with this key is still in flight (and this call did not wait it out).

    Try again later: the first call's outcome will be returned then.
    """


class UnsupportedOperationError(ValueError):
    """The chosen API flavour or product does not support this call."""


class ApiError(IhuyiError):
    """The provider (or local validation acting for it) answered a code other than 2.

    :ivar code: the provider's result code (an ``int``; unknown codes are kept).
    :ivar message: the provider's text (or the registry's text for local refusals).
    :ivar category: the registry's category (``"auth"``, ``"content"``, …, ``"unknown"``).
    :ivar local: ``True`` when this library refused the message before any request.
    :ivar retryable: whether trying again later may succeed (the registry's flag; without
        one, a rate-limit or server category is retryable).
    """

    def __init__(
        self,
        code: int,
        message: str = "",
        *,
        category: str = "unknown",
        local: bool = False,
        mobile: str = "",
        retryable: bool | None = None,
    ) -> None:
        self._retryable = retryable
        self.code = code
        self.message = message
        self.category = category
        self.local = local
        self.mobile_masked = mask_mobile(mobile) if mobile else ""
        super().__init__(code, message)

    def __str__(self) -> str:
        where = " (refused locally)" if self.local else ""
        who = f" [{self.mobile_masked}]" if self.mobile_masked else ""
        return f"{self.code}: {self.message}{where}{who}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
            f"category={self.category!r}, local={self.local!r})"
        )

    @property
    def retryable(self) -> bool:
        """Whether trying again later may succeed (from the code registry)."""
        if self._retryable is not None:
            return self._retryable
        return self.category in ("rate_limit", "server")


class AuthenticationError(ApiError):
    """Credentials or signature rejected (401, 402, 405, 40501, 40502, 400, 4052)."""


class AccountError(ApiError):
    """The account cannot send (frozen, balance exhausted: 4050, 4051)."""


class InvalidRequestError(ApiError):
    """The request itself is wrong (empty or malformed number, empty content: 403, 404, 406)."""


class ContentRejectedError(ApiError):
    """The content was refused (sensitive words, too long, emoji: 407, 4073, 4074)."""


class TemplateError(ApiError):
    """Signature or template problems (4070, 4071, 4072, 40722, 4075)."""


class BlacklistedError(ApiError):
    """The number is on the provider's blacklist (4030)."""


class RateLimitedError(ApiError):
    """A per-number limit was hit (4080, 4082, 4085, 4086, 408), by the provider or locally."""


class LocalRateLimitError(RateLimitedError):
    """Our own limiter refused the send before any request was made.

    Its text says so in its own words: which local rule refused, what the send would
    have been, and when the next send is allowed, e.g. ``refused locally: 3rd identical
    message to 138****8000 within a minute (rule identical_per_minute, provider code
    408); next allowed at 12:01:00 China time, in 58 s``. Nothing was sent and nothing
    was blacklisted: ``code`` is the provider code the rule stands for (what the
    provider would answer), not an answer of the provider.

    :ivar message: what was refused, in English (built by the limiter from the rule).
    :ivar rule: the name of the rule that refused it.
    :ivar retry_after: seconds until the rule would admit the send (``None`` if never today).
    :ivar resets_at: when the rule's window resets (aware datetime), if it has one.
    :ivar allowed_at: when the rule next admits the send (aware datetime, UTC+8 from the
        limiter); defaults to ``resets_at``.
    """

    def __init__(
        self,
        code: int,
        message: str = "",
        *,
        rule: str,
        mobile: str = "",
        retry_after: float | None = None,
        resets_at: _dt.datetime | None = None,
        allowed_at: _dt.datetime | None = None,
    ) -> None:
        super().__init__(code, message, category="rate_limit", local=True, mobile=mobile)
        self.rule = rule
        self.retry_after = retry_after
        self.resets_at = resets_at
        self.allowed_at = allowed_at if allowed_at is not None else resets_at

    def __str__(self) -> str:
        what = self.message or f"a send to {self.mobile_masked or 'this number'}"
        text = f"refused locally: {what} (rule {self.rule}, provider code {self.code})"
        when = self.allowed_at
        after = self.retry_after
        if when is not None:
            text += f"; next allowed at {self._clock_time(when, after)} China time"
            if after is not None:
                text += f", in {self._duration(after)}"
        elif after is not None:
            text += f"; next allowed in {self._duration(after)}"
        return text

    @staticmethod
    def _clock_time(when: _dt.datetime, after: float | None) -> str:
        """``12:01:00`` (rounded up to the second), with the date when it is not the
        refusal's day."""
        when = when.astimezone(CHINA_TZ)
        if when.microsecond >= 1000:  # below a millisecond: float noise, not a later second
            when += _dt.timedelta(seconds=1)
        when = when.replace(microsecond=0)
        refused_on = (when - _dt.timedelta(seconds=after or 0.0)).date()
        return when.strftime("%H:%M:%S" if when.date() == refused_on else "%Y-%m-%d %H:%M:%S")

    @staticmethod
    def _duration(seconds: float) -> str:
        """``0.4 s``, ``41 s``, ``12 min 5 s``, ``11 h 58 min`` (rounded up, to the ms first)."""
        seconds = round(seconds, 3)
        if seconds < 10:
            return f"{-(-max(seconds, 0.0) * 10 // 1) / 10:g} s"
        whole = int(-(-seconds // 1))
        if whole < 60:
            return f"{whole} s"
        if whole < 3600:
            minutes, rest = divmod(whole, 60)
            return f"{minutes} min {rest} s" if rest else f"{minutes} min"
        hours, rest = divmod(-(-whole // 60), 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"

    def __repr__(self) -> str:
        return (
            f"LocalRateLimitError(code={self.code!r}, rule={self.rule!r}, "
            f"mobile={self.mobile_masked!r}, retry_after={self.retry_after!r}, "
            f"resets_at={self.resets_at!r})"
        )
