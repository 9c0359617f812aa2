"""The product clients (#17): exact requests, answers in JSON and XML, local validation,
end to end against the emulator (in-process and over loopback), marketing receipts."""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

import ihuyi_async as ih
from ihuyi_async import (
    FakeClock,
    InternationalSmsClient,
    MarketingSmsClient,
    VoiceCodeClient,
    VoiceNoticeClient,
)
from ihuyi_async._transport import CallProgress
from ihuyi_async.pushes import parse_push
from ihuyi_async.testing import Emulator, EmulatorServer

pytestmark = pytest.mark.anyio

ACCOUNT, KEY = "APIID", "APIKEY"
START = 1_700_000_000.0
CST = _dt.timezone(_dt.timedelta(hours=8))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class Recorder:
    """A mock provider answering ``body`` and keeping every request."""

    def __init__(
        self, body: bytes = b'{"code":2,"msg":"ok","smsid":"12345678901234567890"}'
    ) -> None:
        self.body = body
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, content=self.body)

    def fields(self, index: int = -1) -> dict[str, str]:
        return dict(parse_qsl(self.requests[index].content.decode(), keep_blank_values=True))


def build(cls: type[Any], recorder: Recorder, **kwargs: Any) -> Any:
    kwargs.setdefault("clock", FakeClock(START))
    kwargs.setdefault("limiter", None)
    return cls(ACCOUNT, KEY, transport=httpx.MockTransport(recorder), **kwargs)


# ----------------------------------------------------------------- exact requests


async def test_marketing_request_fields_path_and_signature() -> None:
    rec = Recorder()
    async with build(MarketingSmsClient, rec) as client:
        at = _dt.datetime(2023, 11, 15, 12, 0, 0, tzinfo=_dt.timezone.utc)  # 20:00 in UTC+8
        result = await client.send(["13800138000", "+8613900139000"], "新品上市", at=at)
    request = rec.requests[0]
    assert str(request.url) == "https://api.yx.ihuyi.com/webservice/sms.php?method=Submit"
    fields = rec.fields()
    assert fields["mobile"] == "13800138000,13900139000"
    assert fields["content"] == "新品上市退订回T"
    assert fields["time"] == str(int(START))
    assert fields["stime"] == "2023-11-15 20:00:00"
    assert fields["format"] == "json"
    assert fields["password"] == md5(
        f"{ACCOUNT}{KEY}13800138000,13900139000新品上市退订回T{int(START)}"
    )
    assert b"mobile=13800138000%2C13900139000" in request.content
    assert result.task_ids == ("12345678901234567890",)
    assert result.chunks[0].mobiles == ("13800138000", "13900139000")


async def test_marketing_opt_out_not_doubled_and_can_be_off() -> None:
    rec = Recorder()
    async with build(MarketingSmsClient, rec) as client:
        await client.send("13800138000", "促销，退订回T")
    async with build(MarketingSmsClient, rec, opt_out=False) as client:
        await client.send("13800138000", "促销")
    assert rec.fields(0)["content"] == "促销，退订回T"
    assert rec.fields(1)["content"] == "促销"


async def test_marketing_chunks_and_per_chunk_outcomes() -> None:
    answers = iter(
        [
            b'{"code":2,"msg":"ok","smsid":"11111111111111111111"}',
            b'{"code":4051,"msg":"balance","smsid":"0"}',
            b"<html>502</html>",
        ]
    )
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(parse_qsl(request.content.decode()))["mobile"])
        return httpx.Response(200, content=next(answers))

    numbers = [f"1380013800{i}" for i in range(5)]
    client = MarketingSmsClient(
        ACCOUNT,
        KEY,
        chunk_size=2,
        transport=httpx.MockTransport(handler),
        limiter=None,
        clock=FakeClock(START),
    )
    async with client:
        result = await client.send(numbers, "hi")
    assert seen == ["13800138000,13800138001", "13800138002,13800138003", "13800138004"]
    first, second, third = result.chunks
    assert first.task_id == "11111111111111111111" and first.accepted
    assert isinstance(second.error, ih.AccountError) and second.error.code == 4051
    assert third.unknown and isinstance(third.error, ih.DeliveryUnknownError)
    assert not result.accepted
    assert result.chunk_of("13800138004") is third


