"""Verification codes for signup, login and password reset (#18).

:class:`Verifier` issues one-time codes by SMS and checks them; the stores
(:class:`MemoryVerifyStore`, :class:`RedisVerifyStore`) keep codes only as keyed hashes
and enforce lifetime, wrong-guess budget and resend spacing atomically; the abuse
limits (:class:`VerifyLimits`) are rules of the limiter, in memory or on Redis.
"""

from __future__ import annotations

from .._exports import publish as _publish
from ._models import (
    Checked,
    CheckStatus,
    Started,
    VerificationRefusedError,
    VerificationUnavailableError,
    VerifyLimits,
)
from ._redis import RedisVerifyStore
from ._store import CheckAnswer, Issued, MemoryVerifyStore, Policy, TooSoon, VerifyStore
from ._verifier import Verifier

__all__ = [
    "CheckAnswer",
    "CheckStatus",
    "Checked",
    "Issued",
    "MemoryVerifyStore",
    "Policy",
    "RedisVerifyStore",
    "Started",
    "TooSoon",
    "VerificationRefusedError",
    "VerificationUnavailableError",
    "Verifier",
    "VerifyLimits",
    "VerifyStore",
]

_publish(__name__, globals(), __all__)
