"""``python -m ihuyi_async.testing serve``: the emulator on loopback, for clients in any language.

Prints the chosen port alone on the first line of standard output (so a script
can read it), a human-readable line on standard error, then serves until
interrupted (Ctrl-C or SIGTERM). The emulator runs on the wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from .._clock import SystemClock
from ._emulator import Emulator
from ._http1 import HttpServer
from ._model import DEFAULT_ACCOUNTS
from ._server import _bind, serve

__all__ = ["main"]


def _account(text: str) -> tuple[str, str]:
    account, sep, key = text.partition(":")
    if not sep or not account or not key:
        raise argparse.ArgumentTypeError("expected APIID:APIKEY")
    return account, key


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ihuyi_async.testing",
        description="Tools of the ihuyi-async testing package.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    srv = commands.add_parser("serve", help="serve the ihuyi emulator over HTTP on loopback")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    srv.add_argument(
        "--account",
        type=_account,
        action="append",
        metavar="APIID:APIKEY",
        help=f"an account (repeatable; default {next(iter(DEFAULT_ACCOUNTS))}:"
        f"{next(iter(DEFAULT_ACCOUNTS.values()))})",
    )
    srv.add_argument("--balance", type=int, default=1000, help="messages per account")
    srv.add_argument("--no-limits", action="store_true", help="turn the per-number limits off")
    srv.add_argument("--strict-templates", action="store_true", help="answer 4072 off-template")
    srv.add_argument("--receipt-url", default=None, help="push delivery receipts here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    accounts = dict(args.account) if args.account else dict(DEFAULT_ACCOUNTS)
    emulator = Emulator(
        accounts,
        args.balance,
        clock=SystemClock(),
        limits=not args.no_limits,
        strict_templates=args.strict_templates,
        receipt_url=args.receipt_url,
    )
    sock = _bind(args.host, args.port)
    port = int(sock.getsockname()[1])

    def ready(server: HttpServer) -> None:
        sys.stdout.write(f"{port}\n")
        sys.stdout.flush()
        sys.stderr.write(
            f"ihuyi emulator on http://{args.host}:{port} "
            f"(accounts: {', '.join(accounts)}; Ctrl-C to stop)\n"
        )
        sys.stderr.flush()

    try:
        asyncio.run(serve(emulator, sock, on_ready=ready))
    except KeyboardInterrupt:  # pragma: no cover - interactive
        pass
    finally:
        sock.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
