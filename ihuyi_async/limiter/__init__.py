"""Per-number rate limits for SMS sends: rules as data, a limiter, memory and Redis stores.

::

    from ihuyi_async.limiter import Limiter, RedisStore, Rule, provider_rules

    limiter = Limiter()                                     # the provider's rules, in memory
    limiter = Limiter(provider_rules(per_day=10))           # an account configured for 10/day
    limiter = Limiter([*provider_rules(), Rule.token_bucket(
        "verify_60s", per=60, code=4085, kind="verification")])  # 1 code per 60 s

    res = await limiter.acquire("13800138000", content=text, kind="verification")
    ...                                                     # send
    await res.refund()                                      # only if provably not accepted

The package stands alone: it imports nothing of the client, the transport or the
testing package. See :class:`Limiter` for the exact semantics.
"""

from __future__ import annotations

from .._exports import publish as _publish
from ._limiter import Limiter, LimiterStatistics, Reservation
from ._memory import MemoryStore
from ._redis import RedisStore
from ._rules import (
    CHINA_TZ,
    DEFAULT_RULES,
    PER_SECOND_MARGIN,
    Rule,
    RuleSet,
    provider_rules,
    to_china_time,
)
from ._store import Grant, Refusal, Store

__all__ = [
    "CHINA_TZ",
    "DEFAULT_RULES",
    "Grant",
    "Limiter",
    "LimiterStatistics",
    "MemoryStore",
    "PER_SECOND_MARGIN",
    "RedisStore",
    "Refusal",
    "Reservation",
    "Rule",
    "RuleSet",
    "Store",
    "provider_rules",
    "to_china_time",
]

_publish(__name__, globals(), __all__)
