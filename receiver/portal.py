"""`POST /portal/sign-in`: the portal's sign-in check, with the caller's address for the rate limit."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from receiver.errors import Rejected

router = APIRouter(prefix="/portal")


class SignInIn(BaseModel):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


def _check(email: str, password: str, client_address: str) -> dict:
    from carepath.db import unit_of_work
    from carepath.settings import get_settings
    from tasks.sign_in import limits_from, sign_in

    with unit_of_work() as session:
        return sign_in(
            session=session,
            email=email,
            password=password,
            client_address=client_address,
            limits=limits_from(get_settings()),
        ).as_json()


@router.post("/sign-in")
async def portal_sign_in(request: Request, body: SignInIn) -> JSONResponse:
    """{"ok", "reason"}: not_registered, wrong_password or rate_limited (per email and per client address)."""
    client = request.client.host if request.client else "unknown"
    try:
        # Argon2 is deliberately slow: verify off the event loop.
        result = await run_in_threadpool(_check, body.email, body.password, client)
    except ValueError as exc:
        raise Rejected(422, f"invalid sign-in: {exc}") from None
    return JSONResponse(result, status_code=200)
