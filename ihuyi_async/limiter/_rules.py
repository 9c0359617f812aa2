"""Rules as data: what a limit is, never how it is counted.

This module owns :class:`Rule`, its constructors, the provider's default rule set
and the China-time (UTC+8) calendar helpers. Stores interpret rules; the
:class:`~ihuyi_async.limiter.Limiter` selects which rules apply to a send.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from .._china import CHINA_OFFSET, CHINA_TZ, to_china_time

__all__ = [
    "CHINA_TZ",
    "DEFAULT_RULES",
    "PER_SECOND_MARGIN",
    "Rule",
    "RuleSet",
    "provider_rules",
    "to_china_time",
]

_CHINA_OFFSET = CHINA_OFFSET
_DAY = 86400.0

#: Seconds added to the spacing of the provider's per-second turns (see
#: :func:`provider_rules`): the provider counts a send when the request *arrives*, and
#: what arrives is the turn plus the time to get the request on the wire (a busy event
#: loop, the server's own queue, clock differences between hosts). Measured on loopback
#: at concurrency 100 on a 2-core machine, turn to arrival varied by up to 0.165 s
#: (httpx) and 0.035 s (aiohttp) between one number's sends; 0.2 s covers that and keeps
#: a burst of the day's 5 sends to one number within the default ``max_wait`` of 5 s.
PER_SECOND_MARGIN = 0.2

Algorithm = Literal["token_bucket", "fixed_window", "rolling_window"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One limit applied per recipient number (and, optionally, per identical content).

    Build rules with the constructors :meth:`token_bucket`, :meth:`per_day` and
    :meth:`window`; the fields are public so a store can interpret them.

    Three algorithms:

    ``token_bucket``
        A bucket of ``limit`` tokens, one token added every ``period`` seconds (GCRA).
        A full bucket admits a *burst* of ``limit`` sends at once; after that, one send
        per ``period`` plus ``margin`` (the rule's :attr:`interval`). A send that finds
        the bucket empty **waits** for its turn (bounded by the limiter's ``max_wait``);
        waiting sends hold their turn in first-come, first-served order.
    ``fixed_window``
        At most ``limit`` sends per window of ``period`` seconds, windows aligned so
        that one starts at every Unix time ``t`` where ``(t + offset) % period == 0``.
        With ``period=86400`` and ``offset=28800`` a window is the calendar day in
        China time: it resets at 00:00:00 UTC+8, whatever the host's time zone.
        A full window **refuses at once** (never waits).
    ``rolling_window``
        At most ``limit`` sends in any ``period`` seconds ending now (a sliding log of
        send times). Refuses at once when full.

    A send is counted by a window at the instant it is *scheduled* to go (after any
    bucket wait), so sends waiting in the bucket already count against the day.

    :ivar name: unique name; stores use it as the key of the rule's state, so keep it
        stable across deploys.
    :ivar code: the provider code the rule stands for; a refusal raises
        :class:`~ihuyi_async.LocalRateLimitError` with this code, and
        :meth:`Limiter.observe_provider_code` fills the rules of the observed code.
    :ivar kind: apply only to sends of this kind (e.g. ``"verification"``); ``None``: all.
    :ivar per_content: count per number **and** identical content (content is keyed
        by a SHA-256 digest of it, never stored raw); such a
        rule applies only when the send passes its ``content``.
    :ivar margin: token buckets only: seconds added to the spacing of turns, so that
        sends still keep the rule when they *arrive* somewhere that measures it (the
        provider counts arrivals, and the way from a turn to the wire varies).
        Stores space turns by :attr:`interval` (``period + margin``).
    """

    name: str
    code: int
    algorithm: Algorithm
    limit: int
    period: float
    offset: float = 0.0
    kind: str | None = None
    per_content: bool = False
    margin: float = 0.0

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "{}: \t\r\n"):
            raise ValueError(
                f"rule name must be non-empty, without braces, ':' or spaces: {self.name!r}"
            )
        if self.algorithm not in ("token_bucket", "fixed_window", "rolling_window"):
            raise ValueError(f"unknown algorithm {self.algorithm!r}")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"rule {self.name!r}: limit must be an int >= 1, got {self.limit!r}")
        if not (math.isfinite(self.period) and self.period > 0):
            raise ValueError(f"rule {self.name!r}: period must be a positive number of seconds")
        if not math.isfinite(self.offset):
            raise ValueError(f"rule {self.name!r}: offset must be finite")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ValueError(f"rule {self.name!r}: margin must be a number of seconds >= 0")
        if self.margin and self.algorithm != "token_bucket":
            raise ValueError(f"rule {self.name!r}: only a token bucket takes a margin")

    @property
    def interval(self) -> float:
        """Seconds between a bucket's turns: ``period + margin`` (windows: ``period``)."""
        return self.period + self.margin

    # -- constructors --------------------------------------------------------------

    @classmethod
    def token_bucket(
        cls,
        name: str,
        *,
        capacity: int = 1,
        per: float = 1.0,
        margin: float = 0.0,
        code: int = 4080,
        kind: str | None = None,
        per_content: bool = False,
    ) -> Rule:
        """A token bucket: bursts of ``capacity``, then one send every ``per + margin`` seconds.

        ``Rule.token_bucket("per_second", margin=PER_SECOND_MARGIN)`` is the provider's
        1 message per second (4080) as :func:`provider_rules` builds it;
        ``Rule.token_bucket("verify_60s", per=60, code=4085, kind="verification")``
        is the provider's advice of one verification code per 60 s per number.
        """
        return cls(
            name=name,
            code=code,
            algorithm="token_bucket",
            limit=capacity,
            period=float(per),
            kind=kind,
            per_content=per_content,
            margin=float(margin),
        )

    @classmethod
    def per_day(
        cls,
        name: str,
        limit: int,
        *,
        code: int = 4082,
        kind: str | None = None,
        per_content: bool = False,
        rolling: bool = False,
        utc_offset_hours: float = 8.0,
    ) -> Rule:
        """At most ``limit`` sends per calendar day in China time (reset at 00:00 UTC+8).

        With ``rolling=True``: at most ``limit`` in any 24 hours instead.
        ``utc_offset_hours`` moves the day boundary (the provider's is UTC+8).
        """
        if rolling:
            return cls(
                name=name,
                code=code,
                algorithm="rolling_window",
                limit=limit,
                period=_DAY,
                kind=kind,
                per_content=per_content,
            )
        return cls(
            name=name,
            code=code,
            algorithm="fixed_window",
            limit=limit,
            period=_DAY,
            offset=float(utc_offset_hours) * 3600.0,
            kind=kind,
            per_content=per_content,
        )

    @classmethod
    def window(
        cls,
        name: str,
        limit: int,
        seconds: float,
        *,
        code: int,
        rolling: bool = True,
        offset: float = 0.0,
        kind: str | None = None,
        per_content: bool = False,
    ) -> Rule:
        """At most ``limit`` sends per ``seconds``: rolling (default) or fixed windows."""
        return cls(
            name=name,
            code=code,
            algorithm="rolling_window" if rolling else "fixed_window",
            limit=limit,
            period=float(seconds),
            offset=0.0 if rolling else float(offset),
            kind=kind,
            per_content=per_content,
        )

    # -- helpers for stores ----------------------------------------------------------

    def applies(self, kind: str | None, has_content: bool) -> bool:
        """Whether the rule counts a send of ``kind`` (with or without content)."""
        if self.per_content and not has_content:
            return False
        return self.kind is None or self.kind == kind

    def window_end(self, t: float) -> float:
        """End (exclusive) of the fixed window holding ``t``: when its count resets."""
        return (math.floor((t + self.offset) / self.period) + 1) * self.period - self.offset


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _span(seconds: float) -> str:
    named = {1.0: "second", 60.0: "minute", 3600.0: "hour", _DAY: "day"}
    return named.get(seconds, f"{seconds:g} s")


