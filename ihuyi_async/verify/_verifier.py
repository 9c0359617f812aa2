"""Verifier: issue and check one-time SMS codes on a client, a store and a limiter.

Work in progress (#18): codes from :mod:`secrets`, kept only as HMACs, checked in
constant time by the store; abuse limits are rules of a
:class:`~ihuyi_async.limiter.Limiter` keyed by hashed number, source and app.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Any

from .._clock import Clock, SystemClock
from .._exceptions import DeliveryUnknownError, LocalRateLimitError, RateLimitedError
from .._validation import normalize_mobile
from ..limiter import Limiter, Reservation, Rule, Store, to_china_time
from ._models import Checked, Started, VerificationRefusedError, VerifyLimits
from ._store import MemoryVerifyStore, Policy, TooSoon, VerifyStore

__all__ = ["Verifier"]

logger = logging.getLogger("ihuyi_async.verify")
_DAY = 86400.0


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


class Verifier:
    """One-time verification codes by SMS (see the module and the README).

    :raises ValueError: neither or both of ``template_id`` / ``content``, a content
        without ``{code}``, a length outside 4-10, a secret shorter than 16 bytes.
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
        resend: str = "replace",
    ) -> None:
        if (template_id is None) == (content is None):
            raise ValueError("give exactly one of template_id or content")
        if content is not None and "{code}" not in content:
            raise ValueError("content must contain '{code}'")
        if not (isinstance(length, int) and 4 <= length <= 10):
            raise ValueError(f"length must be an int from 4 to 10, got {length!r}")
        if resend not in ("replace", "keep"):
            raise ValueError("resend must be 'replace' or 'keep'")
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
        self._store = store if store is not None else MemoryVerifyStore()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._limiter = Limiter(
            _rules(limits or VerifyLimits()), limiter_store, clock=self._clock, wait=False
        )
        self._secret = key
        self.length = length
        self.policy = Policy(
            lifetime_ms=round(lifetime * 1000),
            resend_ms=round(resend_after * 1000),
            max_sends=max_sends,
            max_attempts=max_attempts,
            keep=resend == "keep",
        )

    async def _key(self) -> bytes:
        if self._secret is None:
            self._secret = await self._store.secret()
        return self._secret

    @staticmethod
    def _mac(key: bytes, text: str) -> str:
        return hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def _refused(self, retry_after: float, scope: str) -> VerificationRefusedError:
        now = self._clock.time()
        return VerificationRefusedError(
            retry_after=retry_after, allowed_at=to_china_time(now + retry_after), scope=scope
        )

    async def start(
        self, mobile: str, *, ip: str | None = None, source: str | None = None, send: bool = True
    ) -> Started:
        """Issue a code for ``mobile`` and text it (``send=False``: every limit, no SMS).

        :raises InvalidRequestError: not a mainland mobile number; nothing stored or sent.
        :raises VerificationRefusedError: a limit refused (same shape for every reason).
        :raises StoreUnavailableError: the store or the limiter's store failed; nothing sent.
        """
        number = normalize_mobile(mobile)
        key = await self._key()
        nid = self._mac(key, "number:" + number)[:32]
        code = "".join(secrets.choice("0123456789") for _ in range(self.length))
        code_hash = self._mac(key, f"{number}:{code}")
        now = self._clock.time()
        answer = await self._store.start(nid, code_hash, round(now * 1000), self.policy)
        if isinstance(answer, TooSoon):
            raise self._refused(answer.retry_ms / 1000 - now, answer.scope)
        held: list[Reservation] = []
        origin = source if source is not None else ip
        scopes = [("number", nid), ("global", "all")]
        if origin is not None:
            scopes.insert(1, ("source", self._mac(key, "source:" + origin)[:32]))
        try:
            for scope, limit_key in scopes:
                try:
                    held.append(await self._limiter.acquire(limit_key, kind=scope, wait=False))
                except LocalRateLimitError as exc:  # noqa: PERF203 - at most 3 scopes
                    after = exc.retry_after if exc.retry_after is not None else _DAY
                    raise self._refused(after, scope) from None
            smsid: str | None = None
            delivery = "not_sent"
            if send:
                try:
                    result = await self._deliver(number, code)
                    smsid, delivery = str(result.smsid), "sent"
                except DeliveryUnknownError:
                    delivery = "unknown"
                except RateLimitedError as exc:
                    after = getattr(exc, "retry_after", None) or self.policy.resend_ms / 1000
                    raise self._refused(after, "provider") from exc
        except Exception:
            await self._undo(nid, code_hash, answer.undo, held)
            raise
        return Started(
            delivery=delivery,  # type: ignore[arg-type]
            expires_at=to_china_time(answer.expires_ms / 1000),
            resend_at=to_china_time(now + self.policy.resend_ms / 1000),
            sends=answer.sends,
            smsid=smsid,
        )

    async def _deliver(self, number: str, code: str) -> Any:
        if self._template_id is not None:
            return await self._client.send_template(
                number, template_id=self._template_id, variables=[code], kind="verification"
            )
        assert self._content is not None
        return await self._client.send(
            number, self._content.replace("{code}", code), kind="verification"
        )

    async def _undo(self, nid: str, code_hash: str, undo: str, held: list[Reservation]) -> None:
        try:
            await self._store.rollback(nid, code_hash, undo)
            for reservation in held:
                await reservation.refund()
        except Exception as exc:  # the original error matters more
            logger.warning("verification rollback failed: %s", type(exc).__name__)

    async def check(self, mobile: str, code: str) -> Checked:
        """Check ``code`` for ``mobile``; a code of the wrong length or with non-digits
        is simply a wrong guess.

        :raises InvalidRequestError: not a mainland mobile number.
        :raises TypeError: ``code`` is not a str.
        :raises StoreUnavailableError: the store failed; nothing approved.
        """
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, not {type(code).__name__}")
        number = normalize_mobile(mobile)
        key = await self._key()
        nid = self._mac(key, "number:" + number)[:32]
        now_ms = round(self._clock.time() * 1000)
        answer = await self._store.check(
            nid, self._mac(key, f"{number}:{code}"), now_ms, self.policy
        )
        return Checked(status=answer.status, attempts_left=answer.attempts_left)
