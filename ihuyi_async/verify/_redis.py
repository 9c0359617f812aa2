"""RedisVerifyStore: pending codes shared by every worker and host using one Redis.

``start``, ``check`` and ``rollback`` are one round trip each, a Lua script
(``start.lua``, ``check.lua``, ``rollback.lua``, read with :mod:`importlib.resources`)
run with EVALSHA (loaded again on NOSCRIPT). Redis failures become
:class:`~ihuyi_async.verify.VerificationUnavailableError` here and nowhere else:
the verifier then fails closed (nothing sent, nothing approved).
"""

from __future__ import annotations

import secrets
from typing import Any

from .._redis_scripts import Script, run
from ._models import VerificationUnavailableError
from ._store import CheckAnswer, Issued, Policy, TooSoon, VerifyStore

__all__ = ["RedisVerifyStore"]

_STATUSES = ("approved", "wrong", "expired", "too_many_attempts", "not_found")


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class RedisVerifyStore(VerifyStore):
    """Pending codes in Redis: one namespace for all workers (the limiter's client will do).

    **Keys.** ``<prefix>{<keyed hash of the number>}``: a hash of the code hashes,
    wrong guesses, sends, last send and expiry; the braces are a hash tag, so every
    script touches one slot and a Redis Cluster works. Each record expires one
    lifetime after it stops mattering. ``<prefix>secret`` holds the generated hashing
    key when the :class:`~ihuyi_async.verify.Verifier` is given none (set once, with
    ``SET NX``, shared by all workers; pass your own ``secret`` to keep it out of Redis).

    :param client: a ``redis.asyncio.Redis`` or ``RedisCluster`` (yours: never closed here).
    :param prefix: prepended to every key; no braces.
    """

    def __init__(self, client: Any, *, prefix: str = "ihuyi:verify:") -> None:
        try:
            import redis.exceptions as redis_exceptions
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise ImportError(
                "RedisVerifyStore needs the 'redis' package: pip install 'ihuyi-async[redis]'"
            ) from exc
        if "{" in prefix or "}" in prefix:
            raise ValueError("the key prefix must not contain '{' or '}'")
        self._client = client
        self.prefix = prefix
        self._start = Script(__package__, "start")
        self._check = Script(__package__, "check")
        self._rollback = Script(__package__, "rollback")
        self._errors = (redis_exceptions.RedisError, OSError)
        self._secret: bytes | None = None

    def key(self, key: str) -> str:
        """The Redis key of one number's record (``key``: the verifier's hash of the number)."""
        return f"{self.prefix}{{{key}}}"

    def _fail(self, exc: BaseException) -> VerificationUnavailableError:
        return VerificationUnavailableError(
            f"the verification store (Redis) failed: {type(exc).__name__}: {exc}"
        )

    async def _eval(self, script: Script, key: str, *args: str) -> Any:
        return await run(
            self._client,
            script,
            (self.key(key),),
            args,
            error=VerificationUnavailableError,
            what="the verification store (Redis)",
        )

    async def secret(self) -> bytes:
        if self._secret is None:
            name = f"{self.prefix}secret"
            try:
                await self._client.set(name, secrets.token_hex(32), nx=True)
                value = await self._client.get(name)
            except self._errors as exc:
                raise self._fail(exc) from exc
            if value is None:
                raise VerificationUnavailableError("the verification store lost its secret")
            self._secret = bytes.fromhex(_text(value))
        return self._secret

    async def start(
        self, key: str, code_hash: str, now_ms: int, policy: Policy
    ) -> Issued | TooSoon:
        out = await self._eval(
            self._start,
            key,
            code_hash,
            str(now_ms),
            str(policy.lifetime_ms),
            str(policy.resend_ms),
            str(policy.max_sends),
            str(policy.max_attempts),
            "1" if policy.keep else "0",
        )
        state = _text(out[0])
        if state == "issued":
            return Issued(int(_text(out[1])), int(_text(out[2])), _text(out[3]))
        if state == "too_soon":
            return TooSoon(int(_text(out[1])), _text(out[2]))
        raise VerificationUnavailableError(f"the verification store answered {state!r}")

    async def rollback(self, key: str, code_hash: str, undo: str) -> None:
        await self._eval(self._rollback, key, code_hash, undo)

    async def check(self, key: str, code_hash: str, now_ms: int, policy: Policy) -> CheckAnswer:
        out = await self._eval(self._check, key, code_hash, str(now_ms), str(policy.max_attempts))
        status = _text(out[0])
        if status not in _STATUSES:
            raise VerificationUnavailableError(f"the verification store answered {status!r}")
        return CheckAnswer(status, int(out[1]))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"RedisVerifyStore(prefix={self.prefix!r})"