def refusal_text(rule: Rule, masked: str) -> str:
    """What ``rule`` refuses, in English: ``3rd identical message to 138****8000 within a
    minute``, ``6th message to 138****8000 today, China time``, ``more than 1 message per
    second to 138****8000``. Used for :class:`~ihuyi_async.LocalRateLimitError`'s text."""
    what = "identical message" if rule.per_content else "message"
    if rule.kind is not None:
        what = f"{rule.kind} {what}"
    if rule.algorithm == "token_bucket":
        plural = "" if rule.limit == 1 else "s"
        return f"more than {rule.limit} {what}{plural} per {_span(rule.period)} to {masked}"
    nth = f"{_ordinal(rule.limit + 1)} {what} to {masked}"
    if rule.algorithm == "rolling_window":
        within = {1.0: "a second", 60.0: "a minute", 3600.0: "an hour", _DAY: "24 hours"}
        return f"{nth} within {within.get(rule.period, f'{rule.period:g} s')}"
    if rule.period == _DAY:
        day = "China time" if rule.offset == _CHINA_OFFSET else f"UTC{rule.offset / 3600:+g}"
        return f"{nth} today, {day}"
    return f"{nth} in one {_span(rule.period)} window"


def provider_rules(
    *,
    per_second: bool = True,
    per_second_margin: float = PER_SECOND_MARGIN,
    per_day: int | None = 5,
    verification_per_day: int | None = 5,
    identical_per_minute: int | None = 2,
    identical_per_day: int | None = 20,
    rolling_day: bool = False,
) -> tuple[Rule, ...]:
    """The provider's per-number limits, each adjustable; ``None`` drops one.

    The codes 4080, 4082, 4085 and 408 are the provider's (its Submit documentation); the
    identical-content counts are common practice, not documented by it (README, "Limits and
    Redis").

    - ``per_second``: token bucket, capacity 1, one token per second (code 4080), turns
      spaced by ``1 + per_second_margin`` seconds (:data:`PER_SECOND_MARGIN`, 0.2 s: the
      provider measures on arrival, see there; ``0`` spaces turns by exactly 1 s);
    - ``per_day``: sends per calendar day UTC+8 (4082);
    - ``verification_per_day``: sends of ``kind="verification"`` per day (4085);
    - ``identical_per_minute`` (rolling 60 s) and ``identical_per_day``: sends of
      identical content to one number (408; the provider blacklists after 20).

    ``rolling_day=True`` makes every daily rule a rolling 24-hour window.
    """
    rules: list[Rule] = []
    if per_second:
        rules.append(Rule.token_bucket("per_second", margin=per_second_margin))
    if per_day is not None:
        rules.append(Rule.per_day("per_day", per_day, code=4082, rolling=rolling_day))
    if verification_per_day is not None:
        rules.append(
            Rule.per_day(
                "verification_per_day",
                verification_per_day,
                code=4085,
                kind="verification",
                rolling=rolling_day,
            )
        )
    if identical_per_minute is not None:
        rules.append(
            Rule.window(
                "identical_per_minute", identical_per_minute, 60.0, code=408, per_content=True
            )
        )
    if identical_per_day is not None:
        rules.append(
            Rule.per_day(
                "identical_per_day",
                identical_per_day,
                code=408,
                per_content=True,
                rolling=rolling_day,
            )
        )
    return tuple(rules)


