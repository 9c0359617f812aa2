"""Tests of the example signup app using only the ihuyi pytest plugin's public fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from ihuyi_async import IhuyiClient
from ihuyi_async.testing import Emulator

from .app import create_app, get_sms

pytestmark = [pytest.mark.anyio, pytest.mark.ihuyi(client={"flavour": "json"})]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app(ihuyi_client: IhuyiClient) -> FastAPI:
    app = create_app()
    app.dependency_overrides[get_sms] = lambda: ihuyi_client
    return app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://app.test") as client:
        yield client


async def test_signup_with_the_texted_code(http: httpx.AsyncClient, ihuyi_emulator: Emulator) -> None:
    response = await http.post("/signup/code", json={"mobile": "13800138000"})
    assert response.status_code == 202

    code = ihuyi_emulator.last_code_for("13800138000")
    response = await http.post(
        "/signup/verify", json={"mobile": "13800138000", "code": code, "name": "Li Lei"}
    )
    assert response.status_code == 201
    assert response.json() == {"status": "welcome", "name": "Li Lei"}

    [message] = ihuyi_emulator.messages
    assert message.content == f"您的验证码是：{code}。请不要把验证码泄露给其他人。"


async def test_wrong_code_is_refused(http: httpx.AsyncClient) -> None:
    await http.post("/signup/code", json={"mobile": "13800138000"})
    response = await http.post(
        "/signup/verify", json={"mobile": "13800138000", "code": "000000x", "name": "x"}
    )
    assert response.status_code == 400


async def test_invalid_number_is_a_422(http: httpx.AsyncClient, ihuyi_emulator: Emulator) -> None:
    response = await http.post("/signup/code", json={"mobile": "12345"})
    assert response.status_code == 422
    assert ihuyi_emulator.requests == []  # refused before any request


@pytest.mark.ihuyi(client={"limiter": None}, balance=0)
async def test_empty_balance_is_a_503(http: httpx.AsyncClient) -> None:
    response = await http.post("/signup/code", json={"mobile": "13800138000"})
    assert response.status_code == 503
    assert response.json() == {"detail": "SMS refused (4051)"}


async def test_sixth_code_in_a_day_is_a_429(http: httpx.AsyncClient) -> None:
    statuses = [
        (await http.post("/signup/code", json={"mobile": "13800138000"})).status_code
        for _ in range(6)
    ]
    assert statuses == [202] * 5 + [429]
