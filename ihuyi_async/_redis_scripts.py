"""One way to run the package's Lua scripts on Redis: load, EVALSHA, reload, translate.

Owns :class:`Script` (a script's source read from package files with
:mod:`importlib.resources`, optionally behind shared prelude files, and its SHA-1)
and :func:`run` (EVALSHA; on ``NOSCRIPT`` a ``SCRIPT LOAD`` and one retry; any Redis
or socket failure raised as the caller's exception type). Used by the limiter's
:class:`~ihuyi_async.limiter.RedisStore`, the idempotency key store and the push
dedupe store. ``redis`` is imported only when a script first runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

__all__ = ["Script", "read_script", "run"]


def read_script(package: str, name: str, *, prelude: Sequence[str] = ()) -> str:
    """The source of ``<package>/<name>.lua``, after the ``prelude`` files (same folder)."""
    folder = resources.files(package)
    parts = [folder.joinpath(f"{p}.lua").read_text(encoding="utf-8") for p in (*prelude, name)]
    return "\n".join(parts)


class Script:
    """One Lua script of the package: its source and the SHA-1 Redis knows it by."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, package: str, name: str, *, prelude: Sequence[str] = ()) -> None:
        self.name = name
        self.source = read_script(package, name, prelude=prelude)
        self.sha = hashlib.sha1(self.source.encode("utf-8")).hexdigest()

    def __repr__(self) -> str:
        return f"Script({self.name!r}, sha={self.sha[:12]!r})"


async def run(
    client: Any,
    script: Script,
    keys: Sequence[str],
    args: Sequence[str | int | float],
    *,
    error: type[Exception],
    what: str,
) -> Any:
    """EVALSHA ``script`` (loading it on ``NOSCRIPT``); failures raise ``error``.

    :param what: names the store in the error's message (``"the limiter's Redis store"``).
    :raises error: any ``redis.exceptions.RedisError`` or :class:`OSError`, chained.
    """
    from redis.exceptions import NoScriptError, RedisError

    try:
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(script.source)
            return await client.evalsha(script.sha, len(keys), *keys, *args)
    except (RedisError, OSError) as exc:
        raise error(f"{what} failed: {type(exc).__name__}: {exc}") from exc
