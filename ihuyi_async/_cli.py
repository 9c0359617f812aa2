"""The ``ihuyi-async`` command-line tool (extra ``cli``: typer and rich).

Commands: ``send``, ``balance``, ``template add``, ``explain``, ``emulator``, ``demo``.
Credentials come from ``--account``/``--api-key`` or ``IHUYI_ACCOUNT``/``IHUYI_API_KEY``.
Exit codes: 0 success, 1 the provider or the library refused, 2 usage error,
3 outcome unknown.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

try:
    import typer
    from rich.console import Console
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise SystemExit("the ihuyi-async CLI needs the cli extra: pip install 'ihuyi-async[cli]'") from exc

import anyio

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
    from .testing.__main__ import serve

    serve(port=port, accounts={account: api_key}, balance=balance)


@app.command()
def demo(
    messages: Annotated[int, typer.Option(help="messages to send")] = 2000,
    numbers: Annotated[int, typer.Option(help="distinct recipients")] = 500,
    as_json: JsonOut = False,
) -> None:
    """Send a realistic load to the built-in emulator (no credentials, no internet)."""
    from ._demo import format_summary, run_demo

    summary = anyio.run(lambda: run_demo(messages=messages, numbers=numbers))
    if as_json:
        console.print_json(json.dumps(summary.as_dict(), ensure_ascii=False))
    else:
        console.print(format_summary(summary))


def main() -> None:
    """Entry point of the ``ihuyi-async`` script."""
    app()