#: The provider's defaults: 1/s bucket, 5/day, 5 verification/day, identical content 2/min and 20/day.
DEFAULT_RULES: tuple[Rule, ...] = provider_rules()

_ALG_ORDER = {"token_bucket": 0, "fixed_window": 1, "rolling_window": 2}


class RuleSet:
    """An immutable, validated set of rules with the lookups stores need.

    Rules are kept in a canonical order (buckets first) so that a store can compute
    a send's scheduled time from the buckets before checking the windows in one pass.

    :ivar rules: the rules, buckets first.
    :ivar horizon: the longest time any rule's state can matter after the last send
        (stores may forget a number idle for longer).
    """

    __slots__ = ("_select_cache", "horizon", "rules")

    def __init__(self, rules: Iterable[Rule]) -> None:
        items = tuple(rules)
        for rule in items:
            if not isinstance(rule, Rule):
                raise TypeError(f"rules must be Rule instances, got {type(rule).__name__}")
        names = [r.name for r in items]
        if len(set(names)) != len(names):
            raise ValueError(f"rule names must be unique: {names}")
        self.rules: tuple[Rule, ...] = tuple(sorted(items, key=lambda r: _ALG_ORDER[r.algorithm]))
        self.horizon: float = max(
            (r.limit * r.interval if r.algorithm == "token_bucket" else r.period for r in items),
            default=0.0,
        )
        self._select_cache: dict[tuple[str | None, bool], tuple[int, ...]] = {}

    def select(self, kind: str | None, has_content: bool) -> tuple[int, ...]:
        """Indices (into :attr:`rules`) of the rules that count a send of ``kind``."""
        key = (kind, has_content)
        hit = self._select_cache.get(key)
        if hit is None:
            hit = tuple(i for i, r in enumerate(self.rules) if r.applies(kind, has_content))
            if len(self._select_cache) < 64:
                self._select_cache[key] = hit
        return hit

    def for_code(self, code: int, has_content: bool) -> tuple[int, ...]:
        """Indices of the rules a provider answer ``code`` says are full (kind ignored)."""
        codes = {4080, 4086} if code in (4080, 4086) else {code}
        return tuple(
            i
            for i, r in enumerate(self.rules)
            if r.code in codes and (has_content or not r.per_content)
        )

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        return f"RuleSet({', '.join(r.name for r in self.rules)})"
