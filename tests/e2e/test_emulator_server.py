"""The emulator's own loopback HTTP/1.1 server: keep-alive, pipelining, shutdown (#12 item 8, #14)."""

from __future__ import annotations

import socket
import time

import pytest

from ihuyi_async import FakeClock, IhuyiClient
from ihuyi_async._config import DEFAULT_KEEPALIVE_EXPIRY
from ihuyi_async.testing import Emulator, EmulatorServer
from ihuyi_async.testing._server import KEEP_ALIVE_TIMEOUT

ACCOUNT, KEY = "APIID", "APIKEY"
GETNUM = (
    b"POST /sms/GetNum.json HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 31\r\n\r\naccount=APIID&password=APIKEY&x"
)


def make() -> Emulator:
    return Emulator({ACCOUNT: KEY}, 10, clock=FakeClock(1767240000.0, auto_advance=True))


def read_answers(sock: socket.socket, count: int, deadline: float) -> list[bytes]:
    data = b""
    while data.count(b'"code":2') < count and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return [part for part in data.split(b"HTTP/1.1 ")[1:]]


def test_default_idle_timeout_outlives_the_clients_keepalive_expiry() -> None:
    server = EmulatorServer(make())
    assert server.keep_alive_timeout == KEEP_ALIVE_TIMEOUT == 75.0  # nginx's
    # A pooled connection expires on the client's side well before the server would close it,
    # so no request is ever written on a connection the server is closing (#12 item 8).
    assert KEEP_ALIVE_TIMEOUT > 10 * DEFAULT_KEEPALIVE_EXPIRY
    assert KEEP_ALIVE_TIMEOUT > 5.0  # httpx's own default expiry


def test_an_idle_connection_is_kept_until_the_timeout_then_closed() -> None:
    with EmulatorServer(make(), keep_alive_timeout=0.4) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        try:
            sock.sendall(GETNUM)
            assert len(read_answers(sock, 1, time.monotonic() + 5)) == 1
            time.sleep(0.1)  # idle, below the timeout: the connection still serves
            sock.sendall(GETNUM)
            assert len(read_answers(sock, 1, time.monotonic() + 5)) == 1
            started = time.monotonic()
            assert sock.recv(10) == b""  # then the server closes it, after about 0.4 s idle
            assert 0.25 < time.monotonic() - started < 3.0
        finally:
            sock.close()
    assert len(server.emulator.requests) == 2


def test_pipelined_requests_are_answered_in_order_on_one_connection() -> None:
    with EmulatorServer(make()) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        try:
            sock.sendall(GETNUM * 3)
            answers = read_answers(sock, 3, time.monotonic() + 5)
        finally:
            sock.close()
    assert len(answers) == 3 and all(a.startswith(b"200 OK") for a in answers)


@pytest.mark.anyio
async def test_client_keeps_working_over_the_kept_alive_connection() -> None:
    emulator = make()
    async with EmulatorServer(emulator) as server:
        async with IhuyiClient(ACCOUNT, KEY, base_url=server.url, clock=emulator.clock, limiter=None) as client:
            for _ in range(5):
                assert (await client.balance()).num == 10
    assert len(emulator.requests) == 5 and emulator.unexpected == []


def test_stop_closes_open_connections_promptly() -> None:
    server = EmulatorServer(make())
    server.start()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        sock.sendall(GETNUM)
        read_answers(sock, 1, time.monotonic() + 5)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 3.0
        assert sock.recv(10) == b""
    finally:
        sock.close()

