"""The push parser and models, the form builders, and the package's public surface."""

from __future__ import annotations

import ast
import pickle
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ihuyi_async.pushes as pushes
from ihuyi_async.pushes import (
    CHINA_TZ,
    DeliveryReceipt,
    PushParseError,
    Reply,
    TemplateReview,
    parse_push,
)
from ihuyi_async.testing import PushAnswer, receipt_form, reply_form, template_review_form

SMSID = "16842079209571524017"
MOBILE = "13912345678"


def test_receipt_with_smsid() -> None:
    form = {
        "code": "2",
        "msg": "用户已成功收到",
        "mobilephone": MOBILE,
        "smsid": SMSID,
        "report_time": "2026-03-01 08:30:15",
        "extra": "kept",
    }
    receipt = parse_push(form)
    assert isinstance(receipt, DeliveryReceipt)
    assert receipt == DeliveryReceipt(
        code=2,
        msg="用户已成功收到",
        mobile=MOBILE,
        smsid=SMSID,
        report_time=datetime(2026, 3, 1, 8, 30, 15, tzinfo=CHINA_TZ),
    )
    assert receipt.delivered and receipt.serial == SMSID
    assert receipt.report_time is not None
    assert receipt.report_time.utcoffset() == timedelta(hours=8)
    assert receipt.report_time.astimezone(timezone.utc).hour == 0
    assert receipt.raw["extra"] == "kept"
    assert isinstance(receipt.smsid, str)


def test_receipt_with_task_id_and_failure_code() -> None:
    receipt = parse_push(receipt_form(task_id="987654", mobile=MOBILE, code=4, msg="UNDELIV"))
    assert isinstance(receipt, DeliveryReceipt)
    assert receipt.task_id == "987654" and receipt.smsid is None
    assert not receipt.delivered and receipt.code == 4
    assert receipt.serial == "987654"


def test_values_are_stripped_and_the_code_may_be_negative() -> None:
    receipt = parse_push({"code": " -1 ", "smsid": " 12 ", "mobilephone": " 13800138000 "})
    assert isinstance(receipt, DeliveryReceipt)
    assert (receipt.code, receipt.smsid, receipt.mobile, receipt.msg) == (
        -1,
        "12",
        "13800138000",
        "",
    )
    assert receipt.report_time is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01 08:30:15", datetime(2026, 3, 1, 8, 30, 15, tzinfo=CHINA_TZ)),
        ("2026/03/01 08:30:15", datetime(2026, 3, 1, 8, 30, 15, tzinfo=CHINA_TZ)),
        ("20260301083015", datetime(2026, 3, 1, 8, 30, 15, tzinfo=CHINA_TZ)),
        ("2026-03-01T08:30:15", datetime(2026, 3, 1, 8, 30, 15, tzinfo=CHINA_TZ)),
        ("2026-03-01T00:30:15+00:00", datetime(2026, 3, 1, 8, 30, 15, tzinfo=CHINA_TZ)),
        ("1772325015", datetime(2026, 3, 1, 8, 30, 15, tzinfo=CHINA_TZ)),
        ("not a time", None),
        ("", None),
        ("2026-02-30 00:00:00", None),
    ],
)
def test_times_are_lenient_and_in_utc8(text: str, expected: datetime | None) -> None:
    receipt = parse_push(receipt_form(smsid=SMSID, report_time=text))
    assert isinstance(receipt, DeliveryReceipt)
    assert receipt.report_time == expected
    if expected is not None:
        assert receipt.report_time is not None
        assert receipt.report_time.utcoffset() == timedelta(hours=8)
    assert receipt.raw["report_time"] == text


