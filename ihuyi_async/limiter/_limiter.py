"""Limiter and Reservation: which rules count a send, waiting for a turn, refunds.

The limiter selects the rules that apply to a send (by ``kind`` and content),
asks its store to reserve, sleeps a bucket wait on its clock, and turns a store's
refusal into :class:`~ihuyi_async.LocalRateLimitError`. It does no I/O of its own
and imports nothing of the client, the transport or the testing package.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import time as _time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import anyio

from .._clock import Clock, SystemClock
from .._codes import RATE_LIMIT_CODES
from .._exceptions import LimiterUnavailableError, LocalRateLimitError
from .._redact import content_digest, mask_mobile
from ._memory import MAX_SCHEDULE_AHEAD, MemoryStore
from ._rules import DEFAULT_RULES, Rule, RuleSet, refusal_text, to_china_time
from ._store import Grant, Refusal, Store

#: A store's synchronous "now or not at all" reserve: ``(mobile, digest, now)`` -> undo or ``None``.
_Reserver = Callable[[str, str, float], tuple[float, ...] | None]

__all__ = ["Limiter", "LimiterStatistics", "Reservation"]

logger = logging.getLogger("ihuyi_async.limiter")

_ACTIVE = 0
_REFUNDED = 1
_NOOP = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class LimiterStatistics:
    """A snapshot of a limiter's counters (since it was built).

    :ivar acquired: reservations granted (including those later refunded).
    :ivar refused: acquires refused with :class:`~ihuyi_async.LocalRateLimitError`.
    :ivar refunded: reservations given back.
    :ivar waiting: acquires currently sleeping for their turn.
    :ivar observed: provider rate-limit codes applied by :meth:`Limiter.observe_provider_code`.
    :ivar failed_open: acquires let through because the store was unreachable.
    :ivar tracked_numbers: numbers holding state (memory store only, else ``None``).
    """

    acquired: int
    refused: int
    refunded: int
    waiting: int
    observed: int
    failed_open: int
    tracked_numbers: int | None


class Reservation:
    """The right to send one message to one number, granted by :meth:`Limiter.acquire`.

    A reservation counts against every rule that applied to the send **from the
    moment it is granted** — while its caller is still waiting for its turn, and
    after the send — until it is refunded. Keep it when the provider accepted the
    message *or when the outcome is unknown*; call :meth:`refund` only when the
    provider provably did not accept it (an answer with a code other than 2 and
    other than the rate-limit codes, or a connection that failed before the
    request was written).

    :ivar mobile: the number (reprs show it masked).
    :ivar send_at: Unix time of the send's turn (the limiter's clock, or the Redis
        server's with ``time_source="server"``).
    :ivar granted_at: Unix time at which the store granted it.
    """

    __slots__ = (
        "_limiter",
        "_selected",
        "_state",
        "_undo",
        "digest",
        "granted_at",
        "mobile",
        "send_at",
    )

    def __init__(
        self,
        limiter: Limiter,
        mobile: str,
        digest: str,
        selected: tuple[int, ...],
        granted_at: float,
        send_at: float,
        undo: tuple[float, ...],
        state: int = _ACTIVE,
    ) -> None:
        self._limiter = limiter
        self.mobile = mobile
        self.digest = digest
        self._selected = selected
        self.granted_at = granted_at
        self.send_at = send_at
        self._undo = undo
        self._state = state

    @property
    def waited(self) -> float:
        """Seconds the send had to wait for its turn (0 when it could go at once)."""
        return self.send_at - self.granted_at

    @property
    def refunded(self) -> bool:
        """Whether :meth:`refund` gave the slots back."""
        return self._state == _REFUNDED

    @property
    def counted(self) -> bool:
        """``False`` for the no-op reservation of a fail-open limiter whose store was down."""
        return self._state != _NOOP

    async def refund(self) -> bool:
        """Give back every slot this reservation took: its daily and identical-content
        counts, and its bucket turn when no later reservation queued behind it.

        Idempotent: only the first call gives anything back.

        :returns: ``True`` if this call refunded, ``False`` if already refunded or no-op.
        :raises ~ihuyi_async.LimiterUnavailableError: the store could not be reached
            (the reservation stays counted and a later call may retry), unless the
            limiter fails open.
        """
        if self._state != _ACTIVE:
            return False
        self._state = _REFUNDED
        try:
            await self._limiter._refund(self)
        except LimiterUnavailableError:
            self._state = _ACTIVE
            raise
        return True

    def __repr__(self) -> str:
        state = ("active", "refunded", "no-op")[self._state]
        return (
            f"Reservation(mobile={mask_mobile(self.mobile)!r}, send_at={self.send_at!r}, "
            f"waited={self.waited:.3f}, {state})"
        )


class Limiter:
    """Per-number rate limits applied before a send, in memory or shared through Redis.

    ``rules`` default to the provider's (:data:`~ihuyi_async.limiter.DEFAULT_RULES`):

    - a token bucket of capacity 1 refilled at 1 per second (code 4080): at most one
      send per number per second, no burst, turns spaced by 1 s plus
      :data:`~ihuyi_async.limiter.PER_SECOND_MARGIN` (0.2 s) because the provider counts
      sends when they arrive;
    - 5 sends per number per calendar day in China time (4082);
    - 5 sends of ``kind="verification"`` per number per day (4085);
    - identical content to one number: 2 per rolling minute and 20 per day (408).

    **What consumes quota.** Each successful :meth:`acquire` takes one unit of every
    rule that applies (rules filtered by ``kind``; identical-content rules only when
    ``content`` is given) and keeps it until :meth:`Reservation.refund`. A refused
    acquire takes nothing.

    **The day boundary.** Daily rules count per calendar day in UTC+8: the count
    resets at 00:00:00 UTC+8 whatever the host's time zone (the ``TZ`` variable is
    never consulted); a send counts in the day of its *turn*.

    **Waiting.** When a bucket has no token, the send waits for its turn on the
    limiter's clock. Turns are handed out first come, first served per number (the
    turn is fixed when ``acquire`` is called, not when it wakes), so a later caller
    never overtakes an earlier one. A send whose turn is more than ``max_wait``
    seconds away, or that must not wait (``wait=False``), is refused at once with code
    4080. Windows (daily, per-minute) never wait: a window that is full at the send's
    turn — counting reservations still waiting for theirs — refuses at once, with
    ``resets_at`` at the window's end (the next 00:00 UTC+8 for daily rules).
    Cancelling a waiting ``acquire`` refunds its reservation.

    :param rules: the rules (any iterable of :class:`Rule`); ``None``: the provider's.
    :param store: where counts live; ``None``: a new :class:`MemoryStore`.
    :param clock: time source (Unix seconds) and sleeper; ``None``: :class:`~ihuyi_async.SystemClock`.
    :param max_wait: longest bucket wait an acquire absorbs, seconds (0 to 3600).
    :param wait: default for :meth:`acquire`'s ``wait``; ``False``: raise, never wait.
    :param fail_open: when the store is unreachable, let sends through (logging a
        warning) instead of raising :class:`~ihuyi_async.LimiterUnavailableError`.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_acquired",
        "_clock",
        "_content_rules",
        "_digest_of",
        "_failed_open",
        "_observed",
        "_now",
        "_plain",
        "_plain_now",
        "_refunded",
        "_refused",
        "_reservers",
        "_ruleset",
        "_store",
        "_waiting",
        "fail_open",
        "max_wait",
        "wait",
    )

    def __init__(
        self,
        rules: Iterable[Rule] | None = None,
        store: Store | None = None,
        *,
        clock: Clock | None = None,
        max_wait: float = 5.0,
        wait: bool = True,
        fail_open: bool = False,
    ) -> None:
        if not (isinstance(max_wait, (int, float)) and 0 <= max_wait <= MAX_SCHEDULE_AHEAD):
            raise ValueError(f"max_wait must be between 0 and {MAX_SCHEDULE_AHEAD:g} seconds")
        if store is not None and not isinstance(store, Store):
            raise TypeError(f"store must be a limiter Store, got {type(store).__name__}")
        self._ruleset = RuleSet(DEFAULT_RULES if rules is None else rules)
        self._store: Store = MemoryStore() if store is None else store
        self._clock: Clock = SystemClock() if clock is None else clock
        self.max_wait = float(max_wait)
        self.wait = wait
        self.fail_open = fail_open
        self._content_rules = any(r.per_content for r in self._ruleset.rules)
        self._plain = self._ruleset.select(None, False)
        self._plain_now = self._store.nowait_reserver(self._ruleset, self._plain)
        # selection -> the store's synchronous reserver (None: a store that awaits)
        self._reservers: dict[tuple[int, ...], _Reserver | None] = {}
        self._digest_of = ("", "")  # the last content and its digest (a batch repeats one text)
        # the bare time function when the clock is the system's (one call fewer per acquire)
        self._now: Callable[[], float] = (
            _time.time if type(self._clock) is SystemClock else self._clock.time
        )
        self._acquired = self._refused = self._refunded = 0
        self._waiting = self._observed = self._failed_open = 0

    # -- properties ----------------------------------------------------------------------

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The rules, buckets first."""
        return self._ruleset.rules

    @property
    def store(self) -> Store:
        return self._store

    @property
    def clock(self) -> Clock:
        """The clock every time of this limiter comes from (a client built with
        ``clock=X`` and no limiter builds ``Limiter(clock=X)``)."""
        return self._clock

    # -- the API -------------------------------------------------------------------------

    def _select(self, kind: str | None, content: str) -> tuple[tuple[int, ...], str]:
        if content and self._content_rules:
            last, digest = self._digest_of
            if content != last:
                digest = content_digest(content)
                self._digest_of = (content, digest)
            return self._ruleset.select(kind, True), digest
        if kind is None:
            return self._plain, ""
        return self._ruleset.select(kind, False), ""

    def _choose(
        self, kind: str | None, content: str
    ) -> tuple[tuple[int, ...], str, _Reserver | None]:
        """The rules a send counts against, its content digest, and the store's synchronous
        reserver for those rules (cached; ``None``: a store that awaits)."""
        if kind is None and not content:
            return self._plain, "", self._plain_now
        selected, digest = self._select(kind, content)
        try:
            return selected, digest, self._reservers[selected]
        except KeyError:
            found = self._reservers[selected] = self._store.nowait_reserver(self._ruleset, selected)
            return selected, digest, found

    async def acquire(
        self,
        mobile: str,
        *,
        content: str = "",
        kind: str | None = None,
        wait: bool | None = None,
    ) -> Reservation:
        """Reserve one send to ``mobile``, waiting for the bucket's turn if allowed.

        :param mobile: the recipient number (any string without braces).
        :param content: the message text, for identical-content rules (only its digest
            is stored); ``""`` skips those rules.
        :param kind: the send's kind; ``"verification"`` engages the verification rule.
        :param wait: absorb a bucket wait of up to ``max_wait`` (default: the limiter's
            ``wait``); ``False`` raises at once instead.
        :returns: the reservation; keep it, or :meth:`~Reservation.refund` it when the
            provider provably did not accept the message.
        :raises ~ihuyi_async.LocalRateLimitError: a rule refuses (its code, name, the
            masked number, ``retry_after`` and ``resets_at`` in UTC+8); nothing taken.
        :raises ~ihuyi_async.LimiterUnavailableError: the store is unreachable and the
            limiter does not fail open.
        """
        if type(mobile) is not str:
            raise TypeError(f"mobile must be a str, got {type(mobile).__name__}")
        now = self._now()
        max_delay = self.max_wait if (self.wait if wait is None else wait) else 0.0
        selected, digest, reserve_now = self._choose(kind, content)
        if reserve_now is not None:
            # A store that answers at once (memory): a grant now needs no coroutine and no
            # Grant; anything else (a wait, a refusal) takes the full path, which decides
            # it again (a refused reserve_now changes nothing).
            try:
                undo = reserve_now(mobile, digest, now)
            except LimiterUnavailableError as exc:
                return self._open(exc, mobile, now)
            if undo is not None:
                self._acquired += 1
                return Reservation(self, mobile, digest, selected, now, now, undo)
        try:
            answer = await self._store.reserve(
                self._ruleset, selected, mobile, digest, now, max_delay
            )
        except LimiterUnavailableError as exc:
            return self._open(exc, mobile, now)
        if isinstance(answer, Refusal):
            self._refused += 1
            raise self._error(answer, mobile)
        res = Reservation(self, mobile, digest, selected, answer.now, answer.send_at, answer.undo)
        self._acquired += 1
        delay = res.send_at - res.granted_at
        if delay > 0:
            await self._wait_turn(res, delay)
        return res

    async def try_acquire(
        self, mobile: str, *, content: str = "", kind: str | None = None
    ) -> Reservation | None:
        """Like :meth:`acquire` with ``wait=False``, but ``None`` instead of raising a
        :class:`~ihuyi_async.LocalRateLimitError` (and cheaper: no exception is built).

        :raises ~ihuyi_async.LimiterUnavailableError: store unreachable (unless fail-open).
        """
        if type(mobile) is not str:
            raise TypeError(f"mobile must be a str, got {type(mobile).__name__}")
        selected, digest, reserve_now = self._choose(kind, content)
        if reserve_now is None:  # a store that awaits (Redis): the full path
            try:
                return await self.acquire(mobile, content=content, kind=kind, wait=False)
            except LocalRateLimitError:
                return None
        now = self._now()
        try:
            undo = reserve_now(mobile, digest, now)
        except LimiterUnavailableError as exc:
            return self._open(exc, mobile, now)
        if undo is None:
            self._refused += 1
            return None
        self._acquired += 1
        return Reservation(self, mobile, digest, selected, now, now, undo)

    async def observe_provider_code(
        self,
        mobile: str,
        code: int,
        *,
        content: str = "",
        kind: str | None = None,
    ) -> tuple[str, ...]:
        """Make local state agree with a rate-limit answer from the provider.

        The provider knows of sends this limiter did not see (another system, another
        store). Rules whose ``code`` matches become full as of now, whatever their
        ``kind`` filter: 4080 and 4086 empty the per-second bucket(s) for their period;
        4082 fills the daily quota until the next 00:00 UTC+8; 4085 fills the
        verification quota; 408 fills the identical-content rules (only when
        ``content`` is given). Any other code changes nothing. Call it instead of
        refunding for these answers.

        :param kind: accepted for symmetry with :meth:`acquire`; not used to select.
        :returns: the names of the rules it filled.
        :raises ~ihuyi_async.LimiterUnavailableError: store unreachable (unless fail-open).
        """
        del kind
        code = int(code)
        if code not in RATE_LIMIT_CODES:
            return ()
        selected = self._ruleset.for_code(code, bool(content))
        if not selected:
            return ()
        digest = content_digest(content) if content else ""
        now = self._now()
        try:
            await self._store.fill(self._ruleset, selected, mobile, digest, now)
        except LimiterUnavailableError as exc:
            if not self.fail_open:
                raise
            logger.warning(
                "limiter store unavailable, provider code %s for %s not recorded: %s",
                code,
                mask_mobile(mobile),
                exc,
            )
            return ()
        self._observed += 1
        return tuple(self._ruleset.rules[i].name for i in selected)

    async def next_allowed_at(
        self, mobile: str, *, content: str = "", kind: str | None = None
    ) -> _dt.datetime:
        """When a send to ``mobile`` would next be granted without waiting (UTC+8).

        For a "resend in 37 s" in a user interface. Changes nothing; a later acquire by
        anyone else may take that turn first.

        :raises ~ihuyi_async.LimiterUnavailableError: store unreachable (unless fail-open,
            which answers "now").
        """
        selected, digest = self._select(kind, content)
        now = self._now()
        try:
            when = await self._store.peek(self._ruleset, selected, mobile, digest, now)
        except LimiterUnavailableError:
            if not self.fail_open:
                raise
            when = now
        return to_china_time(max(when, now) if math.isfinite(when) else now)

    def statistics(self) -> LimiterStatistics:
        """A frozen snapshot of the limiter's counters."""
        return LimiterStatistics(
            acquired=self._acquired,
            refused=self._refused,
            refunded=self._refunded,
            waiting=self._waiting,
            observed=self._observed,
            failed_open=self._failed_open,
            tracked_numbers=self._store.tracked(self._ruleset),
        )

    async def aclose(self) -> None:
        """Close the store (a user's Redis client passed to :class:`RedisStore` stays open)."""
        await self._store.aclose()

    # -- internals -----------------------------------------------------------------------

    def _error(self, refusal: Refusal, mobile: str) -> LocalRateLimitError:
        rule = self._ruleset.rules[refusal.rule]
        return LocalRateLimitError(
            rule.code,
            refusal_text(rule, mask_mobile(mobile)),
            rule=rule.name,
            mobile=mobile,
            retry_after=max(0.0, refusal.retry_at - refusal.now),
            resets_at=to_china_time(refusal.resets_at),
            allowed_at=to_china_time(max(refusal.retry_at, refusal.now)),
        )

    def _open(self, exc: LimiterUnavailableError, mobile: str, now: float) -> Reservation:
        if not self.fail_open:
            raise exc
        self._failed_open += 1
        logger.warning(
            "limiter store unavailable, failing open for %s: %s", mask_mobile(mobile), exc
        )
        return Reservation(self, mobile, "", (), now, now, (), _NOOP)

    async def _wait_turn(self, res: Reservation, delay: float) -> None:
        self._waiting += 1
        try:
            await self._clock.sleep(delay)
        except BaseException:
            with anyio.CancelScope(shield=True):
                try:
                    await res.refund()
                except Exception:  # pragma: no cover - store down while being cancelled
                    logger.warning(
                        "could not refund the reservation of a cancelled wait for %s",
                        mask_mobile(res.mobile),
                    )
            raise
        finally:
            self._waiting -= 1

    async def _refund(self, res: Reservation) -> None:
        grant = Grant(res.send_at, res.granted_at, res._undo)
        try:
            await self._store.refund(self._ruleset, res._selected, res.mobile, res.digest, grant)
        except LimiterUnavailableError as exc:
            if not self.fail_open:
                raise
            logger.warning(
                "limiter store unavailable, refund for %s lost: %s", mask_mobile(res.mobile), exc
            )
            return
        self._refunded += 1

    def __repr__(self) -> str:
        return (
            f"Limiter(rules=[{', '.join(r.name for r in self.rules)}], store={self._store!r}, "
            f"max_wait={self.max_wait!r}, wait={self.wait!r}, fail_open={self.fail_open!r})"
        )