async def test_international_request_and_ismsid() -> None:
    rec = Recorder(b'{"code":2,"msg":"ok","ismsid":"98765432109876543210"}')
    async with build(InternationalSmsClient, rec) as client:
        result = await client.send("+85251234567", "Hello")
        await client.send("852 51234567", "Hello again")
    assert (
        str(rec.requests[0].url) == "https://api.isms.ihuyi.com/webservice/isms.php?method=Submit"
    )
    assert rec.fields(0)["mobile"] == "852 51234567" == rec.fields(1)["mobile"]
    assert b"mobile=852+51234567" in rec.requests[0].content
    assert rec.fields(0)["password"] == md5(f"{ACCOUNT}{KEY}852 51234567Hello{int(START)}")
    assert result.smsid == "98765432109876543210"


async def test_voice_code_request() -> None:
    rec = Recorder()
    async with build(VoiceCodeClient, rec) as client:
        result = await client.send("13800138000", "4821")
    assert (
        str(rec.requests[0].url) == "https://api.voice.ihuyi.com/webservice/voice.php?method=Submit"
    )
    fields = rec.fields()
    assert fields["content"] == "4821" and fields["mobile"] == "13800138000"
    assert fields["password"] == md5(f"{ACCOUNT}{KEY}138001380004821{int(START)}")
    assert result.smsid == "12345678901234567890"


async def test_voice_notice_both_paths() -> None:
    rec = Recorder()
    async with build(VoiceNoticeClient, rec) as client:
        await client.send("010-12345678", "您的订单已发货")
    assert str(rec.requests[0].url) == "https://api.vm.ihuyi.com/webservice/voice.php?method=Submit"
    assert rec.fields(0)["mobile"] == "01012345678"
    rec2 = Recorder(b'{"code":2,"msg":"ok","voiceid":"55555555555555555555"}')
    async with build(VoiceNoticeClient, rec2, flavour="json") as client:
        result = await client.send_template("13800138000", template_id=7, variables=["A1", 3])
    assert str(rec2.requests[0].url) == "https://api.ihuyi.com/vm/Submit.json"
    fields = rec2.fields()
    assert fields["templateid"] == "7" and fields["content"] == "A1|3" and "format" not in fields
    assert fields["password"] == md5(f"{ACCOUNT}{KEY}13800138000A1|3{int(START)}")
    assert result.smsid == "55555555555555555555"


async def test_balance_on_each_product_path() -> None:
    rec = Recorder(b'{"code":2,"msg":"ok","num":42}')
    paths = {
        MarketingSmsClient: "https://api.yx.ihuyi.com/webservice/sms.php?method=GetNum",
        InternationalSmsClient: "https://api.isms.ihuyi.com/webservice/isms.php?method=GetNum",
        VoiceCodeClient: "https://api.voice.ihuyi.com/webservice/voice.php?method=GetNum",
        VoiceNoticeClient: "https://api.vm.ihuyi.com/webservice/voice.php?method=GetNum",
    }
    for cls, url in paths.items():
        async with build(cls, rec) as client:
            assert (await client.balance()).num == 42
        assert str(rec.requests[-1].url) == url
        assert rec.fields()["password"] == md5(f"{ACCOUNT}{KEY}{int(START)}")


# ----------------------------------------------------------------- answers, JSON and XML


@pytest.mark.parametrize(
    ("cls", "field"),
    [(InternationalSmsClient, "ismsid"), (VoiceCodeClient, "smsid"), (MarketingSmsClient, "smsid")],
)
async def test_xml_answers_success_and_error(cls: type[Any], field: str) -> None:
    ok = (
        '<?xml version="1.0" encoding="utf-8"?><SubmitResult xmlns="http://106.ihuyi.com/">'
        f"<code>2</code><msg>提交成功</msg><{field}>12345678901234567890</{field}></SubmitResult>"
    ).encode()
    bad = b"<SubmitResult><code>4030</code><msg>blacklisted</msg><smsid>0</smsid></SubmitResult>"
    args = {
        InternationalSmsClient: ("+85251234567", "hi"),
        VoiceCodeClient: ("13800138000", "1234"),
        MarketingSmsClient: ("13800138000", "hi"),
    }[cls]
    rec = Recorder(ok)
    async with build(cls, rec, response_format="xml") as client:
        result = await client.send(*args)
        ident = result.task_ids[0] if cls is MarketingSmsClient else result.smsid
        assert ident == "12345678901234567890"
        assert rec.fields()["format"] == "xml"
        rec.body = bad
        if cls is MarketingSmsClient:
            outcome = await client.send(*args)
            assert (
                isinstance(outcome.chunks[0].error, ih.ApiError)
                and outcome.chunks[0].error.code == 4030
            )
        else:
            with pytest.raises(ih.ApiError) as caught:
                await client.send(*args)
            assert caught.value.code == 4030


