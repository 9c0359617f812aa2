"""China time, the provider's calendar: UTC+8 all year (no daylight saving). Pure.

The provider stamps answers and pushes in it, checks the ``time`` field against it,
schedules marketing sends in it and resets its daily quotas at 00:00 in it, whatever
the host's ``TZ``. One definition for the whole package.
"""

from __future__ import annotations

import datetime as _dt

__all__ = ["CHINA_OFFSET", "CHINA_TZ", "to_china_time"]

#: UTC+8, named as the provider's documents write it.
CHINA_TZ = _dt.timezone(_dt.timedelta(hours=8), "UTC+08:00")
#: Its offset from UTC in seconds.
CHINA_OFFSET = 8 * 3600.0


def to_china_time(t: float) -> _dt.datetime:
    """Unix seconds -> an aware datetime in UTC+8 (independent of the host's ``TZ``)."""
    return _dt.datetime.fromtimestamp(t, CHINA_TZ)