def test_time_zone_and_formats_are_configurable() -> None:
    form = receipt_form(smsid=SMSID, report_time="01.03.2026 08:30")
    receipt = parse_push(form, tz=timezone.utc, time_formats=("%d.%m.%Y %H:%M",))
    assert isinstance(receipt, DeliveryReceipt)
    assert receipt.report_time == datetime(2026, 3, 1, 8, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize("time_field", ["reply_time", "replyTime"])
def test_reply_reads_either_time_field(time_field: str) -> None:
    form = reply_form(
        mobile=MOBILE,
        content=" 好的，收到！ ",
        smsid=SMSID,
        reply_time="2026-03-01 09:00:00",
        time_field=time_field,
    )
    reply = parse_push(form)
    assert reply == Reply(
        mobile=MOBILE,
        content=" 好的，收到！ ",  # content is verbatim
        smsid=SMSID,
        reply_time=datetime(2026, 3, 1, 9, tzinfo=CHINA_TZ),
    )


def test_reply_without_smsid_or_time() -> None:
    reply = parse_push({"mobilephone": MOBILE, "content": "TD", "smsid": ""})
    assert reply == Reply(mobile=MOBILE, content="TD")


def test_template_review() -> None:
    review = parse_push(template_review_form(template_id="20180515006", code=0, msg="含敏感词"))
    assert review == TemplateReview(template_id=20180515006, code=0, msg="含敏感词")
    assert isinstance(review, TemplateReview) and not review.approved
    approved = parse_push(template_review_form(template_id=1))
    assert isinstance(approved, TemplateReview) and approved.approved


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({}, "not a delivery receipt"),
        ({"foo": "bar"}, "not a delivery receipt"),
        ({"code": "2", "mobilephone": MOBILE}, "not a delivery receipt"),
        ({"code": "2", "smsid": SMSID}, "mobilephone"),
        ({"code": "two", "smsid": SMSID, "mobilephone": MOBILE}, "'code'"),
        ({"code": "２", "smsid": SMSID, "mobilephone": MOBILE}, "'code'"),
        ({"code": "2", "smsid": " ", "mobilephone": MOBILE}, "'smsid'"),
        ({"code": "2", "smsid": "1\n2", "mobilephone": MOBILE}, "'smsid'"),
        ({"code": "2", "smsid": "1", "mobilephone": "1" * 40}, "'mobilephone'"),
        ({"templateid": "abc", "code": "2"}, "'templateid'"),
        ({"mobilephone": MOBILE, "content": "x" * 5000}, "'content'"),
        ({"mobilephone": MOBILE, "content": "\udcff"}, "'content'"),
    ],
)
def test_malformed_forms_raise_push_parse_error(form: dict[str, str], reason: str) -> None:
    with pytest.raises(PushParseError, match=reason) as info:
        parse_push(form)
    assert isinstance(info.value, ValueError)
    assert MOBILE not in str(info.value)
    assert info.value.fields == tuple(sorted(form))[:20]


def test_reprs_mask_numbers_and_content() -> None:
    receipt = parse_push(
        receipt_form(smsid=SMSID, mobile=MOBILE, report_time="2026-03-01 08:30:15")
    )
    reply = parse_push(reply_form(mobile=MOBILE, content="我的地址是某某路"))
    assert repr(receipt) == (
        f"DeliveryReceipt(smsid={SMSID!r}, code=2, msg='DELIVRD', mobile='139****5678', "
        "report_time='2026-03-01T08:30:15+08:00')"
    )
    assert MOBILE not in repr(reply) and "某某路" not in repr(reply)
    assert "139****5678" in repr(reply)
    assert MOBILE not in receipt.dedupe_key and MOBILE not in reply.dedupe_key
    review = parse_push(template_review_form(template_id=3, msg="ok"))
    assert repr(review) == "TemplateReview(template_id=3, code=2, msg='ok')"


def test_models_are_frozen_hashable_and_picklable() -> None:
    receipt = parse_push(receipt_form(smsid=SMSID, report_time="2026-03-01 08:30:15"))
    assert isinstance(receipt, DeliveryReceipt)
    with pytest.raises(AttributeError):
        receipt.code = 0  # type: ignore[misc]
    assert hash(receipt) == hash(pickle.loads(pickle.dumps(receipt)))
    assert type(receipt).__module__ == "ihuyi_async.pushes"


def test_dedupe_keys() -> None:
    a = parse_push(receipt_form(smsid=SMSID, mobile=MOBILE, report_time="2026-03-01 08:30:15"))
    same = parse_push(receipt_form(smsid=SMSID, mobile=MOBILE, report_time="2026-03-01 08:31:00"))
    other_status = parse_push(receipt_form(smsid=SMSID, mobile=MOBILE, code=0))
    task = parse_push(receipt_form(task_id=SMSID, mobile=MOBILE))
    assert a.dedupe_key == same.dedupe_key  # a re-push of the same status
    assert len({a.dedupe_key, other_status.dedupe_key, task.dedupe_key}) == 3
    assert a.dedupe_key.startswith("receipt:")
    r1 = parse_push(reply_form(content="好", reply_time="2026-03-01 09:00:00"))
    r2 = parse_push(reply_form(content="好", reply_time="2026-03-01 09:00:01"))
    assert r1.dedupe_key != r2.dedupe_key
    t1 = parse_push(template_review_form(template_id=1, code=2))
    t2 = parse_push(template_review_form(template_id=1, code=0))
    assert t1.dedupe_key != t2.dedupe_key


