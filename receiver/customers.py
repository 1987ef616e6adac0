"""GET /customers/summary?key=…: the customer summary for our own systems (a CRM side panel, a chatbot),
behind a bearer token from settings (CAREPATH_SUMMARY_API_TOKEN); without one configured every call is refused."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from tasks.customer_summary import UnknownCustomer, customer_summary

router = APIRouter()


def _authorised(expected: str | None, authorization: str | None) -> bool:
    scheme, _, token = (authorization or "").partition(" ")
    if not expected or scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), expected.encode())


@router.get("/customers/summary", response_model=None)
async def summary(
    request: Request,
    key: str = Query(min_length=1, max_length=254, description="A ticket number or a contact's email."),
    authorization: str | None = Header(default=None),
) -> JSONResponse:
    """The customer, the case, recent cases, timeline, entitlement and SLA state (JSON); 404 if unknown."""
    secret = request.app.state.settings.summary_api_token
    if not _authorised(secret.get_secret_value() if secret else None, authorization):
        return JSONResponse(
            {"detail": "a valid bearer token is required"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    if "\x00" in key:  # no ticket or email has one, and PostgreSQL refuses it in a query's text
        return JSONResponse({"detail": f"no customer or case matches {key!r}"}, status_code=404)

    def read(conn) -> dict:
        with Session(bind=conn) as session:
            return customer_summary(session=session, key=key)

    try:
        async with request.app.state.engine.connect() as conn:
            body = await conn.run_sync(read)
    except UnknownCustomer as exc:
        return JSONResponse({"detail": str(exc)}, status_code=404)
    return JSONResponse(body)
