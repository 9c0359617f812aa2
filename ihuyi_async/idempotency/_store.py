"""Idempotency keys: the store interface, the claim protocol, and the in-memory store.

A key moves through three states, atomically in every store:

* absent -> **in flight** (``claim``): the caller owns it for at most ``lease``
  seconds and sends;
* in flight -> **done** (``finish``): the outcome (accepted, or unknown) is kept
  for ``ttl`` seconds; every later claim returns it;
* in flight -> absent (``release``): the send provably did not go (refused
  locally, rejected by the provider, not sent): a later call may send.

The owner marks its claim **sending** (``mark_sending``) right before the request
starts to go out, once it holds a connection. A claim that finds the key in flight
past its lease (its owner died, or lost its connection to the store before
recording the outcome) turns it into **done** with an unknown outcome if it was
marked sending (the message may have gone, and a key never resends), and takes
it over otherwise (the owner died waiting for its turn: nothing went).

Keys are stored hashed (SHA-256 of the caller's key); the fingerprint of the
parameters is a hash too; records hold the provider's serial, segments and times,
never the content or the number. Pure apart from the clock: no I/O.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from .._clock import Clock, SystemClock

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_TTL",
    "LOST",
    "Claim",
    "KeyStore",
    "MemoryKeyStore",
    "check_key",
    "fingerprint",
    "hash_key",
]

#: How long an outcome is remembered: 24 hours, as Stripe keeps its keys.
DEFAULT_TTL = 24 * 3600.0
#: How long a claim may stay in flight before its owner is presumed dead. A live
#: owner never holds it that long: the limiter's longest wait for a turn (5 s by
#: default) plus the call's deadline (20 s by default) end every send sooner; the
#: client refuses a lease shorter than those two. A dead owner's key reads as
#: "in progress" for at most this long, then as unknown.
DEFAULT_LEASE = 60.0
#: The record of a claim whose owner was lost: the outcome is unknown.
LOST = json.dumps({"s": "unknown", "reason": "owner_lost"})
MAX_KEY_LENGTH = 200


def check_key(key: object) -> str:
    """A usable idempotency key, or :class:`ValueError` / :class:`TypeError` naming the fault."""
    if not isinstance(key, str):
        raise TypeError(f"idempotency_key must be a str, not {type(key).__name__}")
    if not key.strip():
        raise ValueError("idempotency_key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"idempotency_key is {len(key)} characters; at most {MAX_KEY_LENGTH}")
    return key


def hash_key(key: str) -> str:
    """What stores keep instead of the key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def fingerprint(*parts: object) -> str:
    """A digest of a call's parameters (number, kind, template, content or variables)."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Claim:
    """What a claim found.

    :ivar state: ``"claimed"`` (yours: send), ``"in_flight"`` (another caller is
        sending), ``"done"`` (:attr:`record` holds the outcome), ``"mismatch"`` (the
        key was used with other parameters).
    """

    state: Literal["claimed", "in_flight", "done", "mismatch"]
    record: str | None = None


class KeyStore(ABC):
    """Where idempotency keys live; share one store (e.g. Redis) between all workers.

    :ivar ttl: seconds an outcome is remembered (:data:`DEFAULT_TTL` unless the
        store sets its own).
    :ivar lease: seconds a claim may stay in flight before its owner is presumed dead
        (:data:`DEFAULT_LEASE` unless the store sets its own).
    """

    ttl: float = DEFAULT_TTL
    lease: float = DEFAULT_LEASE

    @abstractmethod
    async def claim(self, key: str, fingerprint: str, owner: str) -> Claim:
        """Take ``key`` for ``owner`` if it is free; else say what holds it (atomic)."""

    @abstractmethod
    async def finish(self, key: str, owner: str, record: str) -> None:
        """Record the outcome of ``owner``'s send (kept ``ttl`` seconds)."""

    async def mark_sending(self, key: str, owner: str) -> None:  # noqa: B027 - optional
        """``owner``'s request is about to go out: from now on a lost claim is unknown.

        A store that does not implement it treats every lost claim as unknown.
        """

    @abstractmethod
    async def release(self, key: str, owner: str) -> None:
        """Free ``key`` if ``owner`` still holds it: its send provably did not go."""

    async def settled(self, key: str, within: float) -> None:
        """Wait up to ``within`` seconds for an in-flight key to change (default: poll)."""
        await anyio.sleep(min(within, 0.05))