FIELD_NAMES = st.sampled_from(
    ["code", "msg", "mobilephone", "smsid", "task_id", "report_time", "content", "reply_time",
     "replyTime", "templateid"]
)  # fmt: skip
VALUES = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"-?[0-9]{1,12}", fullmatch=True),
    st.sampled_from(["2", "0", "13800138000", "2026-01-01 12:00:00", "1767240000", " "]),
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.one_of(FIELD_NAMES, st.text(max_size=10)), VALUES, max_size=8))
def test_any_form_gives_a_push_or_push_parse_error(form: dict[str, str]) -> None:
    try:
        push = parse_push(form)
    except PushParseError as exc:
        assert str(exc)
        return
    assert isinstance(push, DeliveryReceipt | Reply | TemplateReview)
    assert repr(push) and push.dedupe_key.startswith(f"{push.kind}:")
    for value in (getattr(push, "report_time", None), getattr(push, "reply_time", None)):
        assert value is None or value.utcoffset() is not None


@settings(max_examples=200, deadline=None)
@given(
    smsid=st.from_regex(r"[0-9]{20}", fullmatch=True),
    mobile=st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
    code=st.integers(-5, 99999),
    msg=st.text(max_size=40),
)
def test_receipt_forms_round_trip(smsid: str, mobile: str, code: int, msg: str) -> None:
    when = datetime(2026, 5, 1, 23, 59, 59, tzinfo=CHINA_TZ)
    receipt = parse_push(
        receipt_form(smsid=smsid, mobile=mobile, code=code, msg=msg, report_time=when)
    )
    assert isinstance(receipt, DeliveryReceipt)
    assert (receipt.smsid, receipt.mobile, receipt.code, receipt.msg) == (
        smsid,
        mobile,
        code,
        msg.strip(),
    )
    assert receipt.report_time == when


def test_form_builders() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        receipt_form()
    with pytest.raises(ValueError, match="exactly one"):
        receipt_form(smsid="1", task_id="2")
    utc_noon = datetime(2026, 1, 1, 4, tzinfo=timezone.utc)
    assert receipt_form(smsid="1", report_time=utc_noon)["report_time"] == "2026-01-01 12:00:00"
    assert receipt_form(smsid="1", code=0)["msg"] == "UNDELIV"
    naive = datetime(2026, 1, 1, 12)
    assert reply_form(reply_time=naive)["reply_time"] == "2026-01-01 12:00:00"
    assert "smsid" not in reply_form()
    assert template_review_form(template_id=7) == {
        "templateid": "7",
        "code": "2",
        "msg": "审核通过",
    }
    now = datetime.strptime(receipt_form(smsid="1")["report_time"], "%Y-%m-%d %H:%M:%S")
    assert abs(now.replace(tzinfo=CHINA_TZ) - datetime.now(CHINA_TZ)) < timedelta(minutes=1)


def test_push_answer() -> None:
    assert PushAnswer(status_code=200, body="success").acknowledged
    assert not PushAnswer(status_code=200, body="success\n").acknowledged
    assert not PushAnswer(status_code=500, body="success").acknowledged


# -- the public surface -------------------------------------------------------------


def test_all_is_sorted_explicit_and_importable() -> None:
    assert pushes.__all__ == sorted(pushes.__all__)
    for name in pushes.__all__:
        obj = getattr(pushes, name)
        if isinstance(obj, type):
            assert obj.__module__ == "ihuyi_async.pushes", name
    # ("@py_*": pytest rewrites the modules of a distribution that ships a plugin)
    public = {n for n in dir(pushes) if not n.startswith(("_", "@"))}
    assert public - set(pushes.__all__) <= {"annotations"}


def test_the_package_imports_only_redact_clock_and_charsets_from_the_core() -> None:
    """The pushes package stands alone: no client, transport or testing imports."""
    package = Path(pushes.__file__).parent
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # The one exception, until the next release: the deprecated push builders' shim
        # (``pushes.__getattr__``) imports ``ihuyi_async.testing`` when an old name is used.
        shim = {
            id(node)
            for fn in ast.walk(tree)
            if isinstance(fn, ast.FunctionDef) and fn.name == "__getattr__"
            for node in ast.walk(fn)
            if isinstance(node, ast.ImportFrom) and [a.name for a in node.names] == ["testing"]
        }
        for node in ast.walk(tree):
            if id(node) in shim:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level == 2:
                    allowed = ("_redact", "_clock", "_charsets", "_china", "_telemetry", "_exports",
                               "_exceptions", "_redis_scripts")
                    assert node.module in allowed, (path.name, node.module)
                elif node.level == 0:
                    assert not (node.module or "").startswith("ihuyi_async"), path.name
                else:
                    assert node.level == 1, path.name
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("ihuyi_async") for a in node.names), path.name