async def test_wrong_id_field_is_unknown_not_accepted() -> None:
    rec = Recorder(b'{"code":2,"msg":"ok","smsid":"12345678901234567890"}')  # no ismsid
    async with build(InternationalSmsClient, rec) as client:
        with pytest.raises(ih.DeliveryUnknownError):
            await client.send("+85251234567", "hi")


# ----------------------------------------------------------------- validation, no request


@pytest.mark.parametrize(
    ("cls", "call", "error"),
    [
        (MarketingSmsClient, lambda c: c.send([], "hi"), ih.InvalidRequestError),
        (
            MarketingSmsClient,
            lambda c: c.send(["13800138000", "12345"], "hi"),
            ih.InvalidRequestError,
        ),
        (
            MarketingSmsClient,
            lambda c: c.send("13800138000", "hi", at=_dt.datetime(2030, 1, 1)),
            ValueError,
        ),
        (
            MarketingSmsClient,
            lambda c: c.send("13800138000", "hi", at=_dt.datetime(2020, 1, 1, tzinfo=CST)),
            ValueError,
        ),
        (VoiceCodeClient, lambda c: c.send("13800138000", "12a4"), ValueError),
        (VoiceCodeClient, lambda c: c.send("13800138000", "1234567"), ValueError),
        (VoiceCodeClient, lambda c: c.send("13800138000", "١٢٣٤"), ValueError),
        (InternationalSmsClient, lambda c: c.send("+999 1", "hi"), ih.InvalidRequestError),
        (InternationalSmsClient, lambda c: c.send("+8613800138000", "hi"), ih.InvalidRequestError),
        (InternationalSmsClient, lambda c: c.send("852 1234", "hi"), ih.InvalidRequestError),
        (InternationalSmsClient, lambda c: c.send("15012345678", "hi"), ih.InvalidRequestError),
        (InternationalSmsClient, lambda c: c.send("13800138000", "hi"), ih.InvalidRequestError),
        (InternationalSmsClient, lambda c: c.send("85251234567", "hi"), ih.InvalidRequestError),
        (VoiceNoticeClient, lambda c: c.send("12345", "hi"), ih.InvalidRequestError),
        (
            VoiceNoticeClient,
            lambda c: c.send_template("13800138000", template_id=1, variables=["1"]),
            ih.UnsupportedOperationError,
        ),
    ],
)
async def test_bad_input_refused_before_any_request(
    cls: type[Any], call: Callable[[Any], Any], error: type[Exception]
) -> None:
    rec = Recorder()
    async with build(cls, rec) as client:
        with pytest.raises(error):
            await call(client)
    assert rec.requests == []


async def test_marketing_names_the_bad_number_and_mainland_points_to_ihuyiclient() -> None:
    rec = Recorder()
    async with build(MarketingSmsClient, rec) as client:
        with pytest.raises(ih.InvalidRequestError, match="number 2 of the list") as caught:
            await client.send(["13800138000", "12345678901"], "hi")
        assert caught.value.code == 406 and caught.value.local
    async with build(InternationalSmsClient, rec) as client:
        with pytest.raises(ih.InvalidRequestError, match="IhuyiClient"):
            await client.send("+86 13800138000", "hi")


