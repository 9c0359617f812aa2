"""The Verifier through the plugin's ``ihuyi_verifier`` (the emulator's client and fake clock)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from ihuyi_async import IhuyiClient, InvalidRequestError
from ihuyi_async.limiter import Grant, MemoryStore, Refusal, RuleSet
from ihuyi_async.testing import Emulator, FakeClock
from ihuyi_async.verify import VerificationRefusedError, Verifier

pytestmark = [pytest.mark.anyio, pytest.mark.ihuyi(client={"flavour": "json"})]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def verifier(ihuyi_verifier: Verifier) -> Verifier:
    """The plugin's fixture: the trial template, ``ihuyi_client``, the emulator's clock."""
    return ihuyi_verifier


async def test_texted_code_is_approved_once(verifier: Verifier, ihuyi_emulator: Emulator) -> None:
    started = await verifier.start("13800138000", ip="10.0.0.1")
    assert started.delivery == "sent" and started.sends == 1
    code = ihuyi_emulator.last_code_for("13800138000")
    assert len(code) == 6
    assert (await verifier.check("13800138000", code)).status == "approved"
    assert (await verifier.check("13800138000", code)).status == "not_found"


async def test_resend_within_60s_is_refused_then_allowed(
    verifier: Verifier, ihuyi_emulator: Emulator
) -> None:
    await verifier.start("13800138000")
    with pytest.raises(VerificationRefusedError) as info:
        await verifier.start("13800138000")
    assert info.value.retry_after == pytest.approx(60.0, abs=0.01)
    assert len(ihuyi_emulator.messages) == 1
    clock = ihuyi_emulator.clock
    assert isinstance(clock, FakeClock)
    clock.advance(60)
    await verifier.start("13800138000")
    assert len(ihuyi_emulator.messages) == 2


async def test_invalid_number_stores_and_sends_nothing(
    verifier: Verifier, ihuyi_emulator: Emulator
) -> None:
    with pytest.raises(InvalidRequestError):
        await verifier.start("12345")
    assert ihuyi_emulator.requests == []


async def test_one_source_cannot_pump_many_numbers(
    verifier: Verifier, ihuyi_emulator: Emulator
) -> None:
    numbers = [f"1380013{i:04d}" for i in range(11)]
    for number in numbers[:10]:
        await verifier.start(number, ip="10.0.0.9")
    with pytest.raises(VerificationRefusedError) as info:
        await verifier.start(numbers[10], ip="10.0.0.9")
    assert info.value.scope == "source"
    assert len(ihuyi_emulator.messages) == 10


def test_short_secret_is_a_value_error(ihuyi_client: IhuyiClient) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Verifier(ihuyi_client, template_id=1, secret="short")


@pytest.mark.ihuyi(client={"flavour": "json", "limiter": None}, balance=0)
async def test_failed_send_leaves_no_code_and_no_resend_window(verifier: Verifier) -> None:
    from ihuyi_async import ApiError

    with pytest.raises(ApiError):
        await verifier.start("13800138000")
    assert (await verifier.check("13800138000", "000000")).status == "not_found"
    with pytest.raises(ApiError):  # not refused as a resend: the window was not consumed
        await verifier.start("13800138000")


@pytest.mark.ihuyi(verifier={"content": "【测试】您的验证码是{code}，5分钟内有效。", "length": 4})
async def test_the_marker_configures_the_fixture(
    ihuyi_verifier: Verifier, ihuyi_emulator: Emulator
) -> None:
    await ihuyi_verifier.start("13800138000")
    [message] = ihuyi_emulator.messages
    code = ihuyi_emulator.last_code_for("13800138000")
    assert len(code) == 4 and message.content == f"【测试】您的验证码是{code}，5分钟内有效。"
    assert message.template_id is None and message.verification


async def test_last_code_for_reads_a_ten_digit_code(
    ihuyi_client: IhuyiClient, ihuyi_emulator: Emulator
) -> None:
    verifier = Verifier(
        ihuyi_client, content="您的验证码是{code}。", length=10, clock=ihuyi_emulator.clock
    )
    await verifier.start("13800138000")
    code = ihuyi_emulator.last_code_for("13800138000")
    assert len(code) == 10
    assert (await verifier.check("13800138000", code)).approved


class _HeldLimits(MemoryStore):
    """The limiter's memory store, but every reserve waits until ``go`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.go = anyio.Event()

    def nowait_reserver(self, rules: RuleSet, selected: tuple[int, ...]) -> Any:
        return None  # no synchronous path: the limiter awaits reserve()

    async def reserve(
        self,
        rules: RuleSet,
        selected: tuple[int, ...],
        mobile: str,
        digest: str,
        now: float,
        max_delay: float,
    ) -> Grant | Refusal:
        await self.go.wait()
        return await super().reserve(rules, selected, mobile, digest, now, max_delay)


async def test_a_start_cancelled_before_the_send_leaves_no_code_and_no_window(
    ihuyi_client: IhuyiClient, ihuyi_emulator: Emulator
) -> None:
    limits = _HeldLimits()
    verifier = Verifier(
        ihuyi_client, template_id=1, clock=ihuyi_emulator.clock, limiter_store=limits
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(verifier.start, "13800138000")
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert (await verifier.check("13800138000", "000000")).status == "not_found"
    limits.go.set()
    started = await verifier.start("13800138000")  # not refused as a resend
    assert started.delivery == "sent" and len(ihuyi_emulator.messages) == 1


async def test_voice_codes_are_read_out_by_the_voice_client(ihuyi_emulator: Emulator) -> None:
    from ihuyi_async import VoiceCodeClient

    account = ihuyi_emulator.accounts[0]
    async with VoiceCodeClient(
        account,
        ihuyi_emulator.api_key_of(account),
        transport=ihuyi_emulator.transport,
        clock=ihuyi_emulator.clock,
    ) as voice:
        verifier = Verifier(voice, channel="voice", clock=ihuyi_emulator.clock)
        started = await verifier.start("13800138000")
        [message] = ihuyi_emulator.messages
        assert message.product == "voice-code" and message.verification
        assert message.content == ihuyi_emulator.last_code_for("13800138000")
        assert started.smsid == message.smsid
        assert (await verifier.check("13800138000", message.content)).approved
    with pytest.raises(ValueError, match="read out"):
        Verifier(voice, channel="voice", template_id=1)
    assert "voice" in repr(verifier)


def test_construction_refuses_what_every_start_would_fail_on() -> None:
    from ihuyi_async import IhuyiClient, UnsupportedOperationError, VoiceCodeClient

    legacy = IhuyiClient("APIID", "KEY", flavour="legacy")
    with pytest.raises(UnsupportedOperationError, match="legacy flavour has no template mode"):
        Verifier(legacy, template_id=1)
    Verifier(legacy, content="您的验证码是：{code}。")  # the legacy way is fine
    Verifier(IhuyiClient("APIID", "KEY", flavour="json"), template_id=1)
    voice = VoiceCodeClient("APIID", "KEY")
    assert voice.code_length == (4, 6)
    for length in (8, 7, 10):
        with pytest.raises(ValueError, match="4 to 6 digits") as caught:
            Verifier(voice, channel="voice", length=length)
        assert "\n" not in str(caught.value)
    Verifier(voice, channel="voice", length=4)
    Verifier(VoiceCodeClient("APIID", "KEY", code_length=(4, 8)), channel="voice", length=8)
