"""Constants and types shared by the limiter store tests (imported by path, tests are not a package)."""

from __future__ import annotations

from collections.abc import Callable

from ihuyi_async.limiter import Limiter

#: 2026-01-01 12:00:00 UTC+8 (FakeClock's default start).
NOON = 1767240000.0
#: 2026-01-02 00:00:00 UTC+8
MIDNIGHT = 1767283200.0

MakeLimiter = Callable[..., Limiter]