async def test_international_bare_digits_are_refused_not_guessed() -> None:
    # Read as +15012345678, a mainland mobile is a valid US number: it must not go out.
    rec = Recorder(b'{"code":2,"msg":"ok","ismsid":"1"}')
    async with build(InternationalSmsClient, rec) as client:
        for mainland in ("15012345678", "13800138000", "8613800138000"):
            with pytest.raises(ih.InvalidRequestError, match="IhuyiClient") as caught:
                await client.send(mainland, "hi")
            assert caught.value.code == 406 and caught.value.local
        with pytest.raises(ih.InvalidRequestError, match="country code") as caught:
            await client.send("85251234567", "hi")
        assert "IhuyiClient" not in str(caught.value) and caught.value.code == 406
        assert rec.requests == []
        await client.send("0085251234567", "hi")
        await client.send("1 2015550123", "hi")
    assert [rec.fields(i)["mobile"] for i in (0, 1)] == ["852 51234567", "1 2015550123"]


def test_voice_notice_flavours_read_their_own_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # The two paths have different default hosts: a base URL meant for the legacy path must
    # not send the json path's requests there (and the other way round).
    monkeypatch.setenv("IHUYI_VOICE_NOTICE_ACCOUNT", "vm-id")
    monkeypatch.setenv("IHUYI_VOICE_NOTICE_API_KEY", "vm-key")
    monkeypatch.setenv("IHUYI_VOICE_NOTICE_BASE_URL", "http://127.0.0.1:7")
    monkeypatch.delenv("IHUYI_VOICE_NOTICE_JSON_BASE_URL", raising=False)
    assert "127.0.0.1:7" in repr(VoiceNoticeClient())
    assert "https://api.ihuyi.com" in repr(VoiceNoticeClient(flavour="json"))
    monkeypatch.setenv("IHUYI_VOICE_NOTICE_JSON_BASE_URL", "http://127.0.0.1:8")
    assert "127.0.0.1:8" in repr(VoiceNoticeClient(flavour="json"))
    monkeypatch.delenv("IHUYI_VOICE_NOTICE_BASE_URL")
    assert "https://api.vm.ihuyi.com" in repr(VoiceNoticeClient())


def test_own_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IHUYI_ACCOUNT", "sms-id")
    monkeypatch.setenv("IHUYI_API_KEY", "sms-key")
    with pytest.raises(ValueError, match="IHUYI_MARKETING_ACCOUNT"):
        MarketingSmsClient()
    monkeypatch.setenv("IHUYI_VOICE_CODE_ACCOUNT", "v-id")
    monkeypatch.setenv("IHUYI_VOICE_CODE_API_KEY", "v-key")
    monkeypatch.setenv("IHUYI_VOICE_CODE_BASE_URL", "http://127.0.0.1:9")
    client = VoiceCodeClient()
    assert "v-id" in repr(client) and "v-key" not in repr(client)
    assert "127.0.0.1:9" in repr(client)


async def test_default_limiter_rules_per_product() -> None:
    rec = Recorder()
    client = VoiceCodeClient(
        ACCOUNT, KEY, transport=httpx.MockTransport(rec), clock=FakeClock(START, auto_advance=True)
    )
    async with client:
        assert client.limiter is not None
        names = {r.name for r in client.limiter.rules}
        assert "verification_per_day" in names
        for i in range(5):
            await client.send("13800138000", f"123{i}")
        with pytest.raises(ih.LocalRateLimitError) as caught:
            await client.send("13800138000", "9999")
        assert caught.value.code in (4085, 4082)  # the day's quota, whichever rule is checked first
    assert len(rec.requests) == 5
    market = MarketingSmsClient(ACCOUNT, KEY, transport=httpx.MockTransport(rec))
    assert market.limiter is not None
    assert {r.name for r in market.limiter.rules} == {
        "per_second",
        "identical_per_minute",
        "identical_per_day",
    }
    await market.aclose()


# ----------------------------------------------------------------- end to end


