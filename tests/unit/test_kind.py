"""`kind` is a checked set of values: a misspelt kind would silently skip the verification rule (#13)."""

from __future__ import annotations

import httpx
import pytest

from ihuyi_async import IhuyiClient
from ihuyi_async._validation import KINDS, check_kind

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_check_kind() -> None:
    assert KINDS == {"verification", "notification"}
    assert check_kind(None) is None and check_kind("verification") == "verification"
    with pytest.raises(ValueError, match="'verfication'"):
        check_kind("verfication")
    with pytest.raises(TypeError):
        check_kind(1)


async def test_a_misspelt_kind_is_refused_before_the_limiter_and_the_wire() -> None:
    requests = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        return httpx.Response(200, json={"code": 2, "smsid": "16842079209571524017"})

    async with IhuyiClient("APIID", "KEY", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ValueError, match="kind"):
            await client.send("13800138000", "您的验证码是：1234", kind="verfication")  # type: ignore[arg-type]
        outcomes = [o async for o in client.send_many([{"mobile": "13800138000", "content": "x", "kind": "Verification"}])]
        assert outcomes[0].status == "invalid" and outcomes[0].message is None
        assert outcomes[0].item == {"mobile": "13800138000", "content": "x", "kind": "Verification"}
        assert client.limiter is not None  # the default limiter
        stats = client.limiter.statistics()
        assert stats.acquired == 0
        await client.send("13800138001", "您的验证码是：1234", kind="verification")
        await client.send("13800138002", "您的订单已发货", kind="notification")
    assert requests == 2
