"""The demo: the real client, its default limiter and the emulator on loopback, with a small load."""

from __future__ import annotations

import json

import pytest

from ihuyi_async import FakeClock
from ihuyi_async._cli._demo import DemoSummary, format_summary, run_demo

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def check(summary: DemoSummary) -> None:
    assert summary.failed == {}
    assert summary.sent + summary.refused == summary.attempted
    # the client's view and the emulator's agree, message for message and segment for segment
    assert summary.sent == summary.arrived_messages
    assert summary.balance_before - summary.balance_after == summary.arrived_segments
    assert summary.max_per_number <= 5
    assert {"406 invalid number", "4074 emoji", "4082 per_day"} <= set(summary.refused_locally)
    assert set(summary.refused_by_provider) == {407, 4030}


async def test_small_demo_through_the_default_backend() -> None:
    summary = await run_demo(messages=400, numbers=100, seed=7, clock=FakeClock(auto_advance=True))
    check(summary)
    assert summary.attempted == 400 and summary.numbers == 100
    text = format_summary(summary)
    assert f"sent (accepted by the provider)   {summary.sent:>6}" in text
    assert "4030  The mobile number is on the blacklist." in text
    assert "(a real loopback socket)" in text
    assert f"balance {summary.balance_before} -> {summary.balance_after}" in text
    data = summary.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["emulator"] == {
        "messages": summary.sent,
        "numbers": summary.arrived_numbers,
        "segments": summary.arrived_segments,
        "verification": summary.arrived_verification,
        "max_per_number": summary.max_per_number,
    }


async def test_same_seed_same_outcome_on_httpx() -> None:
    first = await run_demo(messages=150, numbers=40, seed=3, backend="httpx",
                           clock=FakeClock(auto_advance=True))
    second = await run_demo(messages=150, numbers=40, seed=3, backend="httpx",
                            clock=FakeClock(auto_advance=True))
    check(first)
    assert first.backend == "httpx"
    assert (first.sent, first.refused_locally, first.refused_by_provider) == (
        second.sent,
        second.refused_locally,
        second.refused_by_provider,
    )


async def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        await run_demo(messages=0)
