"""RedisKeyStore: idempotency keys shared by every worker and host using one Redis.

Each operation is one round trip of a Lua script (``claim.lua``, ``settle.lua``,
read with :mod:`importlib.resources`); leases run on the Redis server's clock
(``TIME``), so workers' clocks do not matter. Redis failures become
:class:`~ihuyi_async.KeyStoreUnavailableError` here and nowhere else: the client
then fails closed (nothing is sent), as the limiter does.
"""

from __future__ import annotations

from typing import Any

from .._exceptions import KeyStoreUnavailableError
from .._redis_scripts import Script, run
from ._store import DEFAULT_LEASE, DEFAULT_TTL, LOST, Claim, KeyStore, _check_times

__all__ = ["RedisKeyStore"]


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class RedisKeyStore(KeyStore):
    """Keys in Redis: one namespace for all workers (pass the limiter's client to share it).

    **Keys.** ``<prefix>{<hash of the key>}``, a hash with the fingerprint of the
    parameters, the owner of the claim, its lease end, and the outcome's record;
    the braces are a hash tag, so a Redis Cluster works. Every key expires ``ttl``
    after its claim or its outcome.

    :param client: a ``redis.asyncio.Redis`` or ``RedisCluster`` (yours: never closed here).
    :param prefix: prepended to every key; no braces.
    :param ttl: seconds an outcome is remembered (default 24 h).
    :param lease: seconds a claim may stay in flight (default 60).
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "ihuyi:idem:",
        ttl: float = DEFAULT_TTL,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        try:
            import redis  # noqa: F401 - fail early without the extra
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise ImportError(
                "RedisKeyStore needs the 'redis' package: pip install 'ihuyi-async[redis]'"
            ) from exc
        if "{" in prefix or "}" in prefix:
            raise ValueError("the key prefix must not contain '{' or '}'")
        _check_times(ttl, lease)
        self._client = client
        self.prefix = prefix
        self.ttl = ttl
        self.lease = lease
        self._claim = Script(__package__, "claim")
        self._settle = Script(__package__, "settle")
        self._mark = Script(__package__, "mark")

    def _key(self, key: str) -> str:
        return f"{self.prefix}{{{key}}}"

    async def _eval(self, script: Script, key: str, *args: str) -> Any:
        return await run(
            self._client,
            script,
            [self._key(key)],
            args,
            error=KeyStoreUnavailableError,
            what="the idempotency key store (Redis)",
        )

    async def claim(self, key: str, fingerprint: str, owner: str) -> Claim:
        out = await self._eval(
            self._claim,
            key,
            fingerprint,
            owner,
            str(round(self.lease * 1000)),
            str(round(self.ttl * 1000)),
            LOST,
        )
        state = _text(out[0])
        if state not in ("claimed", "in_flight", "done", "mismatch"):
            raise KeyStoreUnavailableError(f"the idempotency key store answered {state!r}")
        record = _text(out[1]) if state == "done" else None
        return Claim(state, record)  # type: ignore[arg-type]

    async def finish(self, key: str, owner: str, record: str) -> None:
        await self._eval(self._settle, key, owner, record, str(round(self.ttl * 1000)))

    async def mark_sending(self, key: str, owner: str) -> None:
        await self._eval(self._mark, key, owner)

    async def release(self, key: str, owner: str) -> None:
        await self._eval(self._settle, key, owner, "", str(round(self.ttl * 1000)))

    def __repr__(self) -> str:
        return f"RedisKeyStore(prefix={self.prefix!r}, ttl={self.ttl:g}, lease={self.lease:g})"
