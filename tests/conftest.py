"""Shared fixtures: a real Redis server (started privately when none answers).

Redis tests never skip: when no server answers on 127.0.0.1:6379 and
``redis-server`` cannot be started, the fixture errors and the run fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

REDIS_DB = int(os.environ.get("IHUYI_TEST_REDIS_DB", "13"))


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def private_redis_server() -> Iterator[int]:
    """Start a redis-server on a free loopback port for as long as the block runs; yields the port."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("no Redis answers on 127.0.0.1:6379 and redis-server is not installed")
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="ihuyi-redis-")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _answers("127.0.0.1", port):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("could not start a private redis-server for the tests")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def start_private_redis() -> Callable[[], AbstractContextManager[int]]:
    """The :func:`private_redis_server` context manager, for conftests below this one."""
    return private_redis_server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis server: the machine's on 6379, or a private one started here."""
    if _answers("127.0.0.1", 6379):
        yield f"redis://127.0.0.1:6379/{REDIS_DB}"
        return
    with private_redis_server() as port:
        yield f"redis://127.0.0.1:{port}/{REDIS_DB}"


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to one test; tests delete their keys by it when done."""
    return f"ihuyi-test:{uuid.uuid4().hex[:12]}:"
