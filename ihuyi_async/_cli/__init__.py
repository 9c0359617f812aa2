"""The ``ihuyi-async`` command-line tool (extra ``cli``: typer and rich), and beside it the demo (``_demo``).

Commands: ``send``, ``balance``, ``template add``, ``explain``, ``batch``, ``journal``,
``emulator``, ``demo``. Credentials come from ``--account``/``--api-key`` or
``IHUYI_ACCOUNT``/``IHUYI_API_KEY``; ``IHUYI_BASE_URL``, ``IHUYI_FLAVOUR`` and
``IHUYI_BACKEND`` are read by the client when the options are not given. ``send`` and
``balance`` take ``--product marketing|international|voice-code|voice-notice`` for the
provider's other products, whose credentials and base URL come from their own variables
(``IHUYI_MARKETING_ACCOUNT``, ...).

Exit codes (see :data:`EXIT_CODES`): 0 success; 1 the provider or the library refused
(``batch``: a message failed); 2 usage error or unreadable input (one line on stderr);
3 an outcome is unknown (``batch``/``journal``: something is left to reconcile); 4 the
batch stopped because the provider refused the account; 130 interrupted.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Any, TypeVar

try:
    import typer
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise SystemExit("the ihuyi-async CLI needs the cli extra: pip install 'ihuyi-async[cli]'") from exc

import anyio

from .._batch import BatchProgress, BatchRun, Outcome, find_conflicts
from .._client import IhuyiClient
from .._codes import ACCOUNT_LEVEL_CODES, lookup
from .._codes import explain as explain_code
from .._exceptions import ApiError, DeliveryUnknownError, IhuyiError
from .._journal import UNRESOLVED, Journal, JournalEntry
from .._products import MarketingResult, _ProductClient
from .._redact import mask_mobile
from .._validation import check_kind
from ._products import env_prefix, marketing_report, parse_at, product_client, product_send

__all__ = ["EXIT_CODES", "app", "main"]

#: The exit codes of every command.
EXIT_CODES = {
    0: "success (batch: every message accepted, now or in an earlier run)",
    1: "the provider or the library refused (batch: a message failed; see FILE.failed.csv)",
    2: "usage error, or an input that cannot be read (one line on stderr, nothing sent)",
    3: "an outcome is unknown (batch, journal: messages left to reconcile)",
    4: "batch: stopped because the provider refused the account (credentials, IP, balance...)",
    130: "interrupted (Ctrl-C)",
}

app = typer.Typer(help="ihuyi (互亿无线) SMS from the command line.", no_args_is_help=True, add_completion=False)
template_app = typer.Typer(help="Message templates.", no_args_is_help=True)
app.add_typer(template_app, name="template")
console = Console()
err_console = Console(stderr=True, highlight=False)

T = TypeVar("T")

# The environment is read by the clients (each product from its own variables), not bound here.
Account = Annotated[str | None, typer.Option(
    "--account", help="APIID (default: $IHUYI_ACCOUNT; with --product: $IHUYI_<PRODUCT>_ACCOUNT)")]
ApiKey = Annotated[str | None, typer.Option(
    "--api-key", help="APIKEY (default: $IHUYI_API_KEY; with --product: $IHUYI_<PRODUCT>_API_KEY)",
    show_default=False)]
FlavourOpt = Annotated[str | None, typer.Option(
    "--flavour", help="legacy or json (default: $IHUYI_FLAVOUR, else legacy; voice-notice: legacy)")]
BaseUrl = Annotated[str | None, typer.Option(
    "--base-url", help="scheme://host[:port] (default: $IHUYI_BASE_URL, or $IHUYI_<PRODUCT>_BASE_URL; "
    "voice-notice --flavour json: $IHUYI_VOICE_NOTICE_JSON_BASE_URL)")]
ProductOpt = Annotated[str, typer.Option(
    "--product", help="sms (default), marketing, international, voice-code or voice-notice")]
BackendOpt = Annotated[
    str | None, typer.Option("--backend", help="httpx or aiohttp (default: $IHUYI_BACKEND, else httpx)")
]
JsonOut = Annotated[bool, typer.Option("--json", help="machine-readable output")]


class InputError(Exception):
    """An input file that cannot be used: one line naming the file, the line and the problem."""


def _usage(message: str) -> typer.Exit:
    err_console.print(f"error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        console.print(f"ihuyi-async {__version__}")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="log more (-v info, -vv debug)")] = 0,
    log_level: Annotated[str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING, ERROR")] = None,
) -> None:
    """ihuyi (互亿无线) SMS from the command line."""
    level = logging.WARNING
    if verbose:
        level = logging.INFO if verbose == 1 else logging.DEBUG
    if log_level is not None:
        named = logging.getLevelName(log_level.upper())
        if not isinstance(named, int):
            raise _usage(f"--log-level must be DEBUG, INFO, WARNING or ERROR, not {log_level!r}")
        level = named
    logging.basicConfig(stream=sys.stderr, level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("ihuyi_async").setLevel(level)


def _check_credentials(prefix: str, account: str | None, api_key: str | None) -> None:
    import os

    if not (account if account is not None else os.environ.get(f"{prefix}_ACCOUNT", "")).strip():
        raise _usage(f"no account: pass --account or set {prefix}_ACCOUNT")
    if not (api_key if api_key is not None else os.environ.get(f"{prefix}_API_KEY", "")).strip():
        raise _usage(f"no API key: pass --api-key or set {prefix}_API_KEY")


def _client(
    account: str | None,
    api_key: str | None,
    flavour: str | None,
    base_url: str | None,
    backend: str | None = None,
) -> IhuyiClient:
    _check_credentials("IHUYI", account, api_key)
    try:
        return IhuyiClient(account, api_key, flavour=flavour, base_url=base_url, backend=backend)  # type: ignore[arg-type]
    except (ValueError, TypeError, ImportError) as exc:
        raise _usage(str(exc)) from exc


def _run(factory: Callable[[], Awaitable[T]], as_json: bool, product: str = "sms") -> T:
    try:
        return anyio.run(factory)
    except DeliveryUnknownError as exc:
        _fail(as_json, exc, 3)
    except ApiError as exc:
        _fail(as_json, exc, 1, code=exc.code, hint=_hint(exc.code, product, local=exc.local,
                                                         message=exc.message))
    except IhuyiError as exc:
        _fail(as_json, exc, 1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None
    raise AssertionError("unreachable")  # pragma: no cover


#: Products whose numbers are not the SMS product's: the registry's advice for a bad
#: number ("an 11-digit mainland number") is wrong there.
_NUMBER_HINTS = {
    "international": "Give the number with its country code: +85251234567 or '852 51234567'.",
    "voice-notice": "Use a mainland mobile (1[3-9]xxxxxxxxx) or a landline (0AA-NNNNNNNN).",
}


def _hint(code: int | None, product: str = "sms", *, local: bool = False, message: str = "") -> str:
    """The registry's advice for a provider code, e.g. 'check the APIKEY' for 40502.

    A bad number (406) of a product with its own numbers gets that product's advice when
    the provider answered it, and none when this library refused it (its message already
    says what to do: use IhuyiClient, give the country code, ...). Nor does any other local
    refusal in its own words (``message`` not the registry's text: a bad voice code)."""
    if code is None:
        return ""
    if code == 406 and product in _NUMBER_HINTS:
        return "" if local else _NUMBER_HINTS[product]
    info = lookup(code)
    if local and message and message not in (info.text, info.description):
        return ""
    return info.action if info.known else ""


def _fail(
    as_json: bool, exc: Exception, status: int, code: int | None = None, hint: str | None = None
) -> None:
    hint = _hint(code) if hint is None else hint
    if as_json:
        console.print_json(json.dumps({"ok": False, "error": type(exc).__name__, "code": code,
                                       "message": str(exc), "hint": hint or None}, ensure_ascii=False))
    else:
        err_console.print(f"{type(exc).__name__}: {exc}" + (f" (hint: {hint})" if hint else ""), markup=False)
    raise typer.Exit(status)


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    if as_json:
        console.print_json(json.dumps(data, ensure_ascii=False))
    else:
        console.print(text, markup=False, highlight=False)  # "[auth]" is text, not a style


def _any_client(
    product: str,
    account: str | None,
    api_key: str | None,
    flavour: str | None,
    base_url: str | None,
    backend: str | None,
    chunk_size: int | None = None,
) -> IhuyiClient | _ProductClient:
    """The client of ``--product``: :class:`IhuyiClient` for ``sms``, else the product's."""
    try:
        prefix = env_prefix(product)
    except ValueError as exc:
        raise _usage(str(exc)) from None
    if product == "sms":
        if chunk_size is not None:
            raise _usage("--chunk-size applies to --product marketing")
        return _client(account, api_key, flavour, base_url, backend)
    _check_credentials(prefix, account, api_key)
    try:
        return product_client(product, account, api_key, flavour=flavour, base_url=base_url,
                              backend=backend, chunk_size=chunk_size)
    except (ValueError, TypeError, ImportError) as exc:
        raise _usage(str(exc)) from exc


@app.command()
def send(
    mobile: Annotated[str, typer.Argument(help="the number (marketing: several, comma-separated)")],
    content: Annotated[str, typer.Argument(
        help="the text (voice-code: the code; voice-notice --template-id: the variables, |-joined)")],
    account: Account = None,
    api_key: ApiKey = None,
    product: ProductOpt = "sms",
    flavour: FlavourOpt = None,
    base_url: BaseUrl = None,
    backend: BackendOpt = None,
    kind: Annotated[str | None, typer.Option(help="verification or notification (sms)")] = None,
    at: Annotated[str | None, typer.Option(
        help="marketing: a scheduled send, ISO time ('2026-03-01 10:00' is China time)")] = None,
    chunk_size: Annotated[int | None, typer.Option(min=1, help="marketing: numbers per request")] = None,
    template_id: Annotated[int | None, typer.Option(
        help="voice-notice --flavour json: the template; CONTENT holds its variables")] = None,
    as_json: JsonOut = False,
) -> None:
    """Send one message (marketing: one text to several numbers)."""
    if product != "sms" and kind is not None:
        raise _usage("--kind applies to the SMS product (a voice code counts as a verification)")
    if product == "sms" and (at is not None or template_id is not None):
        raise _usage("--at and --template-id apply to --product marketing and voice-notice")
    client = _any_client(product, account, api_key, flavour, base_url, backend, chunk_size)
    try:
        if isinstance(client, IhuyiClient):
            go = _sms_send(client, mobile, content, check_kind(kind))
        else:
            go = product_send(client, mobile, content, template_id=template_id, at=parse_at(at))
        sent = _run(go, as_json, product)
    except (TypeError, ValueError) as exc:  # e.g. an unknown kind, a past --at
        raise _usage(str(exc)) from exc
    if isinstance(sent, MarketingResult):
        data, text, status = marketing_report(sent)
        _emit(as_json, data, text)
        raise typer.Exit(status)
    _emit(as_json, {"ok": True, "smsid": sent.smsid, "segments": sent.segments},
          f"accepted: smsid {sent.smsid} ({sent.segments} segment(s))")


def _sms_send(client: IhuyiClient, mobile: str, content: str, kind: Any) -> Callable[[], Awaitable[Any]]:
    async def go() -> Any:
        async with client:
            return await client.send(mobile, content, kind=kind)

    return go


@app.command()
def balance(
    account: Account = None,
    api_key: ApiKey = None,
    product: ProductOpt = "sms",
    flavour: FlavourOpt = None,
    base_url: BaseUrl = None,
    backend: BackendOpt = None,
    as_json: JsonOut = False,
) -> None:
    """Messages left on the account (--product: on that product's account)."""
    client = _any_client(product, account, api_key, flavour, base_url, backend)

    async def go() -> Any:
        async with client:
            return await client.balance()

    bal = _run(go, as_json)
    _emit(as_json, {"ok": True, "num": bal.num}, f"{bal.num} messages left")


@template_app.command("add")
def template_add(
    content: str,
    account: Account = None,
    api_key: ApiKey = None,
    base_url: BaseUrl = None,
    backend: BackendOpt = None,
    as_json: JsonOut = False,
) -> None:
    """Submit a template for review (【变量】 marks each variable)."""
    client = _client(account, api_key, "legacy", base_url, backend)

    async def go() -> Any:
        async with client:
            return await client.add_template(content)

    tpl = _run(go, as_json)
    _emit(as_json, {"ok": True, "template_id": tpl.template_id}, f"submitted: template {tpl.template_id}")


@app.command()
def explain(code: int, as_json: JsonOut = False) -> None:
    """What a result code means and what to do."""
    info = lookup(code)
    _emit(as_json, {"code": code, "category": info.category, "description": info.description,
                    "texts": list(info.texts), "action": info.action, "retryable": info.retryable,
                    "permanent_for_recipient": info.permanent_for_recipient,
                    "account_level": info.account_level, "known": info.known},
          explain_code(code))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def emulator(ctx: typer.Context) -> None:
    """Serve the testing emulator on 127.0.0.1 until interrupted (options: emulator --help).

    The same command, options and defaults as ``python -m ihuyi_async.testing serve``.
    """
    from ..testing._command import serve_main

    raise typer.Exit(serve_main(ctx.args, prog="ihuyi-async emulator"))


@app.command()
def demo(
    messages: Annotated[int, typer.Option(help="messages to send")] = 2000,
    numbers: Annotated[int, typer.Option(help="distinct recipients")] = 500,
    as_json: JsonOut = False,
) -> None:
    """Send a realistic load to the built-in emulator (no credentials, no internet)."""
    from ._demo import format_summary, run_demo

    with _progress_bar("demo", messages, as_json) as tick:
        summary = anyio.run(lambda: run_demo(messages=messages, numbers=numbers, on_progress=tick))
    if as_json:
        console.print_json(json.dumps(summary.as_dict(), ensure_ascii=False))
    else:
        console.print(format_summary(summary), markup=False, highlight=False)


@contextmanager
def _progress_bar(title: str, total: int, hidden: bool) -> Iterator[Callable[[BatchProgress], None]]:
    """A live bar on stderr (rate, ETA, counts by outcome); yields the ``on_progress`` hook."""
    with Progress(
        TextColumn(f"[bold]{title}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.0f} msg/s"), TimeRemainingColumn(),
        TextColumn("{task.fields[counts]}"), console=err_console, disable=hidden,
    ) as progress:
        task = progress.add_task(title, total=total, rate=0.0, counts="")

        def tick(p: BatchProgress) -> None:
            counts = " ".join(f"{k}={v}" for k, v in sorted(p.counts.items()))
            progress.update(task, completed=p.done, rate=p.rate, counts=counts)

        yield tick


# ----------------------------------------------------------------------------- input files

_JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
_CHUNK = 1 << 20


def _detect_encoding(path: Path, forced: str | None) -> str:
    """UTF-8 (with or without BOM), else GB18030 (GBK, what Excel saves on a Chinese
    Windows); ``forced`` wins. One pass over the bytes, never the whole file in memory.

    :raises InputError: empty, binary, or text in neither encoding.
    """
    if forced is not None:
        try:
            return codecs.lookup(forced).name
        except LookupError:
            raise InputError(f"--encoding: unknown encoding {forced!r}") from None
    failed_at: dict[str, tuple[int, int]] = {}
    decoders = {name: codecs.getincrementaldecoder(name)() for name in ("utf-8", "gb18030")}
    line = 1
    size = 0
    blank = True
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            if b"\0" in chunk:
                at = line + chunk[: chunk.index(b"\0")].count(b"\n")
                raise InputError(f"{path}: line {at}: a binary file (NUL byte), not CSV or JSON lines")
            blank = blank and not chunk.strip()
            for name, decoder in list(decoders.items()):
                bad = _undecodable_at(decoder, chunk)
                if bad is not None:
                    failed_at[name] = (line + chunk[:bad].count(b"\n"), chunk[bad])
                    del decoders[name]
            line += chunk.count(b"\n")
            size += len(chunk)
    for name, decoder in list(decoders.items()):
        if _undecodable_at(decoder, b"", final=True) is not None:
            failed_at[name] = (line, 0)
            del decoders[name]
    if size == 0 or blank:
        raise InputError(f"{path}: the file is empty")
    if "utf-8" in decoders:
        return "utf-8-sig"
    if "gb18030" in decoders:
        return "gb18030"
    at, byte = failed_at["utf-8"]
    raise InputError(
        f"{path}: line {at}: not UTF-8 or GB18030 text (byte 0x{byte:02x}); pass --encoding if it is another"
    )


def _undecodable_at(decoder: codecs.IncrementalDecoder, chunk: bytes, final: bool = False) -> int | None:
    """Where ``chunk`` stops decoding (its offset), or ``None``."""
    try:
        decoder.decode(chunk, final)
    except UnicodeDecodeError as exc:
        return min(exc.start, max(len(chunk) - 1, 0))
    return None


class _Source:
    """The rows of a CSV (header with mobile, …) or JSON-lines file, read lazily with their
    line numbers; rows that cannot be read are collected in ``bad``."""

    def __init__(self, path: Path, encoding: str) -> None:
        self.path = path
        self.encoding = encoding
        self.json = path.suffix.lower() in _JSON_SUFFIXES
        self.bad: list[tuple[int, str, dict[str, Any]]] = []
        self.fieldnames: list[str] = []
        self._line = 0

    def check_header(self) -> None:
        """:raises InputError: a CSV without a header naming a ``mobile`` column."""
        if self.json:
            return
        with self._open() as fh:
            try:
                header = next(csv.reader(fh), None)
            except (csv.Error, UnicodeDecodeError) as exc:
                raise InputError(f"{self.path}: line 1: {exc}") from None
        if not header or not any(h.strip() for h in header):
            raise InputError(f"{self.path}: line 1: no CSV header (the first line names the columns)")
        names = [h.strip() for h in header]
        if "mobile" not in names:
            shown = ", ".join(repr(n) for n in names[:8]) + (", …" if len(names) > 8 else "")
            raise InputError(f"{self.path}: line 1: the CSV header needs a 'mobile' column (found {shown})")
        self.fieldnames = names

    def _open(self) -> IO[str]:
        return self.path.open("r", encoding=self.encoding, newline="")

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every readable row as a message dict (``line`` and the original ``_row`` kept).

        :raises InputError: the text cannot be decoded or parsed as CSV at some line.
        """
        try:
            with self._open() as fh:
                yield from (self._json_rows(fh) if self.json else self._csv_rows(fh))
        except UnicodeDecodeError as exc:
            raise InputError(f"{self.path}: line {self._line + 1}: not valid {self.encoding} text ({exc.reason})") from None
        except csv.Error as exc:
            raise InputError(f"{self.path}: line {self._line}: {exc}") from None

    def _json_rows(self, fh: IO[str]) -> Iterator[dict[str, Any]]:
        for number, text in enumerate(fh, start=1):
            self._line = number
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except ValueError:
                self.bad.append((number, "not valid JSON", {}))
                continue
            if not isinstance(row, dict):
                self.bad.append((number, "not a JSON object", {}))
                continue
            original = {k: "|".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()}
            yield _message_row(row, number, original)

    def _csv_rows(self, fh: IO[str]) -> Iterator[dict[str, Any]]:
        reader = csv.reader(fh)
        next(reader, None)
        names = self.fieldnames
        for values in reader:
            self._line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            original = dict(zip(names, values, strict=False))
            if len(values) > len(names):
                self.bad.append((reader.line_num, f"{len(values)} fields, the header names {len(names)}", original))
                continue
            yield _message_row({k: v.strip() for k, v in original.items()}, reader.line_num, original)


def _message_row(row: dict[str, Any], line: int, original: dict[str, Any]) -> dict[str, Any]:
    message = {k: v for k, v in row.items() if k and v not in (None, "")}
    message["line"] = line
    message["_row"] = original  # what the failed-rows file gives back, unchanged
    return message


def _open_source(path: Path, encoding: str | None) -> _Source:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: a directory, not a file")
    source = _Source(path, _detect_encoding(path, encoding))
    source.check_header()
    return source


# ----------------------------------------------------------------------------- batch


class _Tally:
    """What the batch command saw: counts by status and by status and code, failed rows."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()
        self.failures: list[dict[str, Any]] = []
        self.account_code: int | None = None

    def add(self, outcome: Outcome, stop_on: frozenset[int]) -> None:
        self.counts[outcome.status] += 1
        code = getattr(outcome.error, "code", None)
        if isinstance(code, int) and outcome.status != "accepted":
            self.codes[f"{outcome.status} {code}"] += 1
            if outcome.status == "rejected" and code in stop_on and self.account_code is None:
                self.account_code = code
        if not outcome.ok and not outcome.skipped and outcome.status != "unknown":
            self.failures.append(_failure_row(outcome))

    def add_row(self, row: dict[str, Any], status: str, reason: str) -> None:
        self.counts[status] += 1
        original = row.get("_row") or {}
        self.failures.append({**original, "line": row.get("line", ""), "status": status, "code": "", "reason": reason})

    @property
    def unresolved(self) -> int:
        return self.counts["unknown"] + self.counts["already_unknown"]


def _failure_row(outcome: Outcome) -> dict[str, Any]:
    message = outcome.message
    meta: dict[str, Any] = {}
    if message is not None:
        meta = dict(message.metadata or {})
    elif isinstance(outcome.item, dict):
        meta = outcome.item
    original = meta.get("_row") or {}
    code = getattr(outcome.error, "code", None)
    return {**original, "line": meta.get("line", ""), "status": outcome.status,
            "code": code if isinstance(code, int) else "", "reason": str(outcome.error or "")}


def _count_the_rest(
    tally: _Tally, run: BatchRun | None, rows: Iterator[dict[str, Any]], state: dict[str, Any], source: _Source
) -> str | None:
    """Count what the run's outcomes do not: rows aborted, never read, or unreadable; the
    run's stop reason."""
    if state["aborted_on_wire"]:
        tally.counts["unknown"] += state["aborted_on_wire"]
        tally.codes["unknown (aborted on the wire)"] += state["aborted_on_wire"]
    stop_reason = run.stop_reason if run is not None else "interrupted"
    if run is not None and stop_reason is not None:
        # the run stopped before the end of the file: what it never read was not sent
        reason = f"not sent: the run stopped ({stop_reason})"
        try:
            for row in rows:
                tally.add_row(row, "not_sent", reason)
        except InputError:
            pass
    if state["aborted_waiting"]:  # aborted while waiting for a turn: never written
        tally.counts["not_sent"] += state["aborted_waiting"]
    for line, reason, original in source.bad:
        tally.counts["bad_row"] += 1
        tally.failures.append({**original, "line": line, "status": "bad_row", "code": "", "reason": reason})
    return stop_reason


def _require_ids(source: _Source) -> None:
    """:raises InputError: a row without an ``id`` (``--idempotency-keys`` keys rows by it)."""
    for row in source.rows():
        if row.get("id") in (None, ""):
            raise InputError(f"{source.path}: line {row.get('line', '?')}: no id (--idempotency-keys needs one on every row)")


def _parse_stop_on(text: str) -> frozenset[int]:
    if text == "account":
        return ACCOUNT_LEVEL_CODES
    if text == "never":
        return frozenset()
    try:
        return frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise _usage(f"--stop-on takes 'account', 'never' or codes like 4051,40502, not {text!r}") from None


@app.command()
def batch(
    file: Annotated[Path, typer.Argument(help="CSV or JSON lines", show_default=False)],
    account: Account = None,
    api_key: ApiKey = None,
    flavour: FlavourOpt = None,
    base_url: BaseUrl = None,
    backend: BackendOpt = None,
    concurrency: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    journal: Annotated[Path | None, typer.Option(help="resumable outcome log (JSON lines)")] = None,
    failed_out: Annotated[Path | None, typer.Option(help="CSV of failed rows (default FILE.failed.csv)")] = None,
    encoding: Annotated[str | None, typer.Option(help="force the file's encoding (default: UTF-8 or GB18030, detected)")] = None,
    on_conflict: Annotated[str, typer.Option(help="an id whose row changed since the journal: stop, skip or send")] = "stop",
    stop_on: Annotated[str, typer.Option(help="stop at the first of these codes: account, never, or e.g. 4051,40502")] = "account",
    resend_unknown: Annotated[bool, typer.Option("--resend-unknown", help="send again what the journal left unknown (CAN DOUBLE-SEND)")] = False,
    idempotency_keys: Annotated[bool, typer.Option("--idempotency-keys", help="each row's id is its idempotency key (every row needs an id)")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only validate, count segments and cost")] = False,
    price: Annotated[float, typer.Option(help="price per segment, for --dry-run")] = 0.05,
    as_json: JsonOut = False,
) -> None:
    """Send every row of FILE (columns: mobile, content or template_id + variables, id, kind).

    The first Ctrl-C stops taking new rows and lets requests on the wire finish; a second
    one aborts (their outcomes are then unknown: see the journal).
    """
    if on_conflict not in ("stop", "skip", "send"):
        raise _usage(f"--on-conflict takes stop, skip or send, not {on_conflict!r}")
    codes = _parse_stop_on(stop_on)
    try:
        source = _open_source(file, encoding)
        if dry_run:
            _dry_run(source, flavour, price, as_json)
            return
        total = sum(1 for _ in source.rows())
        if idempotency_keys:
            _require_ids(source)
        book = Journal(journal) if journal is not None else None
        if book is not None and on_conflict == "stop":
            _refuse_conflicts(source, book)
        source.bad.clear()
    except InputError as exc:
        raise _usage(str(exc)) from None
    except KeyboardInterrupt:  # while reading the file: nothing was sent
        err_console.print("interrupted before sending")
        raise typer.Exit(130) from None
    client = _client(account, api_key, flavour, base_url, backend)
    failed_path = failed_out or file.with_name(file.name + ".failed.csv")
    tally = _Tally()
    rows = source.rows()
    state: dict[str, Any] = {"interrupts": 0, "aborted_on_wire": 0, "aborted_waiting": 0}

    async def go() -> BatchRun:
        async with client:
            with _progress_bar("sending", total, as_json) as tick:
                run = client.send_many(rows, concurrency=concurrency, on_progress=tick, journal=book,
                                       on_conflict=on_conflict, stop_on=codes,  # type: ignore[arg-type]
                                       resend_unknown=resend_unknown, idempotency_keys=idempotency_keys)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_watch_interrupts, run, tg.cancel_scope, state)
                    async with run as outcomes:
                        async for outcome in outcomes:
                            tally.add(outcome, codes)
                    tg.cancel_scope.cancel()
            return run

    try:
        run = anyio.run(go)
    except InputError as exc:
        raise _usage(str(exc)) from None
    except KeyboardInterrupt:  # before the signal watcher ran, or after it was gone
        state["interrupts"] = max(state["interrupts"], 1)
        run = None
    interrupted = state["interrupts"] > 0
    stop_reason = _count_the_rest(tally, run, rows, state, source)
    if tally.failures:
        _write_failures(failed_path, source.fieldnames, tally.failures)
    _summary(tally, failed_path if tally.failures else None, as_json, interrupted, stop_reason, journal)
    if interrupted:
        raise typer.Exit(130)
    if tally.account_code is not None and stop_reason is not None:
        raise typer.Exit(4)
    if tally.unresolved:
        raise typer.Exit(3)
    raise typer.Exit(1 if tally.failures else 0)


async def _watch_interrupts(run: BatchRun, abort: anyio.CancelScope, state: dict[str, Any]) -> None:
    """First Ctrl-C (or SIGTERM): stop gracefully. Second: abort what is on the wire.

    Where the event loop cannot take signal handlers (Windows), Ctrl-C interrupts at once.
    """
    if sys.platform == "win32":  # pragma: no cover - no signal handlers on its event loops
        return
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            state["interrupts"] += 1
            if state["interrupts"] == 1:
                run.stop("interrupted")
                err_console.print(
                    f"stopping: no new messages; waiting for {run.progress.on_wire} on the wire "
                    "(Ctrl-C again to abort them: their outcome would be unknown)"
                )
                continue
            state["aborted_on_wire"] = run.progress.on_wire
            state["aborted_waiting"] = run.progress.in_flight - run.progress.on_wire
            err_console.print("aborting: requests on the wire are cancelled; reconcile with the journal")
            abort.cancel()
            return


def _refuse_conflicts(source: _Source, book: Journal) -> None:
    conflicts = find_conflicts(source.rows(), book)
    if not conflicts:
        return
    for _index, message, entry in conflicts[:20]:
        line = (message.metadata or {}).get("line", "?")
        before = f" (journaled from line {entry.line})" if entry.line is not None else ""
        err_console.print(
            f"{source.path}: line {line}: id {message.id!r} names a different message than the journal"
            f"{before}", markup=False,
        )
    more = f" ({len(conflicts) - 20} more)" if len(conflicts) > 20 else ""
    raise InputError(
        f"{source.path}: {len(conflicts)} row(s) conflict with the journal {book.path}{more}: nothing sent; "
        "restore those rows, give them new ids, or pass --on-conflict skip|send"
    )


def _write_failures(path: Path, fieldnames: list[str], rows: list[dict[str, Any]]) -> None:
    """The failed rows as they were read, plus where and why: line, status, code, reason."""
    extra = ["line", "status", "code", "reason"]
    columns = [n for n in fieldnames if n not in extra]
    seen = set(columns)
    for row in rows:  # JSON lines, or CSV rows wider than the header
        for key in row:
            if isinstance(key, str) and key not in seen and key not in extra:
                seen.add(key)
                columns.append(key)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns + extra, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def _summary(tally: _Tally, failed_path: Path | None, as_json: bool, interrupted: bool,
             stop_reason: str | None, journal: Path | None) -> None:
    counts, failures = tally.counts, tally.failures
    if as_json:
        console.print_json(json.dumps({
            "ok": not failures and not interrupted and not tally.unresolved,
            "interrupted": interrupted, "stopped": stop_reason, "counts": dict(counts),
            "codes": dict(tally.codes), "unresolved": tally.unresolved,
            "failed": [{k: r.get(k) for k in ("line", "status", "code", "reason")} for r in failures],
            "failed_csv": str(failed_path) if failed_path else None,
        }, ensure_ascii=False, default=str))
        return
    title = "batch summary"
    if interrupted:
        title += " (interrupted: rerun with the same --journal)"
    table = Table(title=title)
    table.add_column("outcome")
    table.add_column("messages", justify="right")
    for status, n in sorted(counts.items()):
        table.add_row(status, str(n))
    for status_code, n in sorted(tally.codes.items()):
        table.add_row(f"  {status_code}", str(n))
    console.print(table)
    if stop_reason is not None and not interrupted:
        console.print(f"stopped: {stop_reason}; the rest was not sent (rerun with the same --journal)", markup=False)
    if tally.account_code is not None:
        hint = _hint(tally.account_code)
        if hint:
            console.print(f"hint for {tally.account_code}: {hint}", markup=False)
    for row in failures[:20]:
        console.print(f"line {row.get('line', '?')}: {row.get('status')} {row.get('reason', '')}", markup=False)
    if len(failures) > 20:
        console.print(f"… {len(failures) - 20} more failed rows")
    if failed_path is not None:
        console.print(f"failed rows written to {failed_path}", markup=False)
    if tally.unresolved:
        where = f"ihuyi-async journal {journal}" if journal is not None else "your delivery receipts"
        console.print(f"{tally.unresolved} message(s) of unknown outcome: do not resend blindly; reconcile with {where}", markup=False)


# ----------------------------------------------------------------------------- dry run


def _dry_run(source: _Source, flavour: str | None, price: float, as_json: bool) -> None:
    import os

    from .._config import FLAVOURS
    from .._validation import count_segments, normalize_mobile, validate_content

    name = flavour or os.environ.get("IHUYI_FLAVOUR") or "legacy"
    limit = FLAVOURS[name].max_content if name in FLAVOURS else 300
    valid = segments = 0
    problems: list[tuple[int, str]] = []
    per_number: Counter[str] = Counter()
    per_number_verification: Counter[str] = Counter()
    refused_daily: list[tuple[int, str]] = []
    for row in source.rows():
        line = int(row["line"])
        try:
            mobile = normalize_mobile(str(row.get("mobile", "")))
            content = row.get("content")
            if content is None and row.get("template_id") is None:
                raise ValueError("neither content nor template_id")
            if content is not None:
                validate_content(str(content), max_length=limit, mobile=mobile)
                segments += count_segments(str(content))
            else:
                segments += 1
        except (ApiError, ValueError, TypeError) as exc:
            problems.append((line, str(exc)))
            continue
        per_number[mobile] += 1
        if row.get("kind") == "verification":
            per_number_verification[mobile] += 1
            if per_number_verification[mobile] > 5:
                refused_daily.append((line, f"{mask_mobile(mobile)}: 6th verification code today: would be refused (4085)"))
                continue
        if per_number[mobile] > 5:
            refused_daily.append((line, f"{mask_mobile(mobile)}: {per_number[mobile]}th message today: would be refused (4082)"))
            continue
        valid += 1
    problems += [(n, e, ) for n, e, _ in source.bad]
    problems.sort()
    shown = 50
    data = {"valid": valid, "invalid": len(problems), "refused_daily": len(refused_daily), "segments": segments,
            "cost": round(segments * price, 4),
            "invalid_rows": [{"line": n, "error": e} for n, e in problems],
            "refused_rows": [{"line": n, "error": e} for n, e in refused_daily]}
    if as_json:
        console.print_json(json.dumps(data, ensure_ascii=False))
    else:
        console.print(f"{valid} valid, {len(problems)} invalid, {len(refused_daily)} refused by the daily limits, "
                      f"{segments} segments, cost ≈ {data['cost']}", markup=False)
        for line, reason in (problems + refused_daily)[:shown]:
            console.print(f"line {line}: {reason}", markup=False)
        rest = len(problems) + len(refused_daily) - shown
        if rest > 0:
            console.print(f"… {rest} more (--json lists them all)")
    raise typer.Exit(1 if problems or refused_daily else 0)


# ----------------------------------------------------------------------------- journal


@app.command("journal")
def journal_command(
    file: Annotated[Path, typer.Argument(help="a batch journal (JSON lines)", show_default=False)],
    output: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    receipts: Annotated[Path | None, typer.Option(help="delivery receipts (JSON lines or CSV: mobilephone, smsid)")] = None,
    mark_accepted: Annotated[list[str] | None, typer.Option("--mark-accepted", help="KEY: it arrived; never resend (repeatable)")] = None,
    mark_not_sent: Annotated[list[str] | None, typer.Option("--mark-not-sent", help="KEY: it did not arrive; the next run sends it (repeatable)")] = None,
) -> None:
    """Summarise a batch journal, list its unresolved messages, and resolve them.

    Exit code 0 when nothing is left unresolved, 3 otherwise.
    """
    if output not in ("table", "csv", "json"):
        raise _usage(f"--format takes table, csv or json, not {output!r}")
    if not file.is_file():
        raise _usage(f"{file}: no such journal")
    book = Journal(file)
    try:
        for key in mark_accepted or ():
            _resolve(book, key, "accepted")
        for key in mark_not_sent or ():
            _resolve(book, key, "not_sent")
        resolved = _resolve_from_receipts(book, receipts) if receipts is not None else 0
    finally:
        book.close()
    unresolved = book.unresolved()
    counts = book.counts()
    if output == "json":
        console.print_json(json.dumps({"counts": counts, "unresolved": [e.as_dict() for e in unresolved],
                                       "resolved_from_receipts": resolved, "corrupt_lines": book.corrupt_lines},
                                      ensure_ascii=False))
    elif output == "csv":
        writer = csv.writer(sys.stdout)
        columns = ["id", "status", "line", "mobile", "digest", "reason", "at"]
        writer.writerow(columns)
        for entry in unresolved:
            writer.writerow(["" if getattr(entry, c) is None else getattr(entry, c) for c in columns])
    else:
        summary = ", ".join(f"{status} {n}" for status, n in sorted(counts.items())) or "empty"
        console.print(f"{file}: {summary}" + (f"; {resolved} resolved from receipts" if receipts else ""), markup=False)
        if unresolved:
            table = Table(title=f"{len(unresolved)} unresolved (outcome unknown: do not resend blindly)")
            for column in ("id", "line", "mobile", "status", "reason"):
                table.add_column(column)
            for entry in unresolved:
                table.add_row(entry.id, str(entry.line or ""), entry.mobile or "", entry.status, entry.reason or "")
            console.print(table)
            console.print("resolve: --receipts FILE, --mark-accepted KEY, --mark-not-sent KEY; "
                          "or batch --resend-unknown (can double-send)")
    raise typer.Exit(3 if unresolved else 0)


def _resolve(book: Journal, key: str, status: str) -> None:
    entry = book.previous(key)
    if entry is None:
        raise _usage(f"{book.path}: no entry {key!r}")
    if entry.status not in UNRESOLVED:
        raise _usage(f"{book.path}: entry {key!r} is {entry.status}, not unresolved")
    book.resolve(key, status, by="user")


def _receipt_rows(path: Path) -> Iterator[dict[str, Any]]:
    try:
        source = _Source(path, _detect_encoding(path, None))
        if not source.json:
            with source._open() as fh:
                yield from csv.DictReader(fh)
            return
        yield from source.rows()
    except (InputError, csv.Error) as exc:
        raise _usage(str(exc)) from None


def _resolve_from_receipts(book: Journal, path: Path) -> int:
    """An unresolved entry is resolved ``accepted`` by a receipt only when the match is
    unique: one unresolved entry with that masked number, one receipt for it whose smsid
    the journal does not hold already. Anything ambiguous stays listed."""
    if not path.is_file():
        raise _usage(f"{path}: no such receipts file")
    known = {e.smsid for e in book.entries() if e.smsid}
    by_mask: dict[str, list[JournalEntry]] = {}
    for entry in book.unresolved():
        if entry.mobile:
            by_mask.setdefault(entry.mobile, []).append(entry)
    receipts: dict[str, list[str]] = {}
    for row in _receipt_rows(path):
        mobile = str(row.get("mobilephone") or row.get("mobile") or "")
        smsid = str(row.get("smsid") or "")
        if mobile and smsid and smsid not in known:
            receipts.setdefault(mask_mobile(mobile), []).append(smsid)
    resolved = 0
    for mask, entries in by_mask.items():
        ids = sorted(set(receipts.get(mask, ())))
        if len(entries) == 1 and len(ids) == 1:
            book.resolve(entries[0].id, "accepted", by="receipt", smsid=ids[0])
            resolved += 1
    return resolved


def main() -> None:
    """Entry point of the ``ihuyi-async`` script: every failure a user can cause is one line."""
    try:
        app()
    except OSError as exc:  # e.g. a busy port, a full disk, a file that vanished
        err_console.print(f"error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), markup=False)
        raise SystemExit(2) from None
