"""A FastAPI signup flow that verifies phone numbers by SMS (the README's example app).

POST /signup/code   {"mobile": "..."}                          -> 202, a code is texted
POST /signup/verify {"mobile": "...", "code": "...", "name": ...} -> 201, the user exists

The SMS client comes from a dependency, so tests swap in the plugin's ``ihuyi_client``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

from ihuyi_async import ApiError, IhuyiClient, InvalidRequestError, RateLimitedError


class CodeRequest(BaseModel):
    mobile: str


class VerifyRequest(BaseModel):
    mobile: str
    code: str
    name: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Production: credentials from IHUYI_ACCOUNT / IHUYI_API_KEY.
    async with IhuyiClient(flavour="json") as sms:
        app.state.sms = sms
        yield


def get_sms(request: Request) -> IhuyiClient:
    sms: IhuyiClient = request.app.state.sms
    return sms


SmsClient = Annotated[IhuyiClient, Depends(get_sms)]


def create_app() -> FastAPI:
    app = FastAPI(lifespan=lifespan)
    pending: dict[str, str] = {}
    users: dict[str, str] = {}

    @app.post("/signup/code", status_code=202)
    async def send_code(body: CodeRequest, sms: SmsClient) -> dict[str, str]:
        code = f"{secrets.randbelow(10**6):06d}"
        try:
            await sms.send_template(body.mobile, template_id=1, variables=[code], kind="verification")
        except InvalidRequestError as exc:
            raise HTTPException(422, "not a valid mobile number") from exc
        except RateLimitedError as exc:
            raise HTTPException(429, "too many codes for this number, try later") from exc
        except ApiError as exc:
            raise HTTPException(503, f"SMS refused ({exc.code})") from exc
        pending[body.mobile] = code
        return {"status": "code sent"}

    @app.post("/signup/verify", status_code=201)
    async def verify(body: VerifyRequest) -> dict[str, str]:
        expected = pending.get(body.mobile)
        if expected is None or not secrets.compare_digest(expected, body.code):
            raise HTTPException(400, "wrong or expired code")
        del pending[body.mobile]
        users[body.mobile] = body.name
        return {"status": "welcome", "name": body.name}

    return app
