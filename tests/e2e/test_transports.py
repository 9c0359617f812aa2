"""Both backends against a real loopback server: pooling, lost connections, refused connections."""

from __future__ import annotations

from typing import cast

import pytest

import ihuyi_async as ih
from ihuyi_async import IhuyiClient, RetryPolicy
from ihuyi_async._backends import Backend

from .loopback import LoopbackServer, close_after_read, ok_answer, refused_url

pytestmark = pytest.mark.anyio

TEXT = "您的验证码是：1234。请不要把验证码泄露给其他人。"
CASES: list[tuple[str, Backend]] = [
    ("asyncio", "httpx"), ("trio", "httpx"), ("asyncio", "aiohttp"), ("asyncio", "native")
]


@pytest.fixture(params=CASES, ids=lambda c: f"{c[1]}-{c[0]}")
def case(request: pytest.FixtureRequest) -> tuple[str, Backend]:
    return cast("tuple[str, Backend]", request.param)


@pytest.fixture
def anyio_backend(case: tuple[str, Backend]) -> str:
    return case[0]


@pytest.fixture
def backend(case: tuple[str, Backend]) -> Backend:
    return case[1]


async def test_sequential_sends_reuse_one_connection(backend: Backend) -> None:
    with LoopbackServer(ok_answer()) as server:
        client = IhuyiClient("APIID", "KEY", base_url=server.url, backend=backend, limiter=None)
        async with client:
            for i in range(5):
                sent = await client.send(f"1380013800{i}", TEXT)
                assert sent.smsid == "16842079209571524017"
        assert client.is_closed
    assert len(server.requests) == 5
    assert server.connections == 1
    assert b"KEY" not in b"".join(server.requests)  # dynamic signing: the key never travels


async def test_server_closing_after_read_is_unknown_with_one_request(backend: Backend) -> None:
    with LoopbackServer(close_after_read) as server:
        async with IhuyiClient("APIID", "KEY", base_url=server.url, backend=backend, limiter=None) as client:
            with pytest.raises(ih.DeliveryUnknownError) as info:
                await client.send("13800138000", TEXT)
    assert info.value.reason in {"disconnected", "read_failed"}
    assert len(server.requests) == 1


async def test_refused_connection_is_not_sent(backend: Backend) -> None:
    async with IhuyiClient("APIID", "KEY", base_url=refused_url(), backend=backend, limiter=None,
                           retry=RetryPolicy(max_attempts=2, backoff=0)) as client:
        with pytest.raises(ih.TransportError) as info:
            await client.send("13800138000", TEXT)
    assert info.value.sent is False
    assert type(info.value) is ih.TransportError  # not also a DeliveryUnknownError


async def test_oversized_answer_is_unknown(backend: Backend) -> None:
    with LoopbackServer(ok_answer(b"{" + b" " * 200_000 + b"}")) as server:
        async with IhuyiClient("APIID", "KEY", base_url=server.url, backend=backend, limiter=None) as client:
            with pytest.raises(ih.DeliveryUnknownError) as info:
                await client.send("13800138000", TEXT)
    assert info.value.reason == "oversized"


def test_aiohttp_backend_is_asyncio_only() -> None:
    import trio

    async def main() -> None:
        async with IhuyiClient("APIID", "KEY", base_url=refused_url(), backend="aiohttp", limiter=None) as client:
            await client.send("13800138000", TEXT)

    with pytest.raises(RuntimeError, match="asyncio only"):
        trio.run(main)
