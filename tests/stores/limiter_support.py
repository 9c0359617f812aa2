"""Constants and types shared by the limiter store tests."""

from __future__ import annotations

from collections.abc import Callable

from ihuyi_async.limiter import Limiter, Rule, provider_rules

#: 2026-01-01 12:00:00 UTC+8 (FakeClock's default start).
NOON = 1767240000.0
#: 2026-01-02 00:00:00 UTC+8
MIDNIGHT = 1767283200.0

MakeLimiter = Callable[..., Limiter]

#: The per-second margin the suites run with: a binary fraction, so that every turn
#: (NOON + k * STEP) is exact in floats and in the Redis store's microseconds.
MARGIN = 0.25
#: Seconds between two turns of the per-second bucket under the suites' rules.
STEP = 1.0 + MARGIN


def rules(**options: object) -> tuple[Rule, ...]:
    """``provider_rules(**options)`` with the suites' margin (unless given)."""
    options.setdefault("per_second_margin", MARGIN)
    return provider_rules(**options)  # type: ignore[arg-type]