@pytest.fixture(params=["transport", "loopback"])
async def connect(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Any]]:
    servers: list[EmulatorServer] = []
    clients: list[Any] = []

    async def make(em: Emulator, cls: type[Any], **kwargs: Any) -> Any:
        kwargs = {"clock": em.clock, "limiter": None, **kwargs}
        if request.param == "loopback":
            server = EmulatorServer(em)
            await server.__aenter__()
            servers.append(server)
            kwargs["base_url"] = server.url
        else:
            kwargs["transport"] = em.transport
        client = cls(ACCOUNT, KEY, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
    for server in servers:
        await server.__aexit__(None, None, None)


async def test_e2e_marketing_chunks_billing_schedule_and_task_id_receipts(connect: Any) -> None:
    em = Emulator({ACCOUNT: KEY}, 100, clock=FakeClock(START), products={ACCOUNT: "marketing"})
    client = await connect(em, MarketingSmsClient, chunk_size=2)
    numbers = ["13800138000", "13800138001", "13800138002"]
    at = _dt.datetime.fromtimestamp(START + 3600, CST)
    result = await client.send(numbers, "周末特惠", at=at)
    assert result.accepted and len(result.task_ids) == 2
    sent = em.messages
    assert [m.mobile for m in sent] == numbers
    assert {m.smsid for m in sent} == set(result.task_ids)
    assert all(m.product == "marketing" and m.scheduled == at for m in sent)
    assert em.balance_of(ACCOUNT) == 97
    assert (await client.balance()).num == 97
    # receipts of marketing sends carry task_id, and find their send
    em.receipt_url = "http://127.0.0.1:9/never"  # deliver() builds the forms; nothing listens
    for message in sent:
        form = {
            "code": "2",
            "msg": "DELIVRD",
            "mobilephone": message.mobile,
            "task_id": message.smsid,
            "report_time": "2023-11-15 08:00:00",
        }
        receipt = parse_push(form)
        assert isinstance(receipt, ih.pushes.DeliveryReceipt)
        chunk = result.match(receipt)
        assert chunk is not None and message.mobile in chunk.mobiles
    stray = parse_push(
        {
            "code": "2",
            "msg": "DELIVRD",
            "mobilephone": "13800138002",
            "task_id": result.task_ids[0],
            "report_time": "2023-11-15 08:00:00",
        }
    )
    assert isinstance(stray, ih.pushes.DeliveryReceipt)
    assert result.match(stray) is None  # that number was in the other chunk


async def test_e2e_emulator_queues_task_id_receipts_for_marketing() -> None:
    em = Emulator(
        {ACCOUNT: KEY},
        100,
        clock=FakeClock(START),
        products={ACCOUNT: "marketing"},
        receipt_url="http://127.0.0.1:9/receipts",
    )
    async with MarketingSmsClient(
        ACCOUNT, KEY, transport=em.transport, clock=em.clock, limiter=None
    ) as client:
        result = await client.send(["13800138000", "13800138001"], "hi")
    queued = [p.form for p in em.outbox._queue]  # noqa: SLF001 - what would be pushed
    assert [f["task_id"] for f in queued] == [result.task_ids[0]] * 2
    assert all("smsid" not in f for f in queued)


async def test_e2e_international_voice_code_and_voice_notice(connect: Any) -> None:
    em = Emulator({ACCOUNT: KEY}, 100, clock=FakeClock(START, auto_advance=True))
    intl = await connect(em, InternationalSmsClient)
    result = await intl.send("+85251234567", "Your order shipped")
    assert em.messages[-1].mobile == "852 51234567" and em.messages[-1].smsid == result.smsid
    assert em.messages[-1].product == "international"
    voice = await connect(em, VoiceCodeClient)
    code = await voice.send("13800138000", "482913")
    assert em.messages[-1].product == "voice-code" and em.messages[-1].content == "482913"
    assert em.messages[-1].smsid == code.smsid and em.messages[-1].verification
    notice = await connect(em, VoiceNoticeClient, flavour="json")
    template_id = em.add_template("您的订单【变量】已发货", account=ACCOUNT)
    voiced = await notice.send_template("010-12345678", template_id=template_id, variables=["A123"])
    last = em.messages[-1]
    assert last.product == "voice-notice" and last.content == "您的订单A123已发货"
    assert last.mobile == "01012345678" and last.smsid == voiced.smsid
    assert em.balance_of(ACCOUNT) == 100 - 1 - 1 - 1
    assert em.unexpected == []


async def test_e2e_emulator_refuses_what_the_provider_would(connect: Any) -> None:
    em = Emulator({ACCOUNT: KEY}, 100, clock=FakeClock(START, auto_advance=True))
    intl = await connect(em, InternationalSmsClient, retry=ih.RetryPolicy(max_attempts=1))
    # around the client's validation: the raw mainland number on isms.php is 406
    body = intl._pforms.submit("86 13800138000", "hi", int(START))
    status, data = await intl._exchange(
        intl._submit_url, lambda: body, CallProgress(), idempotent=False
    )
    assert status == 200 and b'"code":406' in data


# ----------------------------------------------------------------- shared core: limiter, keys


async def test_marketing_chunk_refused_gives_every_numbers_slot_back() -> None:
    from ihuyi_async.limiter import Limiter, Rule

    clock = FakeClock(START)
    limiter = Limiter([Rule.per_day("day", 1, code=4082)], clock=clock, wait=False)
    rec = Recorder(b'{"code":4051,"msg":"balance","smsid":"0"}')
    numbers = ["13800138000", "13800138001", "13800138002"]
    async with build(MarketingSmsClient, rec, limiter=limiter, clock=clock) as client:
        first = await client.send(numbers, "hi")
        assert first.chunks[0].error is not None and first.chunks[0].error.code == 4051
        rec.body = b'{"code":2,"msg":"ok","smsid":"12345678901234567890"}'
        second = await client.send(numbers, "hi")  # the refunded slots allow it
        assert second.accepted
        third = await client.send(["13800138001"], "again")  # now the day's slot is taken
        assert isinstance(third.chunks[0].error, ih.LocalRateLimitError)
    stats = limiter.statistics()
    assert stats.refunded == 3 and stats.acquired == 6
    assert len(rec.requests) == 2


async def test_marketing_provider_rate_limit_fills_each_numbers_rule() -> None:
    from ihuyi_async.limiter import Limiter, Rule

    clock = FakeClock(START)
    limiter = Limiter([Rule.per_day("day", 5, code=4082)], clock=clock, wait=False)
    rec = Recorder(b'{"code":4082,"msg":"5 per day","smsid":"0"}')
    async with build(MarketingSmsClient, rec, limiter=limiter, clock=clock) as client:
        await client.send(["13800138000", "13800138001"], "hi")
        for number in ("13800138000", "13800138001"):
            again = await client.send(number, "hi")
            assert isinstance(again.chunks[0].error, ih.LocalRateLimitError)
    assert limiter.statistics().observed == 2
    assert len(rec.requests) == 1


async def test_voice_code_idempotency_key_sends_once() -> None:
    rec = Recorder()
    async with build(VoiceCodeClient, rec) as client:
        first = await client.send("13800138000", "4821", idempotency_key="login-1")
        again = await client.send("13800138000", "4821", idempotency_key="login-1")
    assert len(rec.requests) == 1
    assert again.replayed and again.smsid == first.smsid


# ----------------------------------------------------------------- properties


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_REGIONS = ["HK", "MO", "TW", "SG", "US", "GB", "JP", "KR", "DE", "FR", "AU", "MY", "TH", "BR"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(region=st.sampled_from(_REGIONS), e164=st.booleans())
def test_international_numbers_normalise_to_what_the_emulator_accepts(
    region: str, e164: bool
) -> None:
    import phonenumbers

    from ihuyi_async._products import _international_number
    from ihuyi_async.testing._model import _product_numbers

    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    national = phonenumbers.national_significant_number(example)
    given_as = (
        f"+{example.country_code}{national}" if e164 else f"{example.country_code} {national}"
    )
    wire = _international_number(given_as)
    assert wire == f"{example.country_code} {national}"
    assert _product_numbers("international", wire) == (0, [wire])


@settings(max_examples=30, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=23),
    size=st.integers(min_value=1, max_value=7),
    dupes=st.integers(min_value=0, max_value=3),
)
def test_marketing_chunks_cover_every_number_once(count: int, size: int, dupes: int) -> None:
    import anyio

    numbers = [f"1390000{i:04d}" for i in range(count)]
    given_numbers = numbers + numbers[:dupes]
    rec = Recorder()

    async def main() -> Any:
        async with build(MarketingSmsClient, rec, chunk_size=size) as client:
            return await client.send(given_numbers, "hi")

    result = anyio.run(main)
    sent = [
        m for r in rec.requests for m in dict(parse_qsl(r.content.decode()))["mobile"].split(",")
    ]
    assert sent == numbers
    assert all(len(c.mobiles) <= size for c in result.chunks)
    assert [m for c in result.chunks for m in c.mobiles] == numbers
    assert len(rec.requests) == -(-count // size)


async def test_e2e_voice_notice_legacy_and_international_xml(connect: Any) -> None:
    em = Emulator(
        {ACCOUNT: KEY},
        100,
        clock=FakeClock(START, auto_advance=True),
        products={ACCOUNT: "voice-notice"},
    )
    notice = await connect(em, VoiceNoticeClient, response_format="xml")
    sent = await notice.send("13800138000", "您的订单已发货")
    assert em.messages[-1].product == "voice-notice" and em.messages[-1].smsid == sent.smsid
    intl = await connect(em, InternationalSmsClient, response_format="xml")
    result = await intl.send("852 51234567", "hi")
    assert em.messages[-1].smsid == result.smsid
    assert em.requests[-1].fields["format"] == "xml"
    with pytest.raises(ih.InvalidRequestError):
        await notice.send("", "x")
    assert len(em.requests) == 2


async def test_products_share_one_user_pool_and_leave_it_open() -> None:
    em = Emulator({ACCOUNT: KEY}, 100, clock=FakeClock(START, auto_advance=True))
    async with httpx.AsyncClient(transport=em.transport) as shared:
        intl = InternationalSmsClient(
            ACCOUNT, KEY, http_client=shared, clock=em.clock, limiter=None
        )
        voice = VoiceCodeClient(ACCOUNT, KEY, http_client=shared, clock=em.clock, limiter=None)
        async with intl, voice:
            assert intl.http_client is shared and voice.http_client is shared
            await intl.send("+85251234567", "hi")
            await voice.send("13800138000", "1234")
        assert not shared.is_closed
    assert [m.product for m in em.messages] == ["international", "voice-code"]


async def test_marketing_local_refusal_of_a_later_chunk_keeps_the_earlier_task_id() -> None:
    from ihuyi_async.limiter import Limiter, Rule

    clock = FakeClock(START)
    limiter = Limiter([Rule.per_day("day", 1, code=4082)], clock=clock, wait=False)
    rec = Recorder()
    async with build(MarketingSmsClient, rec, limiter=limiter, clock=clock, chunk_size=2) as client:
        await client.send("13800138003", "earlier")  # uses 13800138003's day
        result = await client.send(
            ["13800138000", "13800138001", "13800138002", "13800138003"], "hi"
        )
    first, second = result.chunks
    assert first.task_id == "12345678901234567890"
    assert isinstance(second.error, ih.LocalRateLimitError) and second.task_id is None
    assert len(rec.requests) == 2  # "earlier" and the first chunk; the refused chunk not sent


async def test_emulator_limits_per_product() -> None:
    from ihuyi_async.testing import Limits

    clock = FakeClock(START, auto_advance=True)
    em = Emulator(
        {ACCOUNT: KEY},
        100,
        clock=clock,
        product_limits={"international": Limits(per_second=None, per_day=2)},
        products={ACCOUNT: "marketing"},
    )
    async with InternationalSmsClient(
        ACCOUNT, KEY, transport=em.transport, clock=em.clock, limiter=None
    ) as intl:
        await intl.send("+85251234567", "one")
        await intl.send("+85251234567", "two")
        with pytest.raises(ih.RateLimitedError) as caught:
            await intl.send("+85251234567", "three")
        assert caught.value.code == 4082 and not caught.value.local
    async with MarketingSmsClient(
        ACCOUNT, KEY, transport=em.transport, clock=em.clock, limiter=None
    ) as market:
        for i in range(7):  # marketing: no daily cap of 5 by default
            clock.advance(2)
            result = await market.send("13800138000", f"offer {i}")
            assert result.accepted


async def test_id_field_is_configurable() -> None:
    rec = Recorder(b'{"code":2,"msg":"ok","voiceid":"77777777777777777777"}')
    async with build(VoiceCodeClient, rec) as client:
        with pytest.raises(ih.DeliveryUnknownError):  # smsid expected by default
            await client.send("13800138000", "1234")
    async with build(VoiceCodeClient, rec, id_field="voiceid") as client:
        assert (await client.send("13800138001", "1234")).smsid == "77777777777777777777"
    with pytest.raises(ValueError, match="id_field"):
        VoiceCodeClient(ACCOUNT, KEY, id_field="voice id")


def test_product_options_are_the_constructors_keyword_parameters() -> None:
    import inspect

    from ihuyi_async._products import ProductOptions, _ProductClient

    signature = inspect.signature(_ProductClient.__init__)
    keywords = {  # annotations are strings here (postponed evaluation): compare them as text
        name: str(p.annotation)
        for name, p in signature.parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    declared = {  # a TypedDict keeps them as ForwardRef('...')
        k: getattr(v, "__forward_arg__", v) for k, v in ProductOptions.__annotations__.items()
    }
    assert declared == keywords
    for cls in (MarketingSmsClient, VoiceCodeClient, VoiceNoticeClient):
        options = inspect.signature(cls.__init__).parameters["options"]
        assert "Unpack[ProductOptions]" in str(options.annotation)


@pytest.mark.parametrize("response_format", ["json", "xml"])
@pytest.mark.parametrize(
    ("cls", "options", "args"),
    [
        (InternationalSmsClient, {}, ("+85251234567", "hi")),
        (VoiceCodeClient, {}, ("13800138000", "1234")),
        (VoiceNoticeClient, {}, ("13800138000", "您的订单已发货")),
        (MarketingSmsClient, {}, (["13800138000", "13800138001"], "hi")),
    ],
)
async def test_error_answers_in_both_formats_keep_code_and_text(
    cls: type[Any], options: dict[str, Any], args: tuple[Any, ...], response_format: str
) -> None:
    body = (
        '{"code":4085,"msg":"验证码超限","smsid":"0"}'
        if response_format == "json"
        else "<SubmitResult><code>4085</code><msg>验证码超限</msg><smsid>0</smsid></SubmitResult>"
    ).encode()
    rec = Recorder(body)
    async with build(cls, rec, response_format=response_format, **options) as client:
        if cls is MarketingSmsClient:
            error = (await client.send(*args)).chunks[0].error
        else:
            with pytest.raises(ih.ApiError) as caught:
                await client.send(*args)
            error = caught.value
    assert isinstance(error, ih.RateLimitedError) and not error.local
    assert error.code == 4085 and "验证码超限" in error.message
    assert len(rec.requests) == 1  # a refusal is never retried


@pytest.mark.parametrize(
    "body", [b'{"code":2,', b"{" * 70000], ids=["malformed_answer", "oversized"]
)
async def test_unknown_outcome_of_a_code_carries_no_content_digest(body: bytes) -> None:
    # 10^4 to 10^6 codes: an unkeyed digest of the content would give the code away.
    code = "482913"
    leaks = (code, hashlib.sha256(code.encode()).hexdigest()[:12])
    rec = Recorder(body)
    async with build(VoiceCodeClient, rec) as voice, build(ih.IhuyiClient, rec) as sms:
        sends: list[Callable[[], Awaitable[object]]] = [
            lambda: voice.send("13800138000", code),
            lambda: voice.send("13800138000", code, idempotency_key="k-1"),
            lambda: voice.send("13800138000", code, idempotency_key="k-1"),  # the replay
            lambda: sms.send("13800138000", f"您的验证码是：{code}", kind="verification"),
        ]
        for send in sends:
            with pytest.raises(ih.DeliveryUnknownError) as caught:
                await send()
            err = caught.value
            assert err.content_digest == "" and err.mobile_masked == "138****8000"
            assert not any(leak in f"{err} {err!r}" for leak in leaks)
        # any other content keeps its digest, to match receipts by
        with pytest.raises(ih.DeliveryUnknownError) as caught:
            await sms.send("13800138000", "您的订单已发货")
        assert len(caught.value.content_digest) == 12
    assert len(rec.requests) == 4  # the replay sent nothing


@pytest.mark.parametrize("code", ["12a4", "1234567", "١٢٣٤", "123"])
async def test_bad_voice_code_is_a_local_invalid_request(code: str) -> None:
    rec = Recorder()
    async with build(VoiceCodeClient, rec) as client:
        with pytest.raises(ih.InvalidRequestError, match="4 to 6 ASCII digits") as caught:
            await client.send("13800138000", code)
    err = caught.value
    assert err.local and err.code == 404 and err.category == "request"
    assert isinstance(err, ValueError)  # as it was before it became an InvalidRequestError
    assert err.mobile_masked == "138****8000" and code not in str(err)
    assert rec.requests == []
