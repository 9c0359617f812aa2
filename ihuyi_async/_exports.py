"""Public names: make a package's exported classes say they live where users import them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["publish"]


def publish(package: str, namespace: Mapping[str, object], names: Iterable[str]) -> None:
    """Set ``__module__`` to ``package`` on each exported class defined in its private modules.

    So reprs, tracebacks and docs say ``ihuyi_async.limiter.Rule``, not
    ``ihuyi_async.limiter._rules.Rule`` (as httpx does). Classes re-exported from
    elsewhere keep their own home.
    """
    private = package + "._"
    for name in names:
        obj = namespace[name]
        if isinstance(obj, type) and obj.__module__.startswith(private):
            obj.__module__ = package
