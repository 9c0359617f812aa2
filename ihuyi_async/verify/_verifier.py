"""Verifier: issue and check one-time SMS codes on a client, a store and a limiter.

Owns :class:`Verifier`. Codes come from :mod:`secrets` and are kept only as HMACs
(keyed by the app's secret, or one the store generates); the store compares them in
constant time and applies lifetime, wrong-guess budget and resend spacing atomically
(:mod:`._store`); the abuse limits are rules of a :class:`~ihuyi_async.limiter.Limiter`
keyed by the hashed number, the hashed source and the app, so they run in memory or on
Redis alike. The order of one :meth:`Verifier.start`:

1. validate the number (nothing stored or sent for a bad one);
2. the store issues the code or refuses (resend spacing, sends per verification);
3. the limiter reserves one code for the number, the source and the app, or refuses
   (the store's record is rolled back; also when the task is cancelled here);
4. the client sends it with ``kind="verification"``; a send that provably failed rolls
   back the record and refunds the reservations, an unknown outcome (or a cancellation
   during the send) keeps both.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import logging
import secrets
from typing import Any, Literal

import anyio

from .._clock import Clock, SystemClock
from .._exceptions import (
    DeliveryUnknownError,
    LocalRateLimitError,
    RateLimitedError,
    UnsupportedOperationError,
)
from .._validation import normalize_mobile
from ..limiter import Limiter, Reservation, Rule, Store, to_china_time
from ._models import Checked, Started, VerificationRefusedError, VerifyLimits
from ._store import Issued, MemoryVerifyStore, Policy, TooSoon, VerifyStore

__all__ = ["Verifier"]

logger = logging.getLogger("ihuyi_async.verify")
_DAY = 86400.0
#: The provider refuses a template variable longer than this (40722).
_MAX_TEMPLATE_VARIABLE = 8


def _rules(limits: VerifyLimits) -> list[Rule]:
    rules: list[Rule] = []
    if limits.per_number_per_day is not None:
        rules.append(
            Rule.per_day("verify_number_day", limits.per_number_per_day, code=4085, kind="number")
        )
    if limits.per_source_per_hour is not None:
        rules.append(
            Rule.window(
                "verify_source_hour", limits.per_source_per_hour, 3600, code=4085, kind="source"
            )
        )
    if limits.per_source_per_day is not None:
        rules.append(
            Rule.per_day("verify_source_day", limits.per_source_per_day, code=4085, kind="source")
        )
    if limits.global_per_hour is not None:
        rules.append(
            Rule.window(
                "verify_global_hour", limits.global_per_hour, 3600, code=4085, kind="global"
            )
        )
    return rules


def _check_options(
    template_id: int | None,
    content: str | None,
    length: int,
    resend: str,
    purpose: str,
    channel: str = "sms",
) -> None:
    if channel not in ("sms", "voice"):
        raise ValueError("channel must be 'sms' or 'voice'")
    if channel == "voice":
        if template_id is not None or content is not None:
            raise ValueError("a voice code is read out as is: no template_id or content")
    elif (template_id is None) == (content is None):
        raise ValueError("give exactly one of template_id or content")
    if content is not None and "{code}" not in content:
        raise ValueError("content must contain '{code}'")
    if isinstance(length, bool) or not isinstance(length, int) or not 4 <= length <= 10:
        raise ValueError(f"length must be an int from 4 to 10, got {length!r}")
    if template_id is not None and length > _MAX_TEMPLATE_VARIABLE:
        raise ValueError(
            "a template variable holds at most 8 characters (the provider answers 40722): "
            "use length <= 8, or content= for longer codes"
        )
    if resend not in ("replace", "keep"):
        raise ValueError("resend must be 'replace' or 'keep'")
    if not isinstance(purpose, str) or ":" in purpose:
        raise ValueError("purpose must be a str without ':'")


def _check_client(client: Any, template_id: int | None, length: int, channel: str) -> None:
    """Refuse at construction what every :meth:`Verifier.start` would fail on."""
    if template_id is not None and getattr(client, "flavour", None) == "legacy":
        raise UnsupportedOperationError(
            "the legacy flavour has no template mode: use content='…{code}…', "
            "or IhuyiClient(flavour='json') for template_id"
        )
    if channel == "voice":
        bounds = getattr(client, "code_length", None)
        if isinstance(bounds, tuple) and len(bounds) == 2 and not bounds[0] <= length <= bounds[1]:
            raise ValueError(
                f"length={length} but the voice client reads out {bounds[0]} to {bounds[1]} "
                "digits: pass a length in that range, or VoiceCodeClient(code_length=...)"
            )


class Verifier:
    """One-time verification codes by SMS: :meth:`start` texts a code, :meth:`check` checks it.

    :param client: an :class:`~ihuyi_async.IhuyiClient` (or anything with its
        ``send`` / ``send_template``), or with ``channel="voice"`` a
        :class:`~ihuyi_async.VoiceCodeClient`; the verifier never closes it.
    :param template_id: send ``variables=[code]`` with this template (codes up to 8
        digits: the provider refuses longer variables).
    :param content: or send this text, ``{code}`` replaced by the code.
    :param store: where pending codes live (default: a new :class:`MemoryVerifyStore`,
        one worker only; a :class:`RedisVerifyStore` for several).
    :param limits: the abuse limits (default :class:`VerifyLimits()`).
    :param limiter_store: the limiter store the limits count in (default: in memory;
        a :class:`~ihuyi_async.limiter.RedisStore` to share them between workers, and
        one store shared by the verifiers of every purpose to share the counts).
    :param secret: the key of the code hashes, at least 16 bytes; default: the store's
        generated one.
    :param clock: the time (default the system clock; tests pass a fake one).
    :param length: digits per code, 4 to 10 (default 6).
    :param lifetime: seconds a code stays valid (default 600).
    :param max_attempts: wrong guesses allowed per verification (default 5).
    :param resend_after: seconds between two codes for one number (default 60).
    :param max_sends: codes per verification, i.e. until one is approved or the
        verification expires (default 5).
    :param resend: ``"replace"`` (default: a resent code replaces the pending one) or
        ``"keep"`` (every code sent in the verification stays valid until one is used).
    :param channel: ``"sms"`` (default) or ``"voice"``: a call reads the code out
        (``client.send(number, code)``; the voice client takes 4-6 digits unless its
        ``code_length`` says otherwise).
    :param purpose: keeps verifications apart: a code started by the verifier for
        ``"login"`` is ``not_found`` for the one for ``"reset"`` (on the same store).
        Derive the verifiers of the other purposes with :meth:`for_purpose` so that
        they share this one's limits (a number's 5 codes a day are for all purposes).
    :raises ValueError: neither or both of ``template_id`` / ``content``, a content
        without ``{code}``, a length outside 4-10 (or over 8 with a template, or outside
        the voice client's ``code_length``), a secret shorter than 16 bytes, a
        non-positive lifetime or budget.
    :raises ~ihuyi_async.UnsupportedOperationError: ``template_id`` with a legacy-flavour
        client (it has no template mode; a :class:`ValueError`).

    .. versionadded:: 0.3.0
    """

    def __init__(
        self,
        client: Any,
        *,
        template_id: int | None = None,
        content: str | None = None,
        store: VerifyStore | None = None,
        limits: VerifyLimits | None = None,
        limiter_store: Store | None = None,
        secret: str | bytes | None = None,
        clock: Clock | None = None,
        length: int = 6,
        lifetime: float = 600.0,
        max_attempts: int = 5,
        resend_after: float = 60.0,
        max_sends: int = 5,
        resend: Literal["replace", "keep"] = "replace",
        purpose: str = "",
        channel: Literal["sms", "voice"] = "sms",
    ) -> None:
        _check_options(template_id, content, length, resend, purpose, channel)
        _check_client(client, template_id, length, channel)
        if not (lifetime > 0 and resend_after >= 0 and max_attempts >= 1 and max_sends >= 1):
            raise ValueError(
                "lifetime must be > 0, resend_after >= 0, max_attempts and max_sends >= 1"
            )
        key = secret.encode("utf-8") if isinstance(secret, str) else secret
        if key is not None and len(key) < 16:
            raise ValueError("secret must be at least 16 bytes")
        self._client = client
        self._template_id = template_id
        self._content = content
        self.channel = channel
        self._store = store if store is not None else MemoryVerifyStore()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._limiter = Limiter(
            _rules(limits or VerifyLimits()), limiter_store, clock=self._clock, wait=False
        )
        self._secret = key
        self.length = length
        self.purpose = purpose
        self.policy = Policy(
            lifetime_ms=round(lifetime * 1000),
            resend_ms=round(resend_after * 1000),
            max_sends=max_sends,
            max_attempts=max_attempts,
            keep=resend == "keep",
        )

    def for_purpose(self, purpose: str) -> Verifier:
        """A verifier for another ``purpose`` on this one's client, store, secret, options
        and limiter (its counts are shared: the limits hold across purposes)."""
        _check_options(
            self._template_id, self._content, self.length, "keep", purpose, self.channel
        )
        twin = copy.copy(self)
        twin.purpose = purpose
        return twin

    async def _key(self) -> bytes:
        if self._secret is None:
            self._secret = await self._store.secret()
        return self._secret

    @staticmethod
    def _mac(key: bytes, text: str) -> str:
        return hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def _record_key(self, key: bytes, number: str) -> str:
        scope = f"number:{self.purpose}:" if self.purpose else "number:"
        return self._mac(key, scope + number)[:32]

    def _code_hash(self, key: bytes, number: str, code: str) -> str:
        scope = f"{self.purpose}:" if self.purpose else ""
        return self._mac(key, f"{scope}{number}:{code}")

    def _refused(self, retry_after: float, scope: str) -> VerificationRefusedError:
        now = self._clock.time()
        return VerificationRefusedError(
            retry_after=retry_after, allowed_at=to_china_time(now + retry_after), scope=scope
        )

    async def start(
        self, mobile: str, *, ip: str | None = None, source: str | None = None, send: bool = True
    ) -> Started:
        """Issue a code for ``mobile`` and text it.

        :param ip: the client's address: the per-source limits apply to it.
        :param source: any other source key (a device id, an account): used instead of
            ``ip`` when given. Without either only the number and app limits apply.
        :param send: ``False`` applies every limit and issues a code but texts nothing:
            for a number you do not know in a login or reset flow, so the answer looks the
            same as for one you do.
        :raises ~ihuyi_async.InvalidRequestError: not a mainland mobile number; nothing stored or sent.
        :raises VerificationRefusedError: a limit refused (same shape for every reason);
            nothing sent.
        :raises ~ihuyi_async.StoreUnavailableError: the store or the limiter's store failed; nothing
            sent (:class:`VerificationUnavailableError` or
            :class:`~ihuyi_async.LimiterUnavailableError`).
        :raises ~ihuyi_async.ApiError: the provider refused the message (other than a rate limit) or
            the send provably failed (``TransportError``): no code is left pending and
            the resend window is not consumed.
        """
        number = normalize_mobile(mobile)
        key = await self._key()
        nid = self._record_key(key, number)
        code = "".join(secrets.choice("0123456789") for _ in range(self.length))
        code_hash = self._code_hash(key, number, code)
        now = self._clock.time()
        now_ms = round(now * 1000)
        answer = await self._store.start(nid, code_hash, now_ms, self.policy)
        if isinstance(answer, TooSoon):  # in whole ms: 60 s is 60.0, not 60.0004
            raise self._refused((answer.retry_ms - now_ms) / 1000, answer.scope)
        held: list[Reservation] = []
        try:
            await self._reserve(key, number, source if source is not None else ip, held)
        except BaseException:  # refused, failed or cancelled: nothing was sent
            with anyio.CancelScope(shield=True):
                await self._undo(nid, code_hash, answer, held)
            raise
        delivery: Literal["sent", "unknown", "not_sent"] = "not_sent"
        smsid: str | None = None
        try:
            if send:
                delivery, smsid = await self._send(number, code)
        except Exception:  # provably not sent (cancelled mid-send: unknown, the code stays)
            await self._undo(nid, code_hash, answer, held)
            raise
        return Started(
            delivery=delivery,
            expires_at=to_china_time(answer.expires_ms / 1000),
            resend_at=to_china_time(now + self.policy.resend_ms / 1000),
            sends=answer.sends,
            smsid=smsid,
        )

    async def _reserve(
        self, key: bytes, number: str, origin: str | None, held: list[Reservation]
    ) -> None:
        """One code from the number's, the source's and the app's limits (into ``held``)."""
        scopes = [("number", self._mac(key, "number:" + number)[:32])]
        if origin is not None:
            scopes.append(("source", self._mac(key, "source:" + origin)[:32]))
        scopes.append(("global", "all"))
        for scope, limit_key in scopes:
            try:
                held.append(await self._limiter.acquire(limit_key, kind=scope, wait=False))
            except LocalRateLimitError as exc:  # noqa: PERF203 - at most 3 scopes
                after = exc.retry_after if exc.retry_after is not None else _DAY
                raise self._refused(after, scope) from None

    async def _send(
        self, number: str, code: str
    ) -> tuple[Literal["sent", "unknown"], str | None]:
        try:
            if self.channel == "voice":
                result = await self._client.send(number, code)
            elif self._template_id is not None:
                result = await self._client.send_template(
                    number, template_id=self._template_id, variables=[code], kind="verification"
                )
            else:
                assert self._content is not None
                result = await self._client.send(
                    number, self._content.replace("{code}", code), kind="verification"
                )
        except DeliveryUnknownError:
            return "unknown", None
        except RateLimitedError as exc:
            after = getattr(exc, "retry_after", None) or self.policy.resend_ms / 1000
            raise self._refused(after, "provider") from exc
        return "sent", str(result.smsid)

    async def _undo(
        self, nid: str, code_hash: str, answer: Issued, held: list[Reservation]
    ) -> None:
        try:
            await self._store.rollback(nid, code_hash, answer.undo)
            for reservation in held:
                await reservation.refund()
        except Exception as exc:  # the original error matters more
            logger.warning("verification rollback failed: %s", type(exc).__name__)

    async def check(self, mobile: str, code: str) -> Checked:
        """Check ``code`` for ``mobile``.

        A code of the wrong length or with non-digits is simply a wrong guess (it
        counts against the budget). ``approved`` consumes the verification: every code
        of it is ``not_found`` afterwards.

        :raises ~ihuyi_async.InvalidRequestError: not a mainland mobile number.
        :raises TypeError: ``code`` is not a str.
        :raises ~ihuyi_async.StoreUnavailableError: the store failed; nothing approved.
        """
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, not {type(code).__name__}")
        number = normalize_mobile(mobile)
        key = await self._key()
        now_ms = round(self._clock.time() * 1000)
        answer = await self._store.check(
            self._record_key(key, number), self._code_hash(key, number, code), now_ms, self.policy
        )
        return Checked(status=answer.status, attempts_left=answer.attempts_left)

    def __repr__(self) -> str:
        if self.channel == "voice":
            mode = "channel='voice'"
        elif self._template_id is not None:
            mode = f"template_id={self._template_id}"
        else:
            mode = "content=..."
        return (
            f"Verifier({mode}, length={self.length}, purpose={self.purpose!r}, "
            f"lifetime_ms={self.policy.lifetime_ms}, max_attempts={self.policy.max_attempts}, "
            f"resend_ms={self.policy.resend_ms}, store={self._store!r})"
        )
