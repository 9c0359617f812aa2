"""``ihuyi-async emulator`` and ``python -m ihuyi_async.testing serve``: one command (#14)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import httpx
import pytest
from typer.testing import CliRunner

from ihuyi_async._cli import app
from ihuyi_async.testing.__main__ import main as module_main
from ihuyi_async.testing._command import build_parser, serve_main


def _options(help_text: str) -> list[str]:
    return [line.strip() for line in help_text.splitlines()[1:] if line.strip().startswith("--")]


def test_both_entry_points_take_the_same_options_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        module_main(["serve", "--help"])
    assert exited.value.code == 0
    serve_help = capsys.readouterr().out
    result = CliRunner().invoke(app, ["emulator", "--help"])
    assert result.exit_code == 0
    options = _options(serve_help)
    assert options == _options(result.output)
    for option in ("--account", "--api-key", "--balance", "--no-limits", "--receipt-url", "--flavour",
                   "--strict-templates", "--host", "--port"):
        assert any(line.startswith(option) for line in options), option
    defaults = vars(build_parser("x").parse_args([]))
    assert defaults == {"host": "127.0.0.1", "port": 0, "account": None, "api_key": None, "balance": 1000,
                        "no_limits": False, "strict_templates": False, "receipt_url": None,
                        "flavour": "both", "quiet": False}
    assert "usage: ihuyi-async emulator" in result.output


def test_a_busy_port_is_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert serve_main(["--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot listen on 127.0.0.1:{port}: address already in use\n"
    result = CliRunner().invoke(app, ["emulator", "--account", "A"])
    assert result.exit_code == 2  # a key is missing: argparse's usage error


def test_emulator_command_serves_logs_each_request_and_stops_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ihuyi_async", "emulator", "--port", "0", "--account", "A1:K1",
         "--balance", "5", "--no-limits", "--flavour", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=5) as client:
            sent = client.post("/sms/Submit.json", data={
                "account": "A1", "password": "K1", "mobile": "13800138000", "content": "您的订单已发货"})
            assert sent.json()["code"] == 2
            assert client.post("/sms/GetNum.json", data={"account": "A1", "password": "wrong"}).json()["code"] == 405
            assert client.post("/webservice/sms.php?method=GetNum").status_code == 404  # json only
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    lines = err.splitlines()
    assert "ihuyi emulator on http://127.0.0.1:" in lines[0] and "flavour: json" in lines[0]
    logged = lines[1:4]
    assert logged[0].endswith("POST Submit 138****8000 code 2"), logged
    assert logged[1].endswith("POST GetNum - code 405"), logged
    assert logged[2].endswith("POST /webservice/sms.php - HTTP 404"), logged
    assert "K1" not in err and "13800138000" not in err and "订单" not in err
