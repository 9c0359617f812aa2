"""The ``ihuyi-async`` command-line tool (extra ``cli``: typer and rich).

Commands: ``send``, ``balance``, ``template add``, ``explain``, ``batch``, ``emulator``, ``demo``.
Credentials come from ``--account``/``--api-key`` or ``IHUYI_ACCOUNT``/``IHUYI_API_KEY``.
Exit codes: 0 success, 1 the provider or the library refused (``batch``: any message
failed), 2 usage error, 3 outcome unknown, 130 interrupted.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

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

from ._batch import BatchProgress, Message, Outcome
from ._client import IhuyiClient
from ._codes import explain as explain_code
from ._exceptions import ApiError, DeliveryUnknownError, IhuyiError

__all__ = ["app", "main"]

app = typer.Typer(help="ihuyi (互亿无线) SMS from the command line.", no_args_is_help=True, add_completion=False)
template_app = typer.Typer(help="Message templates.", no_args_is_help=True)
app.add_typer(template_app, name="template")
console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")

Account = Annotated[str | None, typer.Option("--account", envvar="IHUYI_ACCOUNT", help="APIID")]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar="IHUYI_API_KEY", help="APIKEY", show_default=False)]
Flavour = Annotated[str, typer.Option("--flavour", help="legacy or json")]
BaseUrl = Annotated[str | None, typer.Option("--base-url", help="scheme://host[:port]")]
JsonOut = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def _client(account: str | None, api_key: str | None, flavour: str, base_url: str | None) -> IhuyiClient:
    try:
        return IhuyiClient(account, api_key, flavour=flavour, base_url=base_url)  # type: ignore[arg-type]
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _run(factory: Callable[[], Awaitable[T]], as_json: bool) -> T:
    try:
        return anyio.run(factory)
    except DeliveryUnknownError as exc:
        _fail(as_json, exc, 3)
    except ApiError as exc:
        _fail(as_json, exc, 1, code=exc.code)
    except IhuyiError as exc:
        _fail(as_json, exc, 1)
    raise AssertionError("unreachable")  # pragma: no cover


def _fail(as_json: bool, exc: Exception, status: int, code: int | None = None) -> None:
    if as_json:
        console.print_json(json.dumps({"ok": False, "error": type(exc).__name__, "code": code, "message": str(exc)}))
    else:
        err_console.print(f"[red]{type(exc).__name__}[/red]: {exc}")
    raise typer.Exit(status)


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    if as_json:
        console.print_json(json.dumps(data, ensure_ascii=False))
    else:
        console.print(text)


@app.command()
def send(
    mobile: str,
    content: str,
    account: Account = None,
    api_key: ApiKey = None,
    flavour: Flavour = "legacy",
    base_url: BaseUrl = None,
    kind: Annotated[str | None, typer.Option(help="e.g. verification")] = None,
    as_json: JsonOut = False,
) -> None:
    """Send one message."""
    client = _client(account, api_key, flavour, base_url)

    async def go() -> Any:
        async with client:
            return await client.send(mobile, content, kind=kind)

    sent = _run(go, as_json)
    _emit(as_json, {"ok": True, "smsid": sent.smsid, "segments": sent.segments},
          f"accepted: smsid {sent.smsid} ({sent.segments} segment(s))")


@app.command()
def balance(
    account: Account = None,
    api_key: ApiKey = None,
    flavour: Flavour = "legacy",
    base_url: BaseUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Messages left on the account."""
    client = _client(account, api_key, flavour, base_url)

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
    as_json: JsonOut = False,
) -> None:
    """Submit a template for review (【变量】 marks each variable)."""
    client = _client(account, api_key, "legacy", base_url)

    async def go() -> Any:
        async with client:
            return await client.add_template(content)

    tpl = _run(go, as_json)
    _emit(as_json, {"ok": True, "template_id": tpl.template_id}, f"submitted: template {tpl.template_id}")


@app.command()
def explain(code: int, as_json: JsonOut = False) -> None:
    """What a result code means and what to do."""
    from ._codes import lookup

    info = lookup(code)
    _emit(as_json, {"code": code, "category": info.category, "description": info.description,
                    "texts": list(info.texts), "action": info.action, "retryable": info.retryable,
                    "permanent_for_recipient": info.permanent_for_recipient, "known": info.known},
          explain_code(code))


@app.command()
def emulator(
    port: Annotated[int, typer.Option(help="0 picks a free port")] = 0,
    account: Annotated[str, typer.Option()] = "APIID",
    api_key: Annotated[str, typer.Option()] = "APIKEY",
    balance: Annotated[int, typer.Option()] = 1000,
) -> None:
    """Serve the testing emulator on 127.0.0.1 until interrupted."""
    from .testing.__main__ import main as testing_main

    argv = ["serve", "--port", str(port), "--account", f"{account}:{api_key}", "--balance", str(balance)]
    raise typer.Exit(testing_main(argv))


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
        console.print(format_summary(summary))


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


def _read_rows(path: Path, bad: list[tuple[int, str]]) -> Iterator[dict[str, Any]]:
    """Rows of a CSV (header with mobile, content, …) or JSON-lines file, lazily, with line numbers."""
    with path.open("r", encoding="utf-8-sig", newline="") as fh:
        if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    bad.append((number, "not valid JSON"))
                    continue
                if not isinstance(row, dict):
                    bad.append((number, "not a JSON object"))
                    continue
                yield _checked(row, number, bad)
        else:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "mobile" not in reader.fieldnames:
                raise typer.BadParameter(f"{path}: the CSV header needs a 'mobile' column")
            for row in reader:
                yield _checked(dict(row), reader.line_num, bad)


