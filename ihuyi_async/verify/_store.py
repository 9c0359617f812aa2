"""Verification stores: the interface, the rules every store keeps, and the memory store.

A store keeps, per number (keyed by a keyed hash of the number, never the number),
one record: the hashes of the pending codes ``h``, wrong guesses ``a``, codes sent
for this verification ``n``, the time of the last send ``s`` and the expiry ``e``
(integer milliseconds, from the caller's clock). Each operation is atomic:

``start``
    refuses while ``now < s + resend_after`` (scope ``"resend"``), or while a live
    verification has sent ``max_sends`` codes (scope ``"verification"``, until it
    expires); else issues the code: a live verification (pending, unexpired,
    attempts left) keeps its wrong-guess count and, with ``keep``, its earlier codes;
    anything else starts afresh. ``s = now``, ``e = now + lifetime``. Returns what a
    rollback needs to put the record back as it was.
``rollback``
    restores the record from before ``start`` if the newest code is still that
    start's: a send that provably failed leaves nothing behind.
``check``
    ``not_found`` (no code pending) > ``expired`` > ``too_many_attempts`` > compare:
    a match consumes every pending code (``approved``); a miss counts one wrong guess.

Records are dropped one lifetime after they stop mattering (expiry, or the end of
the resend spacing, whichever is later). Pure apart from the secret's randomness.
"""

from __future__ import annotations

import heapq
import hmac
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass

from ._models import CheckStatus

__all__ = ["CheckAnswer", "Issued", "MemoryVerifyStore", "Policy", "TooSoon", "VerifyStore"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """The numbers a store applies (milliseconds and counts)."""

    lifetime_ms: int
    resend_ms: int
    max_sends: int
    max_attempts: int
    keep: bool


@dataclass(frozen=True, slots=True)
class Issued:
    """``start`` issued the code: ``sends`` of this verification, expiry, how to undo."""

    sends: int
    expires_ms: int
    undo: str


@dataclass(frozen=True, slots=True)
class TooSoon:
    """``start`` refused: no start before ``retry_ms``; ``scope`` says which rule."""

    retry_ms: int
    scope: str


@dataclass(frozen=True, slots=True)
class CheckAnswer:
    status: CheckStatus
    attempts_left: int


class VerifyStore(ABC):
    """Where pending codes live; share one (Redis) between all workers of an app."""

    @abstractmethod
    async def secret(self) -> bytes:
        """The key of the code hashes when the app gives none (generated once, then shared)."""

    @abstractmethod
    async def start(
        self, key: str, code_hash: str, now_ms: int, policy: Policy
    ) -> Issued | TooSoon:
        """Issue ``code_hash`` for ``key`` or refuse (atomic; see the module's rules)."""

    @abstractmethod
    async def rollback(self, key: str, code_hash: str, undo: str) -> None:
        """Undo the ``start`` that issued ``code_hash``, if nothing issued a newer code since."""

    @abstractmethod
    async def check(self, key: str, code_hash: str, now_ms: int, policy: Policy) -> CheckAnswer:
        """Compare ``code_hash`` with the pending codes (atomic, constant time)."""


class _Record:
    __slots__ = ("attempts", "drop_ms", "expires_ms", "hashes", "sends", "sent_ms")

    def __init__(self) -> None:
        self.hashes: list[str] = []
        self.attempts = 0
        self.sends = 0
        self.sent_ms = 0
        self.expires_ms = 0
        self.drop_ms = 0

    def dump(self) -> str:
        return (
            f"{','.join(self.hashes)}|{self.attempts}|{self.sends}|{self.sent_ms}|{self.expires_ms}"
        )

    @classmethod
    def load(cls, text: str) -> _Record:
        hashes, attempts, sends, sent, expires = text.split("|")
        record = cls()
        record.hashes = hashes.split(",") if hashes else []
        record.attempts, record.sends = int(attempts), int(sends)
        record.sent_ms, record.expires_ms = int(sent), int(expires)
        return record


def drop_time(record_expires: int, sent: int, policy: Policy) -> int:
    """When a record stops mattering, plus one lifetime (it still answers ``expired``)."""
    return max(record_expires, sent + policy.resend_ms) + policy.lifetime_ms


class MemoryVerifyStore(VerifyStore):
    """Pending codes in this process's memory (the default): one worker only.

    Memory is bounded: records are dropped as new ones arrive, one lifetime after
    they stop mattering. Every method runs without awaiting, so each is atomic.
    """

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self._records: dict[str, _Record] = {}
        self._drops: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._records)

    async def secret(self) -> bytes:
        return self._secret

    def _evict(self, now_ms: int) -> None:
        while self._drops and self._drops[0][0] <= now_ms:
            _, key = heapq.heappop(self._drops)
            record = self._records.get(key)
            if record is not None and record.drop_ms <= now_ms:
                del self._records[key]

    async def start(
        self, key: str, code_hash: str, now_ms: int, policy: Policy
    ) -> Issued | TooSoon:
        self._evict(now_ms)
        record = self._records.get(key)
        undo = "" if record is None else record.dump()
        if record is None:
            record = _Record()
        elif now_ms < record.sent_ms + policy.resend_ms:
            return TooSoon(record.sent_ms + policy.resend_ms, "resend")
        live = (
            bool(record.hashes)
            and now_ms < record.expires_ms
            and record.attempts < policy.max_attempts
        )
        if live and record.sends >= policy.max_sends:
            return TooSoon(record.expires_ms, "verification")
        if live:
            record.sends += 1
            record.hashes = [*record.hashes, code_hash] if policy.keep else [code_hash]
        else:
            record.hashes, record.attempts, record.sends = [code_hash], 0, 1
        record.sent_ms = now_ms
        record.expires_ms = now_ms + policy.lifetime_ms
        record.drop_ms = drop_time(record.expires_ms, now_ms, policy)
        self._records[key] = record
        heapq.heappush(self._drops, (record.drop_ms, key))
        return Issued(record.sends, record.expires_ms, undo)

    async def rollback(self, key: str, code_hash: str, undo: str) -> None:
        record = self._records.get(key)
        if record is None or not record.hashes or record.hashes[-1] != code_hash:
            return
        if not undo:
            del self._records[key]
            return
        old = _Record.load(undo)
        old.drop_ms = record.drop_ms
        self._records[key] = old

    async def check(self, key: str, code_hash: str, now_ms: int, policy: Policy) -> CheckAnswer:
        self._evict(now_ms)
        record = self._records.get(key)
        if record is None or not record.hashes:
            return CheckAnswer("not_found", 0)
        if now_ms >= record.expires_ms:
            return CheckAnswer("expired", 0)
        if record.attempts >= policy.max_attempts:
            return CheckAnswer("too_many_attempts", 0)
        matched = False
        for stored in record.hashes:  # every one compared, each in constant time
            matched |= hmac.compare_digest(stored, code_hash)
        if matched:
            record.hashes, record.attempts, record.sends, record.expires_ms = [], 0, 0, 0
            return CheckAnswer("approved", 0)
        record.attempts += 1
        return CheckAnswer("wrong", policy.max_attempts - record.attempts)

    def __repr__(self) -> str:
        return f"MemoryVerifyStore(records={len(self._records)})"
