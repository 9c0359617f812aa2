"""``python -m ihuyi_async.testing serve``: the emulator on loopback, for clients in any language.

The command itself is :func:`~ihuyi_async.testing._command.serve_main` (shared with
``ihuyi-async emulator``): the port alone on the first line of standard output, then
one line per request on standard error, until interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ._command import serve_main

__all__ = ["main"]

_USAGE = "usage: python -m ihuyi_async.testing serve [options]   (serve --help for the options)\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        sys.stderr.write(_USAGE)
        return 2
    if args[0] in ("-h", "--help"):
        sys.stdout.write(_USAGE)
        return 0
    if args[0] != "serve":
        sys.stderr.write(f"error: unknown command {args[0]!r}\n" + _USAGE)
        return 2
    return serve_main(args[1:])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