def _checked(row: dict[str, Any], number: int, bad: list[tuple[int, str]]) -> dict[str, Any]:
    row = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
    row["line"] = number
    row.setdefault("id", f"line{number}")
    return row


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        total = sum(1 for line in fh if line.strip())
    return total - (0 if path.suffix.lower() in (".jsonl", ".ndjson", ".json") else 1)


@app.command()
def batch(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or JSON lines")],
    account: Account = None,
    api_key: ApiKey = None,
    flavour: Flavour = "legacy",
    base_url: BaseUrl = None,
    concurrency: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    journal: Annotated[Path | None, typer.Option(help="resumable outcome log (JSON lines)")] = None,
    failed_out: Annotated[Path | None, typer.Option(help="CSV of failed rows (default FILE.failed.csv)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only validate, count segments and cost")] = False,
    price: Annotated[float, typer.Option(help="price per segment, for --dry-run")] = 0.05,
    as_json: JsonOut = False,
) -> None:
    """Send every row of FILE (columns: mobile, content or template_id + variables, id, kind)."""
    bad: list[tuple[int, str]] = []
    if dry_run:
        _dry_run(file, flavour, price, as_json, bad)
        return
    client = _client(account, api_key, flavour, base_url)
    total = _count_lines(file)
    failed_path = failed_out or file.with_name(file.name + ".failed.csv")
    counts: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []

    async def go() -> None:
        async with client:
            with _progress_bar("sending", total, as_json) as tick:
                async for outcome in client.send_many(
                    _read_rows(file, bad), concurrency=concurrency, on_progress=tick, journal=journal
                ):
                    counts[outcome.status] += 1
                    if not outcome.ok and not outcome.skipped:
                        failures.append(_failure_row(outcome))

    interrupted = False
    try:
        anyio.run(go)
    except KeyboardInterrupt:
        interrupted = True
    for line, reason in bad:
        counts["bad_row"] += 1
        failures.append({"line": line, "status": "bad_row", "error": reason})
    if failures:
        _write_failures(failed_path, failures)
    _summary(counts, failures, failed_path if failures else None, as_json, interrupted)
    raise typer.Exit(130 if interrupted else (1 if failures else 0))


def _failure_row(outcome: Outcome) -> dict[str, Any]:
    message = outcome.message
    row: dict[str, Any] = {"status": outcome.status, "error": str(outcome.error or "")}
    if isinstance(message, Message):
        meta = dict(message.metadata or {})
        row.update({"line": meta.pop("line", ""), "id": message.id or "", "mobile": message.mobile,
                    "content": message.content or "", "template_id": message.template_id or "",
                    "variables": "|".join(message.variables or ()), "kind": message.kind or ""})
        row["code"] = getattr(outcome.error, "code", "")
    return row


def _write_failures(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = ["mobile", "content", "template_id", "variables", "kind", "id", "line", "status", "code", "error"]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def _summary(counts: Counter[str], failures: list[dict[str, Any]], failed_path: Path | None,
             as_json: bool, interrupted: bool) -> None:
    if as_json:
        console.print_json(json.dumps({
            "ok": not failures and not interrupted, "interrupted": interrupted, "counts": dict(counts),
            "failed": [{k: r.get(k) for k in ("line", "id", "status", "code", "error")} for r in failures],
            "failed_csv": str(failed_path) if failed_path else None,
        }, ensure_ascii=False, default=str))
        return
    table = Table(title="batch summary" + (" (interrupted: rerun with the same --journal)" if interrupted else ""))
    table.add_column("outcome")
    table.add_column("messages", justify="right")
    for status, n in sorted(counts.items()):
        table.add_row(status, str(n))
    console.print(table)
    for row in failures[:20]:
        console.print(f"line {row.get('line', '?')}: {row.get('status')} {row.get('error', '')}")
    if failed_path is not None:
        console.print(f"failed rows written to {failed_path}")


def _dry_run(file: Path, flavour: str, price: float, as_json: bool, bad: list[tuple[int, str]]) -> None:
    from ._config import FLAVOURS
    from ._validation import count_segments, normalize_mobile, validate_content

    limit = FLAVOURS[flavour].max_content if flavour in FLAVOURS else 300
    valid = segments = 0
    for row in _read_rows(file, bad):
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
            valid += 1
        except (ApiError, ValueError, TypeError) as exc:  # noqa: PERF203
            bad.append((int(row["line"]), str(exc)))
    bad.sort()
    data = {"valid": valid, "invalid": len(bad), "segments": segments, "cost": round(segments * price, 4),
            "invalid_rows": [{"line": n, "error": e} for n, e in bad]}
    if as_json:
        console.print_json(json.dumps(data, ensure_ascii=False))
    else:
        console.print(f"{valid} valid, {len(bad)} invalid, {segments} segments, cost ≈ {data['cost']}")
        for line, reason in bad[:50]:
            console.print(f"line {line}: {reason}")
    raise typer.Exit(1 if bad else 0)


def main() -> None:
    """Entry point of the ``ihuyi-async`` script."""
    app()
