"""Public names: make a package's exported classes say they live where users import them."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import ForwardRef

__all__ = ["publish"]


def publish(package: str, namespace: Mapping[str, object], names: Iterable[str]) -> None:
    """Set ``__module__`` to ``package`` on each exported class defined in its private modules.

    So reprs, tracebacks, pickles and docs say ``ihuyi_async.limiter.Rule``, not
    ``ihuyi_async.limiter._rules.Rule`` (as httpx does). Classes re-exported from
    elsewhere keep their own home.

    Tools look a class's annotations and source up through ``__module__``, so the
    move has two consequences, handled here:

    * a string annotation (``from __future__ import annotations``) names things
      imported in the defining module, not in ``package``: it becomes a
      :class:`typing.ForwardRef` bound to the defining module, which
      :func:`typing.get_type_hints` and pdoc evaluate there (lazily, as before);
    * :func:`inspect.getsource` would search ``package``'s file: it raises
      :class:`OSError` (on Python 3.13+ it would return the wrong lines, so the
      class's ``__firstlineno__`` is dropped). Methods keep their source.
    """
    private = package + "._"
    for name in names:
        obj = namespace[name]
        if isinstance(obj, type) and obj.__module__.startswith(private):
            _bind_annotations(obj, obj.__module__)
            if "__firstlineno__" in vars(obj):  # Python 3.13+
                delattr(obj, "__firstlineno__")
            obj.__module__ = package


def _bind_annotations(cls: type, home: str) -> None:
    """Turn ``cls``'s own string annotations into forward references evaluated in ``home``."""
    own = inspect.get_annotations(cls)  # this class's own, unevaluated
    if not any(isinstance(t, str) for t in own.values()):
        return
    cls.__annotations__ = {attr: _forward(t, home) if isinstance(t, str) else t for attr, t in own.items()}


def _forward(text: str, home: str) -> ForwardRef:
    try:  # is_class: ClassVar[...] is allowed, as in a class body
        return ForwardRef(text, is_argument=False, module=home, is_class=True)
    except TypeError:  # pragma: no cover - Python 3.10.0 has no is_class
        return ForwardRef(text, is_argument=False, module=home)
