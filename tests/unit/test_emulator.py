"""The emulator at the wire: raw httpx through ``emulator.transport``, one test per provider rule."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ihuyi_async import FakeClock
from ihuyi_async._signing import getnum_password, key_digest, submit_password
from ihuyi_async._validation import count_segments
from ihuyi_async.testing import Emulator, Limits, faults, is_verification

pytestmark = pytest.mark.anyio

ACCOUNT, KEY = "APIID", "APIKEY"
TRIAL = "您的验证码是：1234。请不要把验证码泄露给其他人。"
MOBILE = "13800138000"
LEGACY = "/webservice/sms.php"
START = 1767240000.0  # 2026-01-01 12:00:00 UTC+8


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(**kwargs: Any) -> Emulator:
    kwargs.setdefault("clock", FakeClock(START))
    return Emulator({ACCOUNT: KEY}, kwargs.pop("balance", 1000), **kwargs)


async def post(em: Emulator, path: str, fields: dict[str, str], *, query: str = "") -> httpx.Response:
    async with httpx.AsyncClient(transport=em.transport, base_url="https://106.ihuyi.com") as client:
        return await client.post(path + query, data=fields)


async def submit(
    em: Emulator,
    mobile: str = MOBILE,
    content: str = TRIAL,
    *,
    flavour: str = "json",
    account: str = ACCOUNT,
    key: str = KEY,
    t: int | None = None,
    **extra: str,
) -> dict[str, Any]:
    ts = int(em.clock.time()) if t is None else t
    fields = {
        "account": account,
        "password": submit_password(account, key, mobile, content, ts),
        "mobile": mobile,
        "content": content,
        "time": str(ts),
        **extra,
    }
    if flavour == "json":
        response = await post(em, "/sms/Submit.json", fields)
    else:
        response = await post(em, LEGACY, {**fields, "format": "json"}, query="?method=Submit")
    assert response.status_code == 200
    answer: dict[str, Any] = json.loads(response.text)
    return answer


def advance(em: Emulator, seconds: float) -> None:
    clock = em.clock
    assert isinstance(clock, FakeClock)
    clock.advance(seconds)


# --------------------------------------------------------------------------- answers


async def test_xml_submit_answer_is_shaped_as_the_provider() -> None:
    em = make()
    ts = int(em.clock.time())
    response = await post(
        em,
        LEGACY,
        {
            "account": ACCOUNT,
            "password": submit_password(ACCOUNT, KEY, MOBILE, TRIAL, ts),
            "mobile": MOBILE,
            "content": TRIAL,
            "time": str(ts),
        },
        query="?method=Submit",
    )
    smsid = em.messages[0].smsid
    assert response.text == (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<SubmitResult xmlns="http://106.ihuyi.com/">\n'
        "<code>2</code>\n<msg>提交成功</msg>\n"
        f"<smsid>{smsid}</smsid>\n</SubmitResult>"
    )
    assert len(smsid) == 20 and smsid.isdigit()
    assert smsid.startswith(str(int(START)))


async def test_json_submit_answer_and_failure_shape() -> None:
    em = make()
    ok = await submit(em)
    assert ok == {"code": 2, "msg": "提交成功", "smsid": em.messages[0].smsid}
    response = await post(em, "/sms/Submit.json", {"account": ACCOUNT, "password": "bad"})
    assert response.text == '{"code":405,"msg":"API ID 或 API KEY 不正确","smsid":"0"}'


async def test_getnum_answers_num_as_number_in_json_and_text_in_xml() -> None:
    em = make(balance=42)
    ts = int(em.clock.time())
    fields = {"account": ACCOUNT, "password": getnum_password(ACCOUNT, KEY, ts), "time": str(ts)}
    response = await post(em, "/sms/GetNum.json", fields)
    assert response.json() == {"code": 2, "msg": "查询成功", "num": 42}
    response = await post(em, LEGACY, fields, query="?method=GetNum")
    assert "<GetNumResult" in response.text and "<num>42</num>" in response.text


async def test_get_requests_with_query_fields_are_answered() -> None:
    em = make()
    async with httpx.AsyncClient(transport=em.transport) as client:
        response = await client.get(
            "http://106.ihuyi.com/webservice/sms.php",
            params={"method": "GetNum", "account": ACCOUNT, "password": KEY, "format": "json"},
        )
    assert response.json()["num"] == 1000


async def test_add_template_then_approve_and_reject() -> None:
    em = make()
    fields = {"account": ACCOUNT, "password": key_digest(KEY), "content": "订单【变量】已发货"}
    response = await post(em, LEGACY, fields, query="?method=AddTemplate")
    assert "<AddTemplateResult" in response.text and "<templateid>1001</templateid>" in response.text
    statuses = [em.templates[1001].status]
    em.approve_template(1001)
    statuses.append(em.templates[1001].status)
    em.reject_template(1001, "含有敏感词")
    statuses.append(em.templates[1001].status)
    assert statuses == ["pending", "approved", "rejected"]
    assert em.templates[1001].reason == "含有敏感词"
    response = await post(em, LEGACY, {**fields, "format": "json"}, query="?method=AddTemplate")
    assert response.json() == {"code": 2, "msg": "提交成功", "templateid": 1002}


async def test_add_template_refusals() -> None:
    em = make()
    base = {"account": ACCOUNT, "password": KEY, "format": "json"}
    for fields, code in [
        ({**base, "account": ""}, 401),
        ({**base, "password": ""}, 402),
        ({**base, "password": "nope"}, 405),
        ({**base, "content": " "}, 404),
        ({**base, "content": "🙂【变量】"}, 4074),
    ]:
        response = await post(em, LEGACY, fields, query="?method=AddTemplate")
        assert response.json()["code"] == code


# --------------------------------------------------------------------------- auth rules


async def test_401_empty_account() -> None:
    assert (await submit(make(), account=""))["code"] == 401


async def test_402_empty_password() -> None:
    em = make()
    response = await post(em, "/sms/Submit.json", {"account": ACCOUNT, "password": "", "mobile": MOBILE})
    assert response.json()["code"] == 402


async def test_4053_unknown_account_405_wrong_key() -> None:
    em = make()
    assert (await submit(em, account="someone-else"))["code"] == 4053
    assert (await submit(em, key="wrong"))["code"] == 40502
    fields = {"account": "someone-else", "password": KEY, "mobile": MOBILE, "content": TRIAL}
    assert (await post(em, "/sms/Submit.json", fields)).json()["code"] == 4053


async def test_405_wrong_plain_key_and_plain_key_accepted() -> None:
    em = make()
    fields = {"account": ACCOUNT, "mobile": MOBILE, "content": TRIAL}
    assert (await post(em, "/sms/Submit.json", {**fields, "password": "wrong"})).json()["code"] == 405
    assert (await post(em, "/sms/Submit.json", {**fields, "password": KEY})).json()["code"] == 2


async def test_40501_time_outside_the_window() -> None:
    em = make(time_window=300)
    assert (await submit(em, t=int(START) - 301))["code"] == 40501
    assert (await submit(em, t=int(START) + 301))["code"] == 40501
    assert (await submit(em, t=int(START) - 300))["code"] == 2


async def test_40502_wrong_dynamic_password() -> None:
    em = make()
    assert (await submit(em, key="not-the-key"))["code"] == 40502


# --------------------------------------------------------------------------- validation rules


async def test_403_empty_mobile() -> None:
    assert (await submit(make(), mobile=""))["code"] == 403


async def test_406_bad_mobile() -> None:
    assert (await submit(make(), mobile="12345"))["code"] == 406


async def test_404_empty_content() -> None:
    assert (await submit(make(), content=""))["code"] == 404


async def test_4073_over_300_legacy_and_500_json() -> None:
    em = make()
    assert (await submit(em, content="验" * 301, flavour="legacy"))["code"] == 4073
    assert (await submit(em, MOBILE, "验" * 300, flavour="legacy"))["code"] == 2
    assert (await submit(em, "13800138001", "验" * 501))["code"] == 4073
    assert (await submit(em, "13800138001", "验" * 500))["code"] == 2


async def test_4074_emoji() -> None:
    assert (await submit(make(), content="你好🙂"))["code"] == 4074


async def test_407_sensitive_words() -> None:
    assert (await submit(make(sensitive_words=["赌博"]), content="来赌博吧"))["code"] == 407


async def test_4030_blacklisted_number() -> None:
    assert (await submit(make(blacklist={MOBILE})))["code"] == 4030


async def test_4051_balance_and_segments_billed() -> None:
    em = make(balance=3)
    long_text = "长" * 140  # 140 characters: 3 segments of 67
    assert count_segments(long_text) == 3
    assert (await submit(em, content=long_text))["code"] == 2
    assert em.balance_of(ACCOUNT) == 0
    assert em.messages[0].segments == 3
    advance(em, 1)
    assert (await submit(em, content="短信"))["code"] == 4051
    assert len(em.messages) == 1


async def test_4072_strict_templates() -> None:
    em = make(strict_templates=True)
    assert (await submit(em, content="随便写的内容"))["code"] == 4072
    assert (await submit(em, content="【互亿无线】您的验证码是：5678。请不要把验证码泄露给其他人。"))["code"] == 2
    template_id = em.add_template("您的订单【变量】已发货")
    advance(em, 1)
    assert (await submit(em, content="您的订单A1234已发货"))["code"] == 2
    em.reject_template(template_id)
    advance(em, 1)
    assert (await submit(em, content="您的订单A1234已发货"))["code"] == 4072


async def test_template_mode_renders_and_checks_variables() -> None:
    em = make()
    assert (await submit(em, content="567890", templateid="1"))["code"] == 2
    message = em.messages[-1]
    assert message.content == "您的验证码是：567890。请不要把验证码泄露给其他人。"
    assert message.template_id == 1
    for content, templateid, code in [
        ("1234", "999", 4071),
        ("12a4", "1", 4072),
        ("123456789", "1", 40722),
        ("1234|5678", "1", 4072),
    ]:
        assert (await submit(em, "13800138001", content, templateid=templateid))["code"] == code
    pending = em.add_template("订单【变量】", approved=False)
    assert (await submit(em, "13800138001", "A1", templateid=str(pending)))["code"] == 4072


# --------------------------------------------------------------------------- limit rules


async def test_4080_one_per_second() -> None:
    em = make()
    assert (await submit(em))["code"] == 2
    assert (await submit(em, content="另一条通知"))["code"] == 4080
    advance(em, 1)
    assert (await submit(em, content="另一条通知"))["code"] == 2


async def test_4082_five_per_day_resets_at_midnight_china_time() -> None:
    em = make()
    for i in range(5):
        assert (await submit(em, content=f"通知第{i}条"))["code"] == 2
        advance(em, 1)
    answer = await submit(em, content="第六条通知")
    assert answer == {"code": 4082, "msg": "超出同一手机号一天之内【5】条短信限制", "smsid": "0"}
    advance(em, 12 * 3600)  # 12:00 + 12 h = 00:00 next day, China time
    assert (await submit(em, content="第六条通知"))["code"] == 2


async def test_4085_five_verification_messages_per_day() -> None:
    em = make()
    for i in range(5):
        assert (await submit(em, content=f"您的验证码是：{1000 + i}。请勿泄露"))["code"] == 2
        advance(em, 1)
    assert (await submit(em, content="您的验证码是：9999。请勿泄露"))["code"] == 4085


async def test_408_twenty_identical_blacklists_the_number() -> None:
    em = make(limits=Limits(per_day=None, verification_per_day=None))
    for _ in range(20):
        assert (await submit(em, content="同样的内容"))["code"] == 2
        advance(em, 1)
    answer = await submit(em, content="同样的内容")
    assert answer["code"] == 408
    assert "[20]" in answer["msg"]
    assert MOBILE in em.blacklist
    advance(em, 1)
    assert (await submit(em, content="不同的内容"))["code"] == 4030


async def test_limits_off_and_per_account() -> None:
    em = Emulator({"a": "k", "b": "k2"}, clock=FakeClock(START), limits=False)
    for _ in range(8):
        assert (await submit(em, account="a", key="k"))["code"] == 2
    em2 = Emulator({"a": "k", "b": "k2"}, clock=FakeClock(START))
    assert (await submit(em2, account="a", key="k"))["code"] == 2
    assert (await submit(em2, account="b", key="k2"))["code"] == 2  # counters are per account


async def test_refused_sends_are_not_billed_nor_counted() -> None:
    em = make(balance=10)
    await submit(em)
    await submit(em, content="x")  # 4080
    assert em.balance_of() == 9
    assert [r.code for r in em.requests] == [2, 4080]


# --------------------------------------------------------------------------- helpers


async def test_last_code_for_and_messages_to() -> None:
    em = make()
    with pytest.raises(LookupError):
        em.last_code_for(MOBILE)
    await submit(em, content="您的验证码是：123456，10分钟内有效")
    advance(em, 1)
    await submit(em, content="欢迎注册，订单20250101已创建")
    assert em.last_code_for("+86" + MOBILE) == "123456"
    assert [m.verification for m in em.messages_to(MOBILE)] == [True, False]


def test_verification_heuristic() -> None:
    assert is_verification(TRIAL)
    assert is_verification("Your code is 8765")
    assert not is_verification("您的订单12345已发货")
    assert not is_verification("验证码：123")


async def test_unexpected_calls_are_recorded_and_fail_verify() -> None:
    em = make()
    async with httpx.AsyncClient(transport=em.transport) as client:
        assert (await client.get("http://x/nowhere")).status_code == 404
        assert (await client.delete("http://x/sms/Submit.json")).status_code == 405
        assert (await client.post("http://x/webservice/sms.php?method=Nope")).status_code == 404
    assert len(em.unexpected) == 3
    with pytest.raises(AssertionError, match="3 unexpected call"):
        em.verify()
    em.reset()
    em.verify()


# --------------------------------------------------------------------------- faults


async def test_fault_http_error_not_processed_by_default() -> None:
    em = make()
    em.fail_next(faults.http_error(503), method="Submit")
    ts = int(em.clock.time())
    fields = {"account": ACCOUNT, "password": submit_password(ACCOUNT, KEY, MOBILE, TRIAL, ts),
              "mobile": MOBILE, "content": TRIAL, "time": str(ts)}
    response = await post(em, "/sms/Submit.json", fields)
    assert response.status_code == 503
    assert em.messages == []
    assert em.requests[-1].fault == "http_error" and em.requests[-1].code is None
    assert (await post(em, "/sms/Submit.json", fields)).json()["code"] == 2
    em.verify()


async def test_fault_garbage_processed_when_asked() -> None:
    em = make()
    em.fail_next(faults.garbage(b"oops", processed=True))
    response = await post(em, "/sms/Submit.json", {"account": ACCOUNT, "password": KEY,
                                                   "mobile": MOBILE, "content": TRIAL})
    assert response.status_code == 200 and response.content == b"oops"
    assert len(em.messages) == 1
    assert em.requests[-1].code == 2


async def test_fault_disconnect_after_processing_raises_remote_protocol_error() -> None:
    em = make()
    em.fail_next(faults.disconnect())
    with pytest.raises(httpx.RemoteProtocolError):
        await post(em, "/sms/Submit.json", {"account": ACCOUNT, "password": KEY,
                                            "mobile": MOBILE, "content": TRIAL})
    assert len(em.messages) == 1  # accepted and billed, answer lost
    assert em.balance_of() == 999


async def test_fault_hang_honours_the_read_timeout() -> None:
    em = make()
    em.fail_next(faults.hang(processed=False))
    async with httpx.AsyncClient(transport=em.transport, timeout=0.05) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("http://x/sms/GetNum.json", data={"account": ACCOUNT, "password": KEY})


async def test_fault_latency_sleeps_on_the_emulator_clock() -> None:
    clock = FakeClock(START, auto_advance=True)
    em = make(clock=clock)
    em.fail_next(faults.latency(7.5))
    response = await post(em, "/sms/GetNum.json", {"account": ACCOUNT, "password": KEY})
    assert response.json()["code"] == 2
    assert clock.time() == START + 7.5


async def test_faults_by_probability_are_seeded_and_unlimited() -> None:
    em = make(seed=1, limits=False)
    em.faults.add(faults.http_error(500), times=None, probability=0.5)
    statuses = []
    for _ in range(40):
        response = await post(em, "/sms/GetNum.json", {"account": ACCOUNT, "password": KEY})
        statuses.append(response.status_code)
    assert 5 < statuses.count(500) < 35
    em.verify()  # unlimited entries are never "unused"


async def test_unused_scheduled_fault_fails_verify() -> None:
    em = make()
    em.fail_next(faults.disconnect(), times=2, method="GetNum")
    with pytest.raises(AssertionError, match="disconnect x2"):
        em.verify()


def test_fault_constructors_validate() -> None:
    with pytest.raises(ValueError):
        faults.latency(-1)
    with pytest.raises(ValueError):
        faults.http_error(99)
    em = make()
    with pytest.raises(ValueError):
        em.faults.add(faults.hang(), times=0)
    with pytest.raises(ValueError):
        em.faults.add(faults.hang(), probability=0)


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", max_codepoint=0xFFFF,
                                      exclude_categories=["Cs"]), min_size=1, max_size=300))
def test_billing_follows_the_segment_rule(content: str) -> None:
    import anyio

    em = make(limits=False)

    async def run() -> dict[str, Any]:
        return await submit(em, content=content, flavour="legacy")

    answer = anyio.run(run)
    if not content.strip() or "\ufe0f" in content or "\u20e3" in content:
        assert answer["code"] in (404, 4074)
        return
    assert answer["code"] == 2
    assert em.messages[0].segments == count_segments(content)
    assert em.balance_of() == 1000 - count_segments(content)
    assert em.messages[0].content == content
