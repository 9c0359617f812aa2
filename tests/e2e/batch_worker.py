"""Subprocess body for the crash-and-resume test: a batch with a journal against a loopback URL."""

import sys

import anyio

from ihuyi_async import IhuyiClient


async def main(url: str, journal: str, n: int) -> None:
    async with IhuyiClient("APIID", "APIKEY", base_url=url, limiter=None, timeout=10) as client:
        msgs = ({"mobile": f"13{i:09d}", "content": f"订单{i}已发货", "id": f"o{i}"} for i in range(n))
        async for _ in client.send_many(msgs, concurrency=20, journal=journal):
            pass


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
