"""`ihuyi-async batch` and `journal` as a user runs them: the real CLI in a subprocess, the
emulator on loopback (edited inputs, account refusals, Ctrl-C, odd files, the journal)."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ihuyi_async import SystemClock
from ihuyi_async.testing import Emulator, EmulatorServer, faults

ENV = {k: v for k, v in os.environ.items() if not k.startswith("IHUYI_")}


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ihuyi_async", *args], capture_output=True, text=True,
                          timeout=timeout, env={**ENV, **(env or {})})


def creds(url: str, key: str = "APIKEY") -> list[str]:
    return ["--account", "APIID", "--api-key", key, "--base-url", url]


def write_csv(path: Path, rows: list[dict[str, str]], encoding: str = "utf-8") -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="", encoding=encoding) as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(accounts={"APIID": "APIKEY"}, balance=10**6, limits=False)) as srv:
        yield srv


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# -- #13.1 resuming an edited input ------------------------------------------------------------


def test_resume_of_an_edited_csv_sends_the_new_row_and_nothing_twice(server: EmulatorServer, tmp_path: Path) -> None:
    src, journal = tmp_path / "in.csv", tmp_path / "j.jsonl"
    rows = [{"mobile": f"1380000{i:04d}", "content": f"订单{i}已发货"} for i in range(10)]
    write_csv(src, rows)
    first = run_cli("batch", str(src), "--json", "--journal", str(journal), *creds(server.url))
    assert first.returncode == 0 and json.loads(first.stdout)["counts"] == {"accepted": 10}

    write_csv(src, rows[1:] + [{"mobile": "13900000000", "content": "新客户欢迎"}])  # delete row 1, append one
    second = run_cli("batch", str(src), "--json", "--journal", str(journal), *creds(server.url))
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["counts"] == {"accepted": 1, "already_accepted": 9}
    sent = [m.mobile for m in server.emulator.messages]
    assert len(sent) == 11 and sent[-1] == "13900000000"


def test_an_id_whose_row_changed_stops_before_anything_is_sent(server: EmulatorServer, tmp_path: Path) -> None:
    src, journal = tmp_path / "in.csv", tmp_path / "j.jsonl"
    rows = [{"id": f"c{i}", "mobile": f"1380000{i:04d}", "content": f"订单{i}已发货"} for i in range(6)]
    write_csv(src, rows[:3])
    assert run_cli("batch", str(src), "--journal", str(journal), *creds(server.url)).returncode == 0
    rows[1] = {"id": "c1", "mobile": "13999999999", "content": "订单1已发货"}  # c1 is now someone else
    write_csv(src, rows)
    proc = run_cli("batch", str(src), "--journal", str(journal), *creds(server.url))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "line 3" in proc.stderr and "'c1'" in proc.stderr and "nothing sent" in proc.stderr
    assert len(server.emulator.messages) == 3
    skip = run_cli("batch", str(src), "--json", "--journal", str(journal), "--on-conflict", "skip", *creds(server.url))
    assert json.loads(skip.stdout)["counts"] == {"accepted": 3, "already_accepted": 3}


# -- #13.2 the account is the problem ----------------------------------------------------------


def test_a_wrong_key_stops_after_the_first_refusal(server: EmulatorServer, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    write_csv(src, [{"mobile": f"1380000{i:04d}", "content": f"订单{i}已发货"} for i in range(300)])
    proc = run_cli("batch", str(src), "--json", *creds(server.url, key="WRONG"))
    assert proc.returncode == 4, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["counts"]["rejected"] <= 50 and summary["codes"]["rejected 40502"] == summary["counts"]["rejected"]
    assert sum(summary["counts"].values()) == 300 and summary["counts"]["not_sent"] >= 250
    assert len(server.emulator.requests) == summary["counts"]["rejected"]
    text = run_cli("batch", str(src), "--concurrency", "1", *creds(server.url, key="WRONG"))
    assert text.returncode == 4 and "APIKEY" in text.stdout  # the registry's hint for 40502
    assert len(server.emulator.requests) == summary["counts"]["rejected"] + 1


def test_an_empty_balance_stops_and_the_rest_resumes_after_a_top_up(tmp_path: Path) -> None:
    emulator = Emulator(accounts={"APIID": "APIKEY"}, balance=5, limits=False)
    src, journal = tmp_path / "in.csv", tmp_path / "j.jsonl"
    write_csv(src, [{"mobile": f"1380000{i:04d}", "content": f"订单{i}已发货"} for i in range(40)])
    with EmulatorServer(emulator) as server:
        proc = run_cli("batch", str(src), "--json", "--concurrency", "1", "--journal", str(journal), *creds(server.url))
        assert proc.returncode == 4
        counts = json.loads(proc.stdout)["counts"]
        assert counts == {"accepted": 5, "rejected": 1, "not_sent": 34}
        emulator.set_balance("APIID", 100)
        again = run_cli("batch", str(src), "--json", "--journal", str(journal), *creds(server.url))
        assert again.returncode == 0 and json.loads(again.stdout)["counts"] == {"accepted": 35, "already_accepted": 5}
    assert len(emulator.messages) == 40 and len({m.content for m in emulator.messages}) == 40


# -- #13.3 Ctrl-C and unresolved messages ------------------------------------------------------


def test_first_ctrl_c_lets_requests_on_the_wire_finish_and_counts_every_row(tmp_path: Path) -> None:
    emulator = Emulator(accounts={"APIID": "APIKEY"}, balance=10**6, limits=False, clock=SystemClock())
    emulator.fail_next(faults.latency(0.5), times=10**6, method="Submit")  # every request on the wire 0.5 s
    src, journal = tmp_path / "in.csv", tmp_path / "j.jsonl"
    write_csv(src, [{"mobile": f"1380000{i:04d}", "content": f"订单{i}已发货"} for i in range(400)])
    with EmulatorServer(emulator) as server:
        args = ["batch", str(src), "--json", "--concurrency", "20", "--journal", str(journal), *creds(server.url)]
        proc = subprocess.Popen([sys.executable, "-m", "ihuyi_async", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=ENV)
        deadline = time.monotonic() + 60
        while not journal.exists() or journal.read_text(encoding="utf-8").count('"accepted"') < 20:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        summary = json.loads(out)
        counts = summary["counts"]
        assert sum(counts.values()) == 400, counts  # every row has a status
        assert set(counts) == {"accepted", "not_sent"}, counts  # nothing cancelled on the wire
        assert counts["accepted"] == len(emulator.messages)
        last = {}
        for line in journal.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            last[entry["id"]] = entry["status"]
        assert "pending" not in last.values() and Counter(last.values())["accepted"] == counts["accepted"]

        emulator.reset()
        rerun = run_cli(*args, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        assert json.loads(rerun.stdout)["counts"] == {"accepted": 400 - counts["accepted"],
                                                      "already_accepted": counts["accepted"]}
        assert len(emulator.messages) == 400 - counts["accepted"]


def test_unresolved_entries_exit_non_zero_and_the_journal_command_resolves_them(
    server: EmulatorServer, tmp_path: Path
) -> None:
    src, journal = tmp_path / "in.csv", tmp_path / "j.jsonl"
    write_csv(src, [{"id": f"c{i}", "mobile": f"1380000{i:04d}", "content": f"订单{i}已发货"} for i in range(4)])
    # as a kill -9 leaves it: c0 on the wire, c1 of unknown outcome
    journal.write_text('{"id": "c0", "status": "pending", "mobile": "138****0000", "line": 2}\n'
                       '{"id": "c1", "status": "unknown", "mobile": "138****0001", "line": 3, "reason": "read_timeout"}\n',
                       encoding="utf-8")
    proc = run_cli("batch", str(src), "--json", "--journal", str(journal), *creds(server.url))
    assert proc.returncode == 3  # never "all accepted" while something is unresolved
    assert json.loads(proc.stdout)["counts"] == {"accepted": 2, "already_unknown": 2}

    listing = run_cli("journal", str(journal), "--format", "json")
    assert listing.returncode == 3
    data = json.loads(listing.stdout)
    assert data["counts"] == {"pending": 1, "unknown": 1, "accepted": 2}
    assert [(e["id"], e["line"]) for e in data["unresolved"]] == [("c0", 2), ("c1", 3)]
    as_csv = run_cli("journal", str(journal), "--format", "csv")
    assert as_csv.stdout.splitlines()[0].startswith("id,status,line") and len(as_csv.stdout.splitlines()) == 3

    receipts = tmp_path / "receipts.jsonl"
    receipts.write_text('{"mobilephone": "13800000000", "smsid": "16842079209571524099", "status": "DELIVRD"}\n',
                        encoding="utf-8")
    resolved = run_cli("journal", str(journal), "--receipts", str(receipts), "--mark-not-sent", "c1")
    assert resolved.returncode == 0, resolved.stdout + resolved.stderr
    assert "1 resolved from receipts" in resolved.stdout
    final = run_cli("batch", str(src), "--json", "--journal", str(journal), *creds(server.url))
    assert final.returncode == 0 and json.loads(final.stdout)["counts"] == {"accepted": 1, "already_accepted": 3}
    assert [m.mobile for m in server.emulator.messages].count("13800000001") == 1  # c1, decided not sent
    bad = run_cli("journal", str(journal), "--mark-accepted", "nope")
    assert bad.returncode == 2 and "'nope'" in bad.stderr


def test_resend_unknown_sends_them_again(server: EmulatorServer, tmp_path: Path) -> None:
    src, journal = tmp_path / "in.csv", tmp_path / "j.jsonl"
    write_csv(src, [{"id": "c0", "mobile": "13800000000", "content": "订单0已发货"}])
    journal.write_text('{"id": "c0", "status": "pending"}\n', encoding="utf-8")
    proc = run_cli("batch", str(src), "--json", "--journal", str(journal), "--resend-unknown", *creds(server.url))
    assert proc.returncode == 0 and json.loads(proc.stdout)["counts"] == {"accepted": 1}


# -- #13.4 one line for a bad input --------------------------------------------------------------


def test_bad_inputs_are_one_line_with_rc_2(server: EmulatorServer, tmp_path: Path) -> None:
    header = tmp_path / "header.csv"
    header.write_text("phone,text\n13800000000,hi\n", encoding="utf-8")
    one_line_error(run_cli("batch", str(header), *creds(server.url)), str(header), "line 1", "'mobile'")
    one_line_error(run_cli("batch", str(header), "--dry-run"), "'mobile'")
    elf = tmp_path / "a.out"
    elf.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4)
    one_line_error(run_cli("batch", str(elf), *creds(server.url)), str(elf), "binary")
    noise = tmp_path / "noise.csv"
    noise.write_bytes(b"mobile,content\n13800000000,\xff\xfe\xfa\xfb\n")
    one_line_error(run_cli("batch", str(noise), *creds(server.url)), "line 2", "not UTF-8 or GB18030")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    one_line_error(run_cli("batch", str(empty), *creds(server.url)), str(empty), "empty")
    one_line_error(run_cli("batch", str(tmp_path / "missing.csv"), *creds(server.url)), "no such file")
    one_line_error(run_cli("batch", str(header), "--encoding", "klingon", *creds(server.url)), "klingon")
    assert server.emulator.requests == []


def test_gbk_and_bom_csv_files_are_read_without_options(server: EmulatorServer, tmp_path: Path) -> None:
    rows = [{"mobile": "13800000001", "content": "您的订单已发货，请查收"}]
    gbk = tmp_path / "excel.csv"
    write_csv(gbk, rows, encoding="gbk")
    bom = tmp_path / "bom.csv"
    write_csv(bom, [{"mobile": "13800000002", "content": "退订回T"}], encoding="utf-8-sig")
    for path in (gbk, bom):
        proc = run_cli("batch", str(path), "--json", *creds(server.url))
        assert proc.returncode == 0, proc.stderr
    assert [m.content for m in server.emulator.messages] == ["您的订单已发货，请查收", "退订回T"]
    forced = run_cli("batch", str(gbk), "--json", "--encoding", "latin-1", "--dry-run")
    assert forced.returncode == 0  # decodes (as mojibake): --encoding wins over detection


def test_emulator_on_a_busy_port_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = run_cli("emulator", "--port", str(port), timeout=30)
    one_line_error(proc, "in use")


# -- #13.5 failed rows keep the original row -----------------------------------------------------


def test_failed_rows_keep_the_original_row_line_status_code_and_reason(server: EmulatorServer, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    write_csv(src, [
        {"mobile": "13800000001", "content": "订单1已发货", "customer": "张三"},
        {"mobile": "", "content": "订单2已发货", "customer": "李四"},
        {"mobile": "12345", "content": "订单3已发货", "customer": "王五"},
    ])
    proc = run_cli("batch", str(src), "--json", *creds(server.url))
    assert proc.returncode == 1
    rows = list(csv.DictReader((tmp_path / "in.csv.failed.csv").read_text(encoding="utf-8").splitlines()))
    assert [r["customer"] for r in rows] == ["李四", "王五"] and [r["content"] for r in rows] == ["订单2已发货", "订单3已发货"]
    assert [r["line"] for r in rows] == ["3", "4"] and {r["status"] for r in rows} == {"invalid"}
    assert rows[1]["code"] == "406" and rows[0]["reason"] and rows[0]["mobile"] == ""
    # fixed and fed back in
    fixed = tmp_path / "fixed.csv"
    write_csv(fixed, [{**r, "mobile": m} for r, m in zip(rows, ["13800000002", "13800000003"], strict=True)])
    again = run_cli("batch", str(fixed), "--json", *creds(server.url))
    assert again.returncode == 0 and json.loads(again.stdout)["counts"] == {"accepted": 2}


def test_second_ctrl_c_aborts_and_what_was_on_the_wire_is_unresolved(tmp_path: Path) -> None:
    emulator = Emulator(accounts={"APIID": "APIKEY"}, balance=10**6, limits=False, clock=SystemClock())
    src, journal = tmp_path / "in.csv", tmp_path / "j.jsonl"
    write_csv(src, [{"mobile": f"1380000{i:04d}", "content": f"订单{i}已发货"} for i in range(100)])
    with EmulatorServer(emulator) as server:
        emulator.fail_next(faults.latency(0.2), times=10, method="Submit")
        emulator.fail_next(faults.latency(30), times=10**6, method="Submit")  # then: stuck on the wire
        args = ["batch", str(src), "--json", "--concurrency", "5", "--journal", str(journal), *creds(server.url)]
        proc = subprocess.Popen([sys.executable, "-m", "ihuyi_async", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=ENV)
        deadline = time.monotonic() + 60
        while not journal.exists() or journal.read_text(encoding="utf-8").count('"pending"') < 15:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)  # the graceful stop is waiting for the stuck requests
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    counts = json.loads(out)["counts"]
    assert counts["unknown"] == 5 and counts["accepted"] == 10 and sum(counts.values()) == 100, counts
    listing = run_cli("journal", str(journal), "--format", "json")
    assert listing.returncode == 3 and len(json.loads(listing.stdout)["unresolved"]) == 5


# -- #13.7 options a user reaches for ----------------------------------------------------------


def test_version_backend_environment_and_logging(server: EmulatorServer, tmp_path: Path) -> None:
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("ihuyi-async ")
    src = tmp_path / "in.csv"
    write_csv(src, [{"mobile": f"1380000{i:04d}", "content": f"订单{i}已发货"} for i in range(5)])
    env = {"IHUYI_ACCOUNT": "APIID", "IHUYI_API_KEY": "APIKEY", "IHUYI_BASE_URL": server.url}
    for backend in ("httpx", "aiohttp"):
        proc = run_cli("-v", "batch", str(src), "--json", "--backend", backend, env=env)
        assert proc.returncode == 0, proc.stderr
    via_env = run_cli("--log-level", "debug", "send", "13800000001", "你好", env={**env, "IHUYI_BACKEND": "aiohttp"})
    assert via_env.returncode == 0 and "138****0001" in via_env.stderr and "13800000001" not in via_env.stderr
    assert len(server.emulator.messages) == 11
    bad_level = run_cli("--log-level", "chatty", "balance", env=env)
    assert bad_level.returncode == 2


def test_missing_account_names_the_option_and_a_wrong_key_gives_a_hint(server: EmulatorServer) -> None:
    missing = run_cli("balance")
    one_line_error(missing, "--account", "IHUYI_ACCOUNT")
    wrong = run_cli("send", "13800000001", "你好", *creds(server.url, key="WRONG"))
    assert wrong.returncode == 1 and "40502" in wrong.stderr and "hint" in wrong.stderr and "APIKEY" in wrong.stderr
    typo = run_cli("send", "13800000001", "你好", "--kind", "verfication", *creds(server.url))
    one_line_error(typo, "verfication")
    assert server.emulator.messages == []


def test_dry_run_says_how_many_more_and_predicts_daily_refusals(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    rows = [{"mobile": "12345", "content": f"坏号码{i}"} for i in range(60)]
    rows += [{"mobile": "13800000001", "content": f"通知{i}"} for i in range(7)]
    write_csv(src, rows)
    proc = run_cli("batch", str(src), "--dry-run")
    assert proc.returncode == 1
    assert "60 invalid, 2 refused by the daily limits" in proc.stdout and "… 12 more" in proc.stdout
    data = json.loads(run_cli("batch", str(src), "--dry-run", "--json").stdout)
    assert data["valid"] == 5 and len(data["invalid_rows"]) == 60
    assert [r["line"] for r in data["refused_rows"]] == [67, 68] and "4082" in data["refused_rows"][0]["error"]


# -- #16.3 ids as idempotency keys ---------------------------------------------------------------


def test_idempotency_keys_need_an_id_on_every_row_and_send_each_once(server: EmulatorServer, tmp_path: Path) -> None:
    rows = [{"mobile": f"1380000{i:04d}", "content": f"您的订单{i}已发货", "id": f"o{i}"} for i in range(5)]
    missing = tmp_path / "missing.csv"
    write_csv(missing, [*rows, {"mobile": "13800009999", "content": "无编号", "id": ""}])
    one_line_error(run_cli("batch", str(missing), "--idempotency-keys", *creds(server.url)),
                   str(missing), "line 7", "no id")
    assert server.emulator.requests == []
    good = tmp_path / "good.csv"
    write_csv(good, rows)
    proc = run_cli("batch", str(good), "--idempotency-keys", "--json", *creds(server.url))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["counts"] == {"accepted": 5}
    assert sorted(m.mobile for m in server.emulator.messages) == [r["mobile"] for r in rows]
