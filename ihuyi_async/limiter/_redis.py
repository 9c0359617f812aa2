"""RedisStore: counts shared by every process that talks to one Redis.

Owns the key layout and the three Lua scripts (``acquire.lua``, ``refund.lua``,
``observe.lua``, each run behind the shared ``prelude.lua``); loading them,
EVALSHA with reload on NOSCRIPT and the translation of Redis failures into
:class:`~ihuyi_async.LimiterUnavailableError` are :mod:`ihuyi_async._redis_scripts`'. ``redis`` is an optional dependency (extra ``redis``), imported only
when a :class:`RedisStore` is built.
"""

from __future__ import annotations

from typing import Any, Literal

from .._exceptions import LimiterUnavailableError
from .._redis_scripts import Script, read_script, run
from ._rules import RuleSet
from ._store import Grant, Refusal, Store

__all__ = ["RedisStore", "load_script"]

_ALG = {"token_bucket": "0", "fixed_window": "1", "rolling_window": "2"}
_US = 1_000_000


_PRELUDE = ("prelude",)


def load_script(name: str) -> str:
    """The source Redis runs for ``"acquire"``, ``"refund"`` or ``"observe"`` (prelude included)."""
    return read_script(__package__, name, prelude=_PRELUDE)


def _us(seconds: float) -> int:
    return round(seconds * _US)


