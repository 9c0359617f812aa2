"""Idempotency keys: a send made twice with one key goes at most once.

``client.send(..., idempotency_key="order-42")``: the first call with a key sends;
a later call with the same key (within the store's ``ttl``, 24 h by default)
returns the first call's :class:`~ihuyi_async.SendResult` (``replayed=True``) or
raises its :class:`~ihuyi_async.DeliveryUnknownError` again; a first call that
provably did not send leaves the key free. Share a :class:`RedisKeyStore` between
workers so a redelivered task never sends twice.
"""

from __future__ import annotations

from .._exports import publish as _publish
from ._redis import RedisKeyStore
from ._store import DEFAULT_LEASE, DEFAULT_TTL, Claim, KeyStore, MemoryKeyStore

__all__ = ["Claim", "DEFAULT_LEASE", "DEFAULT_TTL", "KeyStore", "MemoryKeyStore", "RedisKeyStore"]

_publish(__name__, globals(), __all__)
