"""Tests of the example app using only the ihuyi pytest plugin's public fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from ihuyi_async import FakeClock
from ihuyi_async.testing import Emulator
from ihuyi_async.verify import Verifier

from .app import create_app, get_verifier

pytestmark = [pytest.mark.anyio, pytest.mark.ihuyi(client={"flavour": "json"})]

MOBILE = "13800138000"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app(ihuyi_verifier: Verifier) -> FastAPI:
    app = create_app()
    app.dependency_overrides[get_verifier] = lambda: ihuyi_verifier
    return app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
        yield client


def later(emulator: Emulator, seconds: float = 60) -> None:
    """Move the emulator's (fake) clock on: past the 60 s between two codes by default."""
    assert isinstance(emulator.clock, FakeClock)
    emulator.clock.advance(seconds)


async def sign_up(http: httpx.AsyncClient, emulator: Emulator) -> None:
    assert (await http.post("/signup/code", json={"mobile": MOBILE})).status_code == 202
    code = emulator.last_code_for(MOBILE)
    body = {"mobile": MOBILE, "code": code, "name": "Li Lei"}
    assert (await http.post("/signup/verify", json=body)).status_code == 201


async def test_signup_with_the_texted_code(http: httpx.AsyncClient, ihuyi_emulator: Emulator) -> None:
    response = await http.post("/signup/code", json={"mobile": MOBILE})
    assert response.status_code == 202
    code = ihuyi_emulator.last_code_for(MOBILE)  # read the SMS the user got
    body = {"mobile": MOBILE, "code": code, "name": "Li Lei"}
    response = await http.post("/signup/verify", json=body)
    assert response.status_code == 201
    assert response.json() == {"status": "welcome", "name": "Li Lei"}
    [message] = ihuyi_emulator.messages
    assert message.content == f"您的验证码是：{code}。请不要把验证码泄露给其他人。"
    assert (await http.post("/signup/verify", json=body)).status_code == 400  # used once


async def test_wrong_code_is_a_400(http: httpx.AsyncClient) -> None:
    await http.post("/signup/code", json={"mobile": MOBILE})
    body = {"mobile": MOBILE, "code": "000000x", "name": "x"}
    response = await http.post("/signup/verify", json=body)
    assert response.status_code == 400


async def test_invalid_number_is_a_422(http: httpx.AsyncClient, ihuyi_emulator: Emulator) -> None:
    response = await http.post("/signup/code", json={"mobile": "12345"})
    assert response.status_code == 422
    assert ihuyi_emulator.requests == []  # refused before any request


@pytest.mark.ihuyi(client={"limiter": None}, balance=0)
async def test_empty_balance_is_a_503(http: httpx.AsyncClient) -> None:
    response = await http.post("/signup/code", json={"mobile": MOBILE})
    assert response.status_code == 503


async def test_a_resend_within_60_s_is_a_429_with_retry_after(
    http: httpx.AsyncClient, ihuyi_emulator: Emulator
) -> None:
    assert (await http.post("/signup/code", json={"mobile": MOBILE})).status_code == 202
    response = await http.post("/signup/code", json={"mobile": MOBILE})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "60"
    later(ihuyi_emulator)
    assert (await http.post("/signup/code", json={"mobile": MOBILE})).status_code == 202
    assert len(ihuyi_emulator.messages) == 2


async def test_sixth_code_in_a_day_is_a_429(
    http: httpx.AsyncClient, ihuyi_emulator: Emulator
) -> None:
    statuses = []
    for _ in range(6):
        statuses.append((await http.post("/signup/code", json={"mobile": MOBILE})).status_code)
        later(ihuyi_emulator)
    assert statuses == [202] * 5 + [429]
    assert len(ihuyi_emulator.messages) == 5


async def test_login_answers_the_same_for_a_stranger_and_texts_nothing(
    http: httpx.AsyncClient, ihuyi_emulator: Emulator
) -> None:
    response = await http.post("/login/code", json={"mobile": "13900139000"})
    assert (response.status_code, response.json()) == (202, {"status": "code sent"})
    assert ihuyi_emulator.messages == []
    body = {"mobile": "13900139000", "code": "123456"}
    assert (await http.post("/login/verify", json=body)).status_code == 400
    again = await http.post("/login/code", json={"mobile": "13900139000"})
    assert again.status_code == 429  # the same limits as for a real account


async def test_login_with_the_texted_code(
    http: httpx.AsyncClient, ihuyi_emulator: Emulator
) -> None:
    await sign_up(http, ihuyi_emulator)
    later(ihuyi_emulator)
    assert (await http.post("/login/code", json={"mobile": MOBILE})).status_code == 202
    code = ihuyi_emulator.last_code_for(MOBILE)
    response = await http.post("/login/verify", json={"mobile": MOBILE, "code": code})
    assert response.status_code == 201
    assert len(response.json()["session"]) > 16


async def test_a_login_code_does_not_reset_the_password(
    http: httpx.AsyncClient, ihuyi_emulator: Emulator
) -> None:
    await sign_up(http, ihuyi_emulator)
    later(ihuyi_emulator)
    await http.post("/login/code", json={"mobile": MOBILE})
    login_code = ihuyi_emulator.last_code_for(MOBILE)
    body = {"mobile": MOBILE, "code": login_code, "password": "new"}
    assert (await http.post("/password-reset/verify", json=body)).status_code == 400
    later(ihuyi_emulator)
    assert (await http.post("/password-reset/code", json={"mobile": MOBILE})).status_code == 202
    body["code"] = ihuyi_emulator.last_code_for(MOBILE)
    response = await http.post("/password-reset/verify", json=body)
    assert (response.status_code, response.json()) == (201, {"status": "password changed"})