class RedisStore(Store):
    """Counts in Redis: one limit shared by every process and host using the same server.

    Every operation is **one round trip**: :meth:`reserve` checks and takes all rules
    of a send atomically in one ``EVALSHA`` of ``acquire.lua``; refunds run
    ``refund.lua`` and provider observations ``observe.lua`` the same way. Scripts are
    loaded once (``SCRIPT LOAD`` on the first ``NOSCRIPT`` answer, again after a
    server restart or ``SCRIPT FLUSH``).

    **Keys.** One hash per number, ``<prefix>{<mobile>}``, and one per number and
    identical content, ``<prefix>{<mobile>}:c:<digest>`` (the digest of the content,
    never the content). Both share the hash tag ``{<mobile>}``, so a Redis Cluster
    keeps them in one slot and the script may touch both. Every key carries a TTL
    that ends when its state stops mattering (one second of margin); TTLs are only
    ever extended, so Redis never holds stale limiter state.

    **Which clock.** By default (``time_source="caller"``) the script uses the ``now``
    the limiter passes, i.e. the limiter's :class:`~ihuyi_async.Clock`. Why: it is
    the clock the client also signs requests with (the provider checks it), tests
    can own it (a :class:`~ihuyi_async.FakeClock` drives Redis exactly like memory),
    and the script stays deterministic. Turns are computed from the state in Redis, but
    each process sleeps to its turn on its own clock: a skew of *s* seconds between two
    hosts can put their sends to one number *s* seconds closer than the bucket's
    interval (and moves the 00:00 UTC+8 boundary by *s*). Hosts synchronised by NTP
    keep *s* in milliseconds, well inside the provider rule's margin
    (:data:`~ihuyi_async.limiter.PER_SECOND_MARGIN`). If hosts' clocks cannot be
    trusted, choose ``time_source="server"``: the script then reads the Redis server's
    ``TIME`` — one clock for all processes — and waits are returned relative to it (the
    limiter sleeps the difference on its own clock, which only has to measure intervals).

    Times travel as integer microseconds, exact in Lua's doubles.

    :param client: a ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster`` (yours:
        this store never closes it).
    :param prefix: prepended to every key; no braces (they would break the hash tag).
    :param time_source: ``"caller"`` (default) or ``"server"``, see above.
    :raises ValueError: a prefix with braces, an unknown ``time_source``.

    Any Redis or socket failure raises :class:`~ihuyi_async.LimiterUnavailableError`.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_acquire",
        "_args",
        "_client",
        "_observe",
        "_refund",
        "prefix",
        "time_source",
    )

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "ihuyi:",
        time_source: Literal["caller", "server"] = "caller",
    ) -> None:
        try:
            import redis  # noqa: F401 - fail early without the extra
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise ImportError(
                "RedisStore needs the 'redis' package: pip install 'ihuyi-async[redis]'"
            ) from exc
        if "{" in prefix or "}" in prefix:
            raise ValueError("the key prefix must not contain '{' or '}'")
        if time_source not in ("caller", "server"):
            raise ValueError("time_source must be 'caller' or 'server'")
        self._client = client
        self.prefix = prefix
        self.time_source = time_source
        self._acquire = Script(__package__, "acquire", prelude=_PRELUDE)
        self._refund = Script(__package__, "refund", prelude=_PRELUDE)
        self._observe = Script(__package__, "observe", prelude=_PRELUDE)
        self._args: dict[tuple[RuleSet, tuple[int, ...]], list[str]] = {}

    @property
    def client(self) -> Any:
        """The ``redis.asyncio`` client this store talks through."""
        return self._client

    def keys(self, mobile: str, digest: str = "") -> tuple[str, str]:
        """The two keys of a number (and of its content when ``digest`` is given)."""
        if "{" in mobile or "}" in mobile:
            raise ValueError("a mobile number must not contain braces")
        number = f"{self.prefix}{{{mobile}}}"
        return number, (f"{number}:c:{digest}" if digest else number)

    def _rule_args(self, rules: RuleSet, selected: tuple[int, ...]) -> list[str]:
        cache_key = (rules, selected)
        args = self._args.get(cache_key)
        if args is None:
            args = []
            for i in selected:
                r = rules.rules[i]
                args += [
                    _ALG[r.algorithm],
                    r.name,
                    str(r.limit),
                    str(_us(r.interval)),  # a bucket's turns: period + margin
                    str(_us(r.offset)),
                    "1" if r.per_content else "0",
                ]
            if len(self._args) < 256:
                self._args[cache_key] = args
        return args

    def _now(self, now: float) -> str:
        return "" if self.time_source == "server" else str(_us(now))

    async def _eval(self, script: Script, keys: tuple[str, str], args: list[str]) -> Any:
        return await run(
            self._client,
            script,
            keys,
            args,
            error=LimiterUnavailableError,
            what="the limiter's Redis store",
        )

    async def reserve(
        self,
        rules: RuleSet,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        now: float,
        max_delay: float,
    ) -> Grant | Refusal:
        args = [self._now(now), str(_us(max_delay)), "1", *self._rule_args(rules, selected)]
        out = await self._eval(self._acquire, self.keys(mobile, digest), args)
        used = int(out[1]) / _US
        if int(out[0]) == 1:
            return Grant(int(out[2]) / _US, used, tuple(int(v) / _US for v in out[3:]))
        rule = selected[int(out[2]) - 1]
        return Refusal(rule, used, int(out[3]) / _US, int(out[4]) / _US)

    async def refund(
        self,
        rules: RuleSet,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        grant: Grant,
    ) -> None:
        base = self._rule_args(rules, selected)
        args = [str(_us(grant.send_at))]
        undo = iter(grant.undo)
        for j, i in enumerate(selected):
            before = next(undo) if rules.rules[i].algorithm == "token_bucket" else 0.0
            args += base[j * 6 : j * 6 + 6]
            args.append(str(max(0, _us(before))))
        await self._eval(self._refund, self.keys(mobile, digest), args)

    async def fill(
        self,
        rules: RuleSet,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        now: float,
    ) -> None:
        args = [self._now(now), *self._rule_args(rules, selected)]
        await self._eval(self._observe, self.keys(mobile, digest), args)

    async def peek(
        self,
        rules: RuleSet,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        now: float,
    ) -> float:
        args = [self._now(now), "0", "0", *self._rule_args(rules, selected)]
        out = await self._eval(self._acquire, self.keys(mobile, digest), args)
        return max(int(out[2]), int(out[1])) / _US

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r}, time_source={self.time_source!r})"
