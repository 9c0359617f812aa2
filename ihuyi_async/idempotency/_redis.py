"""RedisKeyStore: idempotency keys shared by every worker and host using one Redis.

Each operation is one round trip of a Lua script (``claim.lua``, ``settle.lua``,
read with :mod:`importlib.resources`); leases run on the Redis server's clock
(``TIME``), so workers' clocks do not matter. Redis failures become
:class:`~ihuyi_async.KeyStoreUnavailableError` here and nowhere else: the client
then fails closed (nothing is sent), as the limiter does.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from .._exceptions import KeyStoreUnavailableError
from ._store import DEFAULT_LEASE, DEFAULT_TTL, LOST, Claim, KeyStore, _check_times

__all__ = ["RedisKeyStore"]


class _Script:
    __slots__ = ("sha", "source")

    def __init__(self, name: str) -> None:
        self.source = resources.files(__package__).joinpath(f"{name}.lua").read_text("utf-8")
        self.sha = hashlib.sha1(self.source.encode("utf-8")).hexdigest()


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
            import redis.exceptions as redis_exceptions
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
        self._claim = _Script("claim")
        self._settle = _Script("settle")
        self._no_script = redis_exceptions.NoScriptError
        self._redis_error = redis_exceptions.RedisError

    def _key(self, key: str) -> str:
        return f"{self.prefix}{{{key}}}"

    async def _eval(self, script: _Script, key: str, *args: str) -> Any:
        try:
            try:
                return await self._client.evalsha(script.sha, 1, self._key(key), *args)
            except self._no_script:
                await self._client.script_load(script.source)
                return await self._client.evalsha(script.sha, 1, self._key(key), *args)
        except (self._redis_error, OSError) as exc:
            raise KeyStoreUnavailableError(
                f"the idempotency key store (Redis) failed: {type(exc).__name__}: {exc}"
            ) from exc

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

    async def release(self, key: str, owner: str) -> None:
        await self._eval(self._settle, key, owner, "", str(round(self.ttl * 1000)))

    def __repr__(self) -> str:
        return f"RedisKeyStore(prefix={self.prefix!r}, ttl={self.ttl:g}, lease={self.lease:g})"
