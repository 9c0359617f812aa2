"""Verification codes (work in progress, #18): models, errors, memory and Redis stores.

The :class:`Verifier` on top of these is not built yet; the stores keep codes only
as keyed hashes, enforce lifetime, wrong-guess budget and resend spacing atomically.
"""

from __future__ import annotations

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

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
