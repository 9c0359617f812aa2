"""The ihuyi-async command line, through its entry point, against the emulator on loopback."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ihuyi_async._cli import app
from ihuyi_async.testing import Emulator, EmulatorServer

runner = CliRunner()


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    emulator = Emulator(accounts={"APIID": "APIKEY"}, balance=100, limits=False)
    with EmulatorServer(emulator) as srv:
        yield srv


def cli(*args: str, url: str | None = None) -> tuple[int, str]:
    extra = ["--account", "APIID", "--api-key", "APIKEY", "--base-url", url] if url else []
    result = runner.invoke(app, [*args, *extra])
    return result.exit_code, result.output


def test_explain() -> None:
    code, out = cli("explain", "4082")
    assert code == 0 and "UTC+8" in out and "RateLimitedError" in out
    assert out.startswith("4082 [rate_limit] ")  # the category is text, not rich markup
    code, out = cli("explain", "4030", "--json")
    assert code == 0 and json.loads(out)["permanent_for_recipient"] is True


def test_send_balance_template(server: EmulatorServer) -> None:
    code, out = cli("send", "13800138000", "您的订单已发货", "--json", url=server.url)
    assert code == 0 and len(json.loads(out)["smsid"]) == 20
    code, out = cli("balance", "--json", url=server.url)
    assert code == 0 and json.loads(out)["num"] == 99
    code, out = cli("template", "add", "您的验证码是：【变量】。", "--json", url=server.url)
    assert code == 0 and json.loads(out)["template_id"] > 0
    code, out = cli("send", "12345", "x", "--json", url=server.url)
    assert code == 1 and json.loads(out)["code"] == 406
    assert len(server.emulator.messages) == 1


def test_credentials_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IHUYI_ACCOUNT", raising=False)
    monkeypatch.delenv("IHUYI_API_KEY", raising=False)
    code, out = cli("balance")
    assert code == 2 and "IHUYI_ACCOUNT" in out


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["mobile", "content", "id"])
        writer.writeheader()
        writer.writerows(rows)


def test_batch_csv_with_bad_rows_failed_csv_and_rerun(server: EmulatorServer, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    write_csv(src, [
        {"mobile": "13800000001", "content": "订单1已发货", "id": "1"},
        {"mobile": "12345", "content": "bad number", "id": "2"},
        {"mobile": "13800000003", "content": "", "id": "3"},
        {"mobile": "13800000004", "content": "订单4已发货", "id": "4"},
    ])
    code, out = cli("batch", str(src), "--dry-run", "--json")
    data = json.loads(out)
    assert code == 1 and data["valid"] == 2 and [r["line"] for r in data["invalid_rows"]] == [3, 4]
    assert server.emulator.messages == []  # dry run sends nothing

    journal = tmp_path / "j.jsonl"
    code, out = cli("batch", str(src), "--json", "--journal", str(journal), url=server.url)
    summary = json.loads(out)
    assert code == 1 and summary["counts"] == {"accepted": 2, "invalid": 2}
    assert sorted(r["line"] for r in summary["failed"]) == [3, 4]
    failed_csv = Path(summary["failed_csv"])
    rows = list(csv.DictReader(failed_csv.read_text(encoding="utf-8").splitlines()))
    assert sorted(r["line"] for r in rows) == ["3", "4"]
    assert {r["mobile"] for r in rows} == {"12345", "13800000003"}
    assert len(server.emulator.messages) == 2

    # a rerun with the journal sends nothing twice
    code, out = cli("batch", str(src), "--json", "--journal", str(journal), url=server.url)
    assert json.loads(out)["counts"]["already_accepted"] == 2
    assert len(server.emulator.messages) == 2

    # the failed CSV, once fixed, can be fed back in
    write_csv(failed_csv, [{"mobile": "13800000002", "content": "订单2已发货", "id": "2"}])
    code, out = cli("batch", str(failed_csv), "--json", url=server.url)
    assert code == 0 and json.loads(out)["counts"] == {"accepted": 1}


def test_batch_jsonl_reports_bad_lines(server: EmulatorServer, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"mobile": "13800000001", "content": "hi"}\nnot json\n[1, 2]\n{"mobile": "13800000002", "content": "ho"}\n',
                   encoding="utf-8")
    code, out = cli("batch", str(src), "--json", url=server.url)
    summary = json.loads(out)
    assert code == 1 and summary["counts"] == {"accepted": 2, "bad_row": 2}
    assert sorted(r["line"] for r in summary["failed"]) == [2, 3]
    code, out = cli("batch", str(src), "--json", url=server.url)
    assert summary["counts"]["accepted"] == 2


def test_batch_all_ok_exit_zero_and_progress_table(server: EmulatorServer, tmp_path: Path) -> None:
    src = tmp_path / "ok.csv"
    write_csv(src, [{"mobile": f"1380000000{i}", "content": f"订单{i}", "id": str(i)} for i in range(5)])
    code, out = cli("batch", str(src), url=server.url)
    assert code == 0 and "batch summary" in out and "accepted" in out


def test_demo_runs_as_a_subprocess_and_adds_up() -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "ihuyi_async", "demo", "--messages", "300", "--numbers", "100", "--json"],
        capture_output=True, text=True, timeout=120, check=True,
        env={k: v for k, v in __import__("os").environ.items() if not k.startswith("IHUYI_")},
    )
    summary = json.loads(proc.stdout)
    assert summary["attempted"] == 300
    refused = sum(summary["refused_locally"].values()) + sum(summary["refused_by_provider"].values())
    assert summary["sent"] + refused + sum(summary["failed"].values()) == 300
    assert summary["failed"] == {}
    assert summary["emulator"]["messages"] == summary["sent"] > 200
    assert summary["emulator"]["max_per_number"] <= 5  # the limiter held the daily quota
    assert any(k.startswith("4082") for k in summary["refused_locally"])
    assert summary["balance_before"] - summary["balance_after"] == summary["emulator"]["segments"]


def test_emulator_command_serves_on_loopback() -> None:
    import signal
    import subprocess
    import sys

    import anyio

    from ihuyi_async import IhuyiClient

    proc = subprocess.Popen(
        [sys.executable, "-m", "ihuyi_async", "emulator", "--port", "0", "--account", "A1", "--api-key", "K1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().strip())

        async def use() -> tuple[str, int]:
            async with IhuyiClient("A1", "K1", base_url=f"http://127.0.0.1:{port}", limiter=None) as client:
                sent = await client.send("13800138000", "您的订单已发货")
                return sent.smsid, (await client.balance()).num

        smsid, num = anyio.run(use)
        assert len(smsid) == 20 and num == 999
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        if proc.stdout is not None:
            proc.stdout.close()


def test_batch_ctrl_c_prints_summary_and_journal_resumes(tmp_path: Path) -> None:
    with EmulatorServer(Emulator(accounts={"APIID": "APIKEY"}, balance=10**6, limits=False)) as server:
        _ctrl_c_and_resume(server, tmp_path)


def _ctrl_c_and_resume(server: EmulatorServer, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "big.csv"
    write_csv(src, [{"mobile": f"139{i:08d}", "content": f"订单{i}已发货", "id": str(i)} for i in range(800)])
    journal = tmp_path / "j.jsonl"
    args = [sys.executable, "-m", "ihuyi_async", "batch", str(src), "--journal", str(journal), "--json",
            "--concurrency", "10", "--account", "APIID", "--api-key", "APIKEY", "--base-url", server.url]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 60
    while not journal.exists() or journal.read_text(encoding="utf-8").count('"accepted"') < 50:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    summary = json.loads(out)
    # outcomes are journaled before they are yielded, so the summary may trail the journal a little
    assert summary["interrupted"] is True and summary["counts"]["accepted"] >= 50
    assert sum(summary["counts"].values()) == 800  # every row counted, the unread ones not_sent
    first_run = len(server.emulator.messages)
    assert first_run == summary["counts"]["accepted"] < 800  # nothing cancelled on the wire

    rerun = subprocess.run(args, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    counts = json.loads(rerun.stdout)["counts"]
    assert counts["already_accepted"] >= summary["counts"]["accepted"]
    sent = [m.content for m in server.emulator.messages]
    assert len(sent) == len(set(sent)), "a message was sent twice"
    assert counts.get("accepted", 0) + counts["already_accepted"] + counts.get("already_unknown", 0) == 800
    assert rerun.returncode == 0 and "already_unknown" not in counts


# ----------------------------------------------------------------------------- --product (#17)

PRODUCT_ACCOUNTS = {"YX": "YX-KEY", "ISMS": "ISMS-KEY", "VOICE": "VOICE-KEY", "VM": "VM-KEY"}


@pytest.fixture
def products_server() -> Iterator[EmulatorServer]:
    emulator = Emulator(
        accounts=PRODUCT_ACCOUNTS, balance=100, limits=False, blacklist=["13800000009"],
        products={"YX": "marketing", "VM": "voice-notice"},
    )
    with EmulatorServer(emulator) as srv:
        yield srv


def pcli(account: str, *args: str, url: str) -> tuple[int, str]:
    """The CLI with a product account of ``products_server``."""
    result = runner.invoke(
        app, [*args, "--account", account, "--api-key", PRODUCT_ACCOUNTS[account], "--base-url", url]
    )
    return result.exit_code, result.output


def test_send_marketing_chunks_schedule_and_balance(products_server: EmulatorServer) -> None:
    import datetime as dt

    china = dt.timezone(dt.timedelta(hours=8))
    at = (dt.datetime.now(china) + dt.timedelta(days=1)).replace(second=0, microsecond=0, tzinfo=None)
    numbers = "13800000001,13800000002,13800000003"
    code, out = pcli("YX", "send", numbers, "周末特惠", "--product", "marketing", "--chunk-size", "2",
                     "--at", at.strftime("%Y-%m-%d %H:%M"), "--json", url=products_server.url)
    data = json.loads(out)
    assert code == 0 and data["ok"] is True
    assert [c["numbers"] for c in data["chunks"]] == [2, 1]
    assert all(c["outcome"] == "accepted" and len(c["task_id"]) == 20 for c in data["chunks"])
    sent = products_server.emulator.messages
    assert [m.mobile for m in sent] == numbers.split(",")
    assert all(m.product == "marketing" and m.content == "周末特惠退订回T" for m in sent)
    assert all(m.scheduled == at.replace(tzinfo=china) for m in sent)  # naive --at is China time
    assert {m.smsid for m in sent} == {c["task_id"] for c in data["chunks"]}
    code, out = pcli("YX", "balance", "--product", "marketing", "--json", url=products_server.url)
    assert code == 0 and json.loads(out)["num"] == 97


def test_send_marketing_a_refused_chunk_exits_1_and_says_which(products_server: EmulatorServer) -> None:
    code, out = pcli("YX", "send", "13800000001,13800000002,13800000009", "hi", "--product", "marketing",
                     "--chunk-size", "2", url=products_server.url)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("chunk 1 (2 numbers): accepted: task_id ")
    assert lines[1].startswith("chunk 2 (1 numbers): failed: ") and "4030" in lines[1]
    assert len(products_server.emulator.messages) == 2


def test_marketing_report_unknown_chunk_exits_3() -> None:
    import datetime as dt

    from ihuyi_async import DeliveryUnknownError
    from ihuyi_async._cli._products import marketing_report
    from ihuyi_async._products import MarketingChunk, MarketingResult

    unknown = DeliveryUnknownError("read_timeout", mobile="13800000001,13800000002")
    when = dt.datetime(2026, 3, 1, 10, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    result = MarketingResult(content="hi退订回T", chunks=(
        MarketingChunk(mobiles=("13800000003",), task_id="1" * 20, segments=1, sent_at=when),
        MarketingChunk(mobiles=("13800000001", "13800000002"), task_id=None, error=unknown, segments=1),
    ))
    data, text, status = marketing_report(result)
    assert status == 3 and data["ok"] is False
    assert [c["outcome"] for c in data["chunks"]] == ["accepted", "unknown"]
    assert "13800000001" not in text and "13800000001" not in json.dumps(data)  # numbers masked


def test_send_international_voice_code_and_voice_notice(products_server: EmulatorServer) -> None:
    url = products_server.url
    code, out = pcli("ISMS", "send", "+85251234567", "Your order shipped", "--product", "international",
                     "--json", url=url)
    assert code == 0 and len(json.loads(out)["smsid"]) == 20
    code, out = pcli("VOICE", "send", "13800000001", "482913", "--product", "voice-code", "--json", url=url)
    assert code == 0 and json.loads(out)["ok"] is True
    code, out = pcli("VM", "send", "010-12345678", "您的订单已发货", "--product", "voice-notice", url=url)
    assert code == 0 and out.startswith("accepted: smsid ")
    template_id = products_server.emulator.add_template("您的订单【变量】已发货", account="VM")
    code, out = pcli("VM", "send", "13800000002", "A123", "--product", "voice-notice", "--flavour", "json",
                     "--template-id", str(template_id), "--json", url=url)
    assert code == 0, out
    sent = products_server.emulator.messages
    assert [m.product for m in sent] == ["international", "voice-code", "voice-notice", "voice-notice"]
    assert sent[0].mobile == "852 51234567" and sent[1].content == "482913"
    assert sent[2].mobile == "01012345678" and sent[3].content == "您的订单A123已发货"
    assert sent[3].smsid == json.loads(out)["smsid"]
    for account, product in (("ISMS", "international"), ("VOICE", "voice-code"), ("VM", "voice-notice")):
        code, out = pcli(account, "balance", "--product", product, "--json", url=url)
        assert code == 0 and isinstance(json.loads(out)["num"], int)


def test_product_credentials_come_from_the_products_own_variables(
    products_server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IHUYI_ACCOUNT", "ISMS")  # the SMS account is never used for a product
    monkeypatch.setenv("IHUYI_API_KEY", "ISMS-KEY")
    monkeypatch.delenv("IHUYI_MARKETING_ACCOUNT", raising=False)
    monkeypatch.delenv("IHUYI_MARKETING_API_KEY", raising=False)
    code, out = cli("balance", "--product", "marketing")
    assert code == 2 and "IHUYI_MARKETING_ACCOUNT" in out
    monkeypatch.setenv("IHUYI_MARKETING_ACCOUNT", "YX")
    monkeypatch.setenv("IHUYI_MARKETING_API_KEY", "YX-KEY")
    monkeypatch.setenv("IHUYI_MARKETING_BASE_URL", products_server.url)
    code, out = cli("send", "13800000001", "hi", "--product", "marketing", "--json")
    assert code == 0 and json.loads(out)["chunks"][0]["outcome"] == "accepted"
    assert products_server.emulator.messages[-1].product == "marketing"


@pytest.mark.parametrize(
    ("account", "args", "says"),
    [
        ("YX", ["send", "13800000001", "hi", "--product", "fax"], "--product takes"),
        ("YX", ["send", "13800000001", "hi", "--product", "marketing", "--kind", "verification"], "--kind"),
        ("YX", ["send", "13800000001", "hi", "--product", "marketing", "--flavour", "json"], "--flavour"),
        ("YX", ["send", "13800000001", "hi", "--product", "marketing", "--at", "2020-01-01 10:00"], "past"),
        ("YX", ["send", "13800000001", "hi", "--product", "marketing", "--at", "soon"], "ISO time"),
        ("ISMS", ["send", "+85251234567", "hi", "--product", "international", "--at", "2030-01-01"], "--at"),
        ("VM", ["send", "13800000001", "x", "--product", "voice-notice", "--template-id", "3"], "--flavour json"),
        ("ISMS", ["send", "+85251234567", "x", "--product", "international", "--template-id", "3"], "--template-id"),
        ("ISMS", ["send", "13800000001", "hi", "--at", "2030-01-01 10:00"], "--at"),
        ("ISMS", ["balance", "--product", "voice-code", "--chunk-size", "3"], "No such option"),
        ("ISMS", ["send", "13800000001", "hi", "--chunk-size", "3"], "--chunk-size"),
    ],
)
def test_product_usage_errors_exit_2_and_send_nothing(
    products_server: EmulatorServer, account: str, args: list[str], says: str
) -> None:
    code, out = pcli(account, *args, url=products_server.url)
    assert code == 2 and says in out, out
    assert products_server.emulator.messages == []


@pytest.mark.parametrize(
    ("account", "args", "says"),
    [
        ("ISMS", ["send", "+8613800138000", "hi", "--product", "international"], "IhuyiClient"),
        ("ISMS", ["send", "15012345678", "hi", "--product", "international"], "IhuyiClient"),
        ("VM", ["send", "12345", "hi", "--product", "voice-notice"], "landline"),
    ],
)
def test_product_number_refusals_carry_no_mainland_hint(
    products_server: EmulatorServer, account: str, args: list[str], says: str
) -> None:
    code, out = pcli(account, *args, "--json", url=products_server.url)
    data = json.loads(out)
    assert code == 1 and data["code"] == 406 and says in data["message"]
    assert data["hint"] is None  # the message says what to do; "11-digit mainland" would not
    code, out = pcli(account, *args, url=products_server.url)
    assert code == 1 and "11-digit" not in out and says in out
    assert products_server.emulator.messages == []


def test_hints_per_product_for_a_provider_406() -> None:
    from ihuyi_async._cli import _hint

    assert "11-digit mainland" in _hint(406) and "11-digit mainland" in _hint(406, "marketing")
    assert "country code" in _hint(406, "international")
    assert "landline" in _hint(406, "voice-notice")
    assert _hint(406, "international", local=True) == "" == _hint(406, "voice-notice", local=True)
    assert "11-digit mainland" in _hint(406, "voice-code", local=True)


@pytest.mark.parametrize("code", ["12a4", "1234567", "12"])
def test_bad_voice_code_exits_1_like_other_refused_input(
    products_server: EmulatorServer, code: str
) -> None:
    status, out = pcli("VOICE", "send", "13800000001", code, "--product", "voice-code", "--json",
                       url=products_server.url)
    data = json.loads(out)
    assert status == 1 and data["error"] == "InvalidVoiceCodeError" and data["code"] == 404
    assert "4 to 6 ASCII digits" in data["message"] and data["hint"] is None
    assert code not in data["message"]  # the code itself is never echoed
    status, _ = pcli("VOICE", "send", "12345", "1234", "--product", "voice-code", url=products_server.url)
    assert status == 1  # a bad number: the same exit
    assert products_server.emulator.messages == []
