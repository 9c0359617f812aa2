"""A FastAPI app verifying phone numbers by SMS with Verifier (the README's example app).

POST /signup/code          {"mobile"}                     -> 202, or 429 (Retry-After)
POST /signup/verify        {"mobile", "code", "name"}     -> 201, or 400
POST /login/code           {"mobile"}                     -> 202, or 429
POST /login/verify         {"mobile", "code"}             -> 201 (a session), or 400
POST /password-reset/code  {"mobile"}                     -> 202, or 429
POST /password-reset/verify {"mobile", "code", "password"} -> 201, or 400

The code endpoints answer the same for every number: for a number that has no account, login
and reset call ``start(..., send=False)`` (every limit applies, nothing is texted). The
verifier comes from a dependency, so tests swap in the plugin's ``ihuyi_verifier``.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

from ihuyi_async import ApiError, IhuyiClient, InvalidRequestError, StoreUnavailableError
from ihuyi_async.verify import VerificationRefusedError, Verifier


class CodeRequest(BaseModel):
    mobile: str


class SignupRequest(BaseModel):
    mobile: str
    code: str
    name: str


class LoginRequest(BaseModel):
    mobile: str
    code: str


class ResetRequest(BaseModel):
    mobile: str
    code: str
    password: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Production: credentials from IHUYI_ACCOUNT / IHUYI_API_KEY, the secret from your
    # settings; with several workers pass store=RedisVerifyStore(redis) and
    # limiter_store=RedisStore(redis).
    async with IhuyiClient(flavour="json") as sms:
        app.state.verifier = Verifier(sms, template_id=1)
        yield


def get_verifier(request: Request) -> Verifier:
    verifier: Verifier = request.app.state.verifier
    return verifier


Codes = Annotated[Verifier, Depends(get_verifier)]


async def start(verifier: Verifier, mobile: str, ip: str | None, *, send: bool = True) -> None:
    """Start a verification; every failure becomes one HTTP answer."""
    try:
        await verifier.start(mobile, ip=ip, send=send)
    except InvalidRequestError as exc:
        raise HTTPException(422, "not a valid mobile number") from exc
    except VerificationRefusedError as exc:  # one answer whatever the reason
        raise HTTPException(
            429, str(exc), headers={"Retry-After": str(math.ceil(exc.retry_after))}
        ) from exc
    except (ApiError, StoreUnavailableError) as exc:
        raise HTTPException(503, "cannot send a code now, try again later") from exc


async def approved(verifier: Verifier, mobile: str, code: str) -> bool:
    try:
        return (await verifier.check(mobile, code)).approved
    except InvalidRequestError:
        return False


def create_app() -> FastAPI:
    app = FastAPI(lifespan=lifespan)
    users: dict[str, dict[str, str]] = {}  # your database in real life
    sessions: dict[str, str] = {}

    def ip_of(request: Request) -> str | None:
        return request.client.host if request.client else None

    @app.post("/signup/code", status_code=202)
    async def signup_code(body: CodeRequest, request: Request, codes: Codes) -> dict[str, str]:
        await start(codes.for_purpose("signup"), body.mobile, ip_of(request))
        return {"status": "code sent"}

    @app.post("/signup/verify", status_code=201)
    async def signup(body: SignupRequest, codes: Codes) -> dict[str, str]:
        if not await approved(codes.for_purpose("signup"), body.mobile, body.code):
            raise HTTPException(400, "wrong or expired code")
        if body.mobile in users:  # only the number's owner gets here
            raise HTTPException(409, "this number already has an account")
        users[body.mobile] = {"name": body.name, "password": ""}
        return {"status": "welcome", "name": body.name}

    @app.post("/login/code", status_code=202)
    async def login_code(body: CodeRequest, request: Request, codes: Codes) -> dict[str, str]:
        known = body.mobile in users
        await start(codes.for_purpose("login"), body.mobile, ip_of(request), send=known)
        return {"status": "code sent"}

    @app.post("/login/verify", status_code=201)
    async def login(body: LoginRequest, codes: Codes) -> dict[str, str]:
        ok = await approved(codes.for_purpose("login"), body.mobile, body.code)
        if not ok or body.mobile not in users:
            raise HTTPException(400, "wrong or expired code")
        token = secrets.token_urlsafe(16)
        sessions[token] = body.mobile
        return {"session": token}

    @app.post("/password-reset/code", status_code=202)
    async def reset_code(body: CodeRequest, request: Request, codes: Codes) -> dict[str, str]:
        known = body.mobile in users
        await start(codes.for_purpose("reset"), body.mobile, ip_of(request), send=known)
        return {"status": "code sent"}

    @app.post("/password-reset/verify", status_code=201)
    async def reset(body: ResetRequest, codes: Codes) -> dict[str, str]:
        ok = await approved(codes.for_purpose("reset"), body.mobile, body.code)
        if not ok or body.mobile not in users:
            raise HTTPException(400, "wrong or expired code")
        users[body.mobile]["password"] = body.password  # hash it in real life
        return {"status": "password changed"}

    return app