def _check_times(ttl: float, lease: float) -> None:
    if not (ttl > 0 and lease > 0):
        raise ValueError("ttl and lease must be positive numbers of seconds")
    if lease > ttl:
        raise ValueError("lease must not exceed ttl")


class _Entry:
    __slots__ = ("done", "expires", "fingerprint", "owner", "record", "sending", "until", "changed")

    def __init__(self, fingerprint: str, owner: str, until: float, expires: float) -> None:
        self.fingerprint = fingerprint
        self.owner = owner
        self.until = until  # end of the lease while in flight
        self.expires = expires
        self.done = False
        self.sending = False
        self.record: str | None = None
        self.changed = anyio.Event()


class MemoryKeyStore(KeyStore):
    """Keys in this process's memory (the default): one worker only.

    Memory is bounded by the ttl: expired keys are dropped as new ones arrive.

    :param ttl: seconds an outcome is remembered (default 24 h).
    :param lease: seconds a claim may stay in flight (default 60).
    :param clock: the time source (tests: a :class:`~ihuyi_async.FakeClock`).
    """

    def __init__(
        self, *, ttl: float = DEFAULT_TTL, lease: float = DEFAULT_LEASE, clock: Clock | None = None
    ) -> None:
        _check_times(ttl, lease)
        self.ttl = ttl
        self.lease = lease
        self._clock: Clock = clock or SystemClock()
        self._entries: dict[str, _Entry] = {}
        self._expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def _get(self, key: str, now: float) -> _Entry | None:
        while self._expiry and self._expiry[0][0] <= now:
            at, old = heapq.heappop(self._expiry)
            entry = self._entries.get(old)
            if entry is not None and entry.expires <= now:
                del self._entries[old]
        return self._entries.get(key)

    async def claim(self, key: str, fingerprint: str, owner: str) -> Claim:
        now = self._clock.time()
        entry = self._get(key, now)
        if entry is None:
            entry = _Entry(fingerprint, owner, now + self.lease, now + self.ttl)
            self._entries[key] = entry
            heapq.heappush(self._expiry, (entry.expires, key))
            return Claim("claimed")
        if entry.fingerprint != fingerprint:
            return Claim("mismatch")
        if not entry.done and entry.until <= now:  # the owner is presumed dead
            if not entry.sending:  # it died before its request could go: take the key over
                entry.owner, entry.until = owner, now + self.lease
                return Claim("claimed")
            self._settle(key, entry, LOST, now)
        if entry.done:
            return Claim("done", entry.record)
        return Claim("in_flight")

    def _settle(self, key: str, entry: _Entry, record: str, now: float) -> None:
        entry.done = True
        entry.record = record
        entry.expires = now + self.ttl
        heapq.heappush(self._expiry, (entry.expires, key))
        entry.changed.set()

    async def finish(self, key: str, owner: str, record: str) -> None:
        now = self._clock.time()
        entry = self._get(key, now)
        if entry is not None and entry.owner == owner and not entry.done:
            self._settle(key, entry, record, now)

    async def mark_sending(self, key: str, owner: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.owner == owner and not entry.done:
            entry.sending = True

    async def release(self, key: str, owner: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.owner == owner and not entry.done:
            del self._entries[key]
            entry.changed.set()

    async def settled(self, key: str, within: float) -> None:
        entry = self._entries.get(key)
        if entry is None or entry.done:
            return
        with anyio.move_on_after(within):
            await entry.changed.wait()

    def __repr__(self) -> str:
        return f"MemoryKeyStore(keys={len(self._entries)}, ttl={self.ttl:g}, lease={self.lease:g})"


def encode_record(**fields: Any) -> str:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def decode_record(record: str) -> dict[str, Any]:
    data = json.loads(record)
    if not isinstance(data, dict):
        raise ValueError("not a record")
    return data
