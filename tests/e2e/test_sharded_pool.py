"""The httpx backend's own pool, split into shards of ten connections, on a loopback server."""

from __future__ import annotations

import anyio
import httpx
import pytest

import ihuyi_async as ih
from ihuyi_async import IhuyiClient
from ihuyi_async._transport import ShardedPoolTransport

from .loopback import LoopbackServer, ok_answer, refused_url

pytestmark = pytest.mark.anyio

TEXT = "您的验证码是：1234。请不要把验证码泄露给其他人。"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _sizes(transport: ShardedPoolTransport) -> list[tuple[int, int]]:
    return [
        (p._pool._max_connections, p._pool._max_keepalive_connections)  # noqa: SLF001
        for p in transport._pools  # noqa: SLF001
    ]


def _sharded(client: IhuyiClient) -> ShardedPoolTransport:
    http = client.http_client
    assert http is not None
    transport = http._transport  # noqa: SLF001
    assert isinstance(transport, ShardedPoolTransport)
    return transport


def test_limits_are_divided_and_keep_their_totals() -> None:
    sizes = _sizes(ShardedPoolTransport(httpx.Limits(max_connections=100, max_keepalive_connections=100)))
    assert sizes == [(10, 10)] * 10
    sizes = _sizes(ShardedPoolTransport(httpx.Limits(max_connections=25, max_keepalive_connections=7)))
    assert [s[0] for s in sizes] == [9, 8, 8]
    assert sum(s[1] for s in sizes) == 7
    assert ShardedPoolTransport(httpx.Limits(max_connections=10)).shards == 1
    assert ShardedPoolTransport(httpx.Limits(max_connections=None)).shards == 1


async def test_concurrent_sends_spread_over_shards_and_give_slots_back() -> None:
    with LoopbackServer(ok_answer()) as server:
        async with IhuyiClient("APIID", "KEY", base_url=server.url, limiter=None) as client:
            transport = _sharded(client)
            assert transport.shards == 10
            results: list[str] = []

            async def one(i: int) -> None:
                results.append((await client.send(f"138{i:08d}", TEXT)).smsid)

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for i in range(40):
                        tg.start_soon(one, i)
            assert len(results) == 40
            assert transport._active == [0] * 10  # noqa: SLF001
    assert len(server.requests) == 40
    assert server.connections <= 40


async def test_a_refused_connection_gives_its_slot_back() -> None:
    async with IhuyiClient(
        "APIID", "KEY", base_url=refused_url(), limiter=None, retry=ih.RetryPolicy(max_attempts=1)
    ) as client:
        with pytest.raises(ih.TransportError):
            await client.send("13800138000", TEXT)
        assert _sharded(client)._active == [0] * 10  # noqa: SLF001


async def test_a_user_transport_is_used_as_given() -> None:
    mock = httpx.MockTransport(lambda r: httpx.Response(200, json={"code": 2, "msg": "ok", "smsid": "1" * 20}))
    async with IhuyiClient("APIID", "KEY", transport=mock, limiter=None) as client:
        assert client.http_client is not None
        assert client.http_client._transport is mock  # noqa: SLF001
        assert (await client.send("13800138000", TEXT)).smsid == "1" * 20
