"""The client's per-number write spacing table (#19): constant work per write, and it
forgets exactly the numbers whose spacing has passed (it used to rescan all of them on
every write once 4,096 numbers had been written within one spacing)."""

from __future__ import annotations

import pytest

from ihuyi_async import FakeClock, IhuyiClient

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_table_holds_only_the_numbers_within_one_spacing() -> None:
    clock = FakeClock(1767240000.0)
    c = IhuyiClient("APIID", "KEY", clock=clock)
    spacing = c._write_spacing
    assert spacing is not None and spacing == pytest.approx(1.05)
    for i in range(10_000):  # 1,000 writes per second, each to another number
        await c._space_write(f"138{i:08d}")
        clock.advance(0.001)
    table = c._last_write
    assert 1040 <= len(table) <= 1051  # the last 1.05 s of writes, no more
    assert list(table.values()) == sorted(table.values())  # oldest first
    assert all(t + spacing > clock.time() - 0.001 for t in table.values())


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_rewritten_number_moves_to_the_end() -> None:
    clock = FakeClock(1767240000.0, auto_advance=True)
    c = IhuyiClient("APIID", "KEY", clock=clock)
    await c._space_write("13800138000")
    await c._space_write("13800138001")
    await c._space_write("13800138000")  # waits its spacing (the clock jumps), then is newest
    assert list(c._last_write) == ["13800138000"]  # 13800138001's spacing has passed
    start = clock.time()
    await c._space_write("13800138000")
    assert clock.time() == pytest.approx(start + 1.05)
