"""The small async interface every limiter store implements, and its two answers.

A store keeps counts; it never decides which rules apply (the limiter selects
them) and never sleeps (the limiter waits). Every method receives the rule set,
the indices of the rules that count this send, the number, the content digest
(``""`` when the send has no content) and the time to use.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from ._rules import RuleSet

__all__ = ["Grant", "Refusal", "Store"]


class Grant:
    """A reservation taken by a store: the send may go at :attr:`send_at`.

    :ivar send_at: the scheduled send time (Unix seconds, ``>= now``); the difference
        is the bucket wait the limiter sleeps.
    :ivar now: the time the store used (its own when it keeps its own clock).
    :ivar undo: store-private data a :meth:`Store.refund` needs (e.g. bucket states
        before the reservation).
    """

    __slots__ = ("now", "send_at", "undo")

    def __init__(self, send_at: float, now: float, undo: tuple[float, ...] = ()) -> None:
        self.send_at = send_at
        self.now = now
        self.undo = undo

    def __repr__(self) -> str:
        return f"Grant(send_at={self.send_at!r}, now={self.now!r}, undo={self.undo!r})"


class Refusal:
    """A store's "no": which rule refused and when it would admit the send.

    :ivar rule: index of the refusing rule in :attr:`RuleSet.rules`.
    :ivar now: the time the store used.
    :ivar retry_at: earliest time (Unix seconds) the refusing rule admits a send.
    :ivar resets_at: when the refusing rule's window resets (for a bucket: when it
        next holds a token).
    """

    __slots__ = ("now", "resets_at", "retry_at", "rule")

    def __init__(self, rule: int, now: float, retry_at: float, resets_at: float) -> None:
        self.rule = rule
        self.now = now
        self.retry_at = retry_at
        self.resets_at = resets_at

    def __repr__(self) -> str:
        return (
            f"Refusal(rule={self.rule!r}, now={self.now!r}, retry_at={self.retry_at!r}, "
            f"resets_at={self.resets_at!r})"
        )


class Store(abc.ABC):
    """Where a :class:`~ihuyi_async.limiter.Limiter` keeps its counts.

    Implement the four coroutines to add a backend. Each call must be atomic with
    respect to every other call on the same number (a lock, a transaction, a
    script). Raise :class:`~ihuyi_async.LimiterUnavailableError` when the backend
    cannot be reached; any other exception is a bug.

    Semantics a store must keep (see :class:`~ihuyi_async.limiter.Rule`):

    - :meth:`reserve` computes the send time from the token buckets among
      ``selected`` (the earliest free turn, at or after ``now``), checks every window
      at that send time, and either takes one unit of every selected rule and returns
      a :class:`Grant`, or takes nothing and returns a :class:`Refusal` — windows
      first, then the bucket when ``send_at - now > max_delay``;
    - :meth:`refund` gives back exactly what the grant took, as far as it is still
      held: a window's count in the window of ``send_at``; a bucket's turn only when
      no later reservation stacked behind it (their turns never move);
    - :meth:`fill` makes the given rules refuse from ``now``: a bucket is emptied, a
      fixed window gets ``limit`` more sends in the window of ``now``, a rolling window
      ``limit`` sends at ``now`` — added, so refunds of earlier grants never reopen it;
    - :meth:`peek` returns the earliest time a reservation would be granted without
      waiting; it changes nothing.

    Two optional methods have defaults: :meth:`nowait_reserver`, the synchronous fast
    path of a store that can answer without awaiting, and :meth:`tracked`.
    """

    def nowait_reserver(
        self, rules: RuleSet, selected: tuple[int, ...]
    ) -> Callable[[str, str, float], tuple[float, ...] | None] | None:
        """A synchronous "now or not at all" reserve for one selection of rules, or
        ``None`` (the default) when this store must await (the limiter then awaits
        :meth:`reserve`).

        The function takes ``(mobile, digest, now)`` and does what :meth:`reserve` does
        with ``max_delay=0``, but answers a grant (which is always at ``now``) with its
        :attr:`Grant.undo` and a refusal with ``None`` (no reason needed, so it may stop
        at the first rule that refuses): nothing is built that the caller does not use.
        :meth:`Limiter.acquire` and :meth:`Limiter.try_acquire` both try it first and
        await :meth:`reserve` only when it refuses (``acquire`` then waits or refuses as
        ``reserve`` says); it may raise :class:`~ihuyi_async.LimiterUnavailableError`
        (``fail_open`` applies as for any call). A subclass that changes :meth:`reserve`
        and not this answers ``None`` here (the memory store does so itself), so every
        reserve goes through its :meth:`reserve`.
        """
        return None

    def tracked(self, rules: RuleSet) -> int | None:
        """How many numbers hold state for ``rules``; ``None`` (the default): not known."""
        return None

    @abc.abstractmethod
    async def reserve(
        self,
        rules: RuleSet,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        now: float,
        max_delay: float,
    ) -> Grant | Refusal:
        """Take one unit of every selected rule, or nothing."""

    @abc.abstractmethod
    async def refund(
        self,
        rules: RuleSet,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        grant: Grant,
    ) -> None:
        """Give back what ``grant`` took (called at most once per grant)."""

    @abc.abstractmethod
    async def fill(
        self,
        rules: RuleSet,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        now: float,
    ) -> None:
        """Mark the selected rules full (buckets empty) as of ``now``."""

    @abc.abstractmethod
    async def peek(
        self,
        rules: RuleSet,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        now: float,
    ) -> float:
        """Earliest Unix time a send would be granted without waiting (``>= now``)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release resources the store owns (nothing by default)."""
