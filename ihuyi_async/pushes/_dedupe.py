"""Dedupe stores: remember which pushes were handled, and which are being handled.

Owns the :class:`DedupeStore` interface (an ABC, like the limiter's and the
idempotency stores), :class:`ClaimState`, :class:`MemoryDedupe`
(one process) and :class:`RedisDedupe` (several workers, ``redis`` extra). Stores
hold no clock: the receiver passes ``now`` (Unix seconds from its injectable
clock), so tests own time and Redis agrees with the receiver about windows.

An item goes through three states::

    (absent) --claim--> in progress --complete--> handled (for the window)
                             |
                             +--release (handler failed)--> (absent)

A claim is a lease: if the worker dies mid-handler, it lapses after ``lease``
seconds and a later retry of the provider may claim the item again.
"""

from __future__ import annotations

import abc
import enum
import heapq
import math
from typing import TYPE_CHECKING, Any

from .._exceptions import StoreUnavailableError
from .._redis_scripts import Script, run

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["ClaimState", "DedupeStore", "MemoryDedupe", "RedisDedupe"]


class ClaimState(enum.Enum):
    """What :meth:`DedupeStore.claim` found.

    .. versionadded:: 0.1.0
    """

    #: The caller now holds the item and must :meth:`~DedupeStore.complete` or
    #: :meth:`~DedupeStore.release` it.
    CLAIMED = "claimed"
    #: Another caller holds it and its handler is running.
    IN_PROGRESS = "in_progress"
    #: It was handled within the window: acknowledge without handling again.
    DONE = "done"


class DedupeStore(abc.ABC):
    """What the receiver needs of a dedupe store: subclass it to add a backend.

    Keys are opaque digests (``"receipt:<hex>"``): they never contain a number or
    content. ``token`` identifies one claimant so a late release cannot remove
    someone else's claim. Every method must be safe under concurrency; ``claim``
    must be atomic.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    @abc.abstractmethod
    async def claim(self, key: str, token: str, *, now: float, lease: float) -> ClaimState:
        """Claim ``key`` for ``lease`` seconds unless it is in progress or handled."""

    @abc.abstractmethod
    async def complete(self, key: str, token: str, *, now: float, ttl: float) -> None:
        """Mark ``key`` handled for ``ttl`` seconds (``ttl <= 0``: forget it now)."""

    @abc.abstractmethod
    async def release(self, key: str, token: str) -> None:
        """Drop the claim ``token`` holds on ``key`` (its handler failed)."""


class MemoryDedupe(DedupeStore):
    """An in-process dedupe store: a dict plus an expiry heap, no background task.

    Expired entries are evicted lazily on each claim, so memory is bounded by the
    number of items seen within one window. It is shared only by the receivers of
    one process: with several workers, use :class:`RedisDedupe`.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_entries", "_heap")

    def __init__(self) -> None:
        # key -> (done, until, token)
        self._entries: dict[str, tuple[bool, float, str]] = {}
        self._heap: list[tuple[float, str]] = []

    def _evict(self, now: float) -> None:
        heap, entries = self._heap, self._entries
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            entry = entries.get(key)
            if entry is not None and entry[1] <= now:
                del entries[key]

    async def claim(self, key: str, token: str, *, now: float, lease: float) -> ClaimState:
        self._evict(now)
        entry = self._entries.get(key)
        if entry is not None and entry[1] > now:
            return ClaimState.DONE if entry[0] else ClaimState.IN_PROGRESS
        until = now + lease
        self._entries[key] = (False, until, token)
        heapq.heappush(self._heap, (until, key))
        return ClaimState.CLAIMED

    async def complete(self, key: str, token: str, *, now: float, ttl: float) -> None:
        if ttl <= 0:
            self._entries.pop(key, None)
            return
        until = now + ttl
        self._entries[key] = (True, until, token)
        heapq.heappush(self._heap, (until, key))

    async def release(self, key: str, token: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and not entry[0] and entry[2] == token:
            del self._entries[key]

    def __len__(self) -> int:
        """Entries held, in progress or handled (expired ones may linger until the next claim)."""
        return len(self._entries)

    def __repr__(self) -> str:
        return f"MemoryDedupe(entries={len(self._entries)})"


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisDedupe(DedupeStore):
    """A dedupe store in Redis, shared by every worker that uses the same prefix.

    One key per item, ``SET``-with-expiry style: a claim is written only when the
    key is absent or expired (``dedupe_claim.lua``, atomic), a handled item is stored
    for the window, a failed handler's claim is deleted only if still its own
    (``dedupe_release.lua``). Logical expiry follows the receiver's clock (``now`` is
    passed in); each key also carries a Redis TTL, so nothing outlives its window.
    Any Redis or socket failure raises :class:`~ihuyi_async.StoreUnavailableError`
    (the receiver answers 503).

    :param client: a ``redis.asyncio.Redis`` client; it stays yours to close.
    :param prefix: prefix of every key.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_claim", "_client", "_owns_client", "_prefix", "_release")

    def __init__(self, client: Redis, *, prefix: str = "ihuyi:push:") -> None:
        self._client = client
        self._prefix = prefix
        self._owns_client = False
        self._claim = Script(__package__, "dedupe_claim")
        self._release = Script(__package__, "dedupe_release")

    async def _run(self, script: Script, key: str, *args: str | int) -> Any:
        return await run(
            self._client,
            script,
            [self._prefix + key],
            args,
            error=StoreUnavailableError,
            what="the push dedupe store (Redis)",
        )

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "ihuyi:push:", **kwargs: Any) -> RedisDedupe:
        """Create a store with its own client (closed by :meth:`aclose`).

        :param url: a Redis URL, e.g. ``redis://localhost:6379/0``.
        :param kwargs: passed to ``redis.asyncio.Redis.from_url``.
        :raises ImportError: the ``redis`` extra is not installed.
        """
        try:
            from redis.asyncio import Redis
        except ImportError as exc:  # pragma: no cover - the test extra installs redis
            raise ImportError(
                "RedisDedupe needs the 'redis' package: pip install 'ihuyi-async[redis]'"
            ) from exc
        store = cls(Redis.from_url(url, **kwargs), prefix=prefix)
        store._owns_client = True
        return store

    @property
    def prefix(self) -> str:
        """The key prefix."""
        return self._prefix

    async def aclose(self) -> None:
        """Close the client if this store created it (:meth:`from_url`)."""
        if self._owns_client:
            await self._client.aclose()

    async def claim(self, key: str, token: str, *, now: float, lease: float) -> ClaimState:
        result = await self._run(
            self._claim, key, token, repr(float(now)), repr(float(now + lease)), _ms(lease)
        )
        return (ClaimState.CLAIMED, ClaimState.IN_PROGRESS, ClaimState.DONE)[int(result)]

    async def complete(self, key: str, token: str, *, now: float, ttl: float) -> None:
        if ttl <= 0:
            await self._client.delete(self._prefix + key)
            return
        await self._client.set(self._prefix + key, f"D|{float(now + ttl)!r}", px=_ms(ttl))

    async def release(self, key: str, token: str) -> None:
        await self._run(self._release, key, token)

    def __repr__(self) -> str:
        return f"RedisDedupe(prefix={self._prefix!r})"
