"""The ``serve`` command: the emulator on loopback, for clients in any language.

Owns :func:`serve_main`, which both ``python -m ihuyi_async.testing serve`` and
``ihuyi-async emulator`` run, so they take the same options with the same defaults.
Prints the chosen port alone on the first line of standard output (so a script can
read it), a human-readable line on standard error, then one line per request on
standard error (time, HTTP method, provider method, masked number, code), and serves
until interrupted (Ctrl-C or SIGTERM). The emulator runs on the wall clock.

Exit status: 0 after an interrupt, 2 for a usage error or an address that cannot be
bound (one line on standard error).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TextIO

from .._clock import SystemClock
from ._emulator import Emulator
from ._http1 import HttpServer
from ._model import CHINA_TZ, DEFAULT_ACCOUNTS, RecordedRequest
from ._server import _bind, serve

__all__ = ["build_parser", "mask", "request_line", "serve_main"]

_FLAVOURS = {"both": ("legacy", "json"), "legacy": ("legacy",), "json": ("json",)}


def _account(text: str) -> tuple[str, str]:
    account, sep, key = text.partition(":")
    if not account or (sep and not key):
        raise argparse.ArgumentTypeError("expected APIID:APIKEY")
    return account, key


def _accounts(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    if not args.account:
        if args.api_key:
            parser.error("--api-key needs --account APIID")
        return dict(DEFAULT_ACCOUNTS)
    accounts = {}
    for account, key in args.account:
        if not key:
            if not args.api_key:
                parser.error(f"--account {account} has no key: give APIID:APIKEY or --api-key")
            key = args.api_key
        accounts[account] = key
    return accounts


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The options of the serve command (shared by both entry points)."""
    default_account, default_key = next(iter(DEFAULT_ACCOUNTS.items()))
    parser = argparse.ArgumentParser(
        prog=prog, description="Serve the ihuyi emulator over HTTP on loopback."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    parser.add_argument(
        "--account",
        type=_account,
        action="append",
        metavar="APIID:APIKEY",
        help=f"an account (repeatable; default {default_account}:{default_key})",
    )
    parser.add_argument(
        "--api-key", default=None, metavar="APIKEY", help="the key of accounts given without one"
    )
    parser.add_argument("--balance", type=int, default=1000, help="messages per account (default 1000)")
    parser.add_argument("--no-limits", action="store_true", help="turn the per-number limits off")
    parser.add_argument("--strict-templates", action="store_true", help="answer 4072 off-template")
    parser.add_argument("--receipt-url", default=None, help="push delivery receipts (and replies) here")
    parser.add_argument(
        "--flavour",
        choices=sorted(_FLAVOURS),
        default="both",
        help="API flavours answered: legacy (webservice/sms.php), json (sms/*.json) or both (default)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    return parser


def mask(mobile: str) -> str:
    """``13800138000`` -> ``138****8000`` (anything short is starred whole)."""
    if len(mobile) >= 7:
        return mobile[:3] + "****" + mobile[-4:]
    return "*" * len(mobile)


def request_line(request: RecordedRequest) -> str:
    """One log line for a recorded call: never the key or the content."""
    when = request.time.astimezone(CHINA_TZ).strftime("%H:%M:%S")
    method = request.method or request.path
    number = mask(request.fields.get("mobile", "").strip()) if request.method == "Submit" else "-"
    if request.code is not None:
        outcome = f"code {request.code}"
    elif request.status is not None:
        outcome = f"HTTP {request.status}"
    else:
        outcome = "no answer"
    fault = f" [fault {request.fault}]" if request.fault else ""
    return f"{when} {request.http_method} {method} {number} {outcome}{fault}"


def _logger(emulator: Emulator, out: TextIO) -> Callable[[], None]:
    lock = threading.Lock()
    seen = 0

    def log() -> None:
        nonlocal seen
        with lock:
            new = emulator.requests_from(seen)
            seen += len(new)
            for request in new:
                out.write(request_line(request) + "\n")
            out.flush()

    return log


def serve_main(argv: Sequence[str] | None = None, *, prog: str = "python -m ihuyi_async.testing serve") -> int:
    """Run the serve command; returns the exit status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    accounts = _accounts(parser, args)
    emulator = Emulator(
        accounts,
        args.balance,
        clock=SystemClock(),
        limits=not args.no_limits,
        strict_templates=args.strict_templates,
        receipt_url=args.receipt_url,
    )
    emulator.flavours = frozenset(_FLAVOURS[args.flavour])
    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        sys.stderr.write(f"error: cannot listen on {args.host}:{args.port}: {reason}\n")
        return 2
    port = int(sock.getsockname()[1])
    if not args.quiet:
        emulator.add_listener(_logger(emulator, sys.stderr))

    def ready(server: HttpServer) -> None:
        sys.stdout.write(f"{port}\n")
        sys.stdout.flush()
        host = f"[{args.host}]" if ":" in args.host else args.host
        sys.stderr.write(
            f"ihuyi emulator on http://{host}:{port} (inbox: http://{host}:{port}/; "
            f"accounts: {', '.join(accounts)}; flavour: {args.flavour}; Ctrl-C to stop)\n"
        )
        sys.stderr.flush()

    try:
        asyncio.run(serve(emulator, sock, on_ready=ready))
    except KeyboardInterrupt:  # pragma: no cover - interactive
        pass
    finally:
        sock.close()
    return 0
