"""Refusals: a status, a reason for the caller, and a row for operators."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import insert

from models import WebhookRejection
from models.base import utcnow

logger = logging.getLogger("carepath.receiver")


class Rejected(Exception):
    def __init__(
        self,
        status: int,
        reason: str,
        *,
        errors: list[dict] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.errors = errors
        self.headers = headers


class Unavailable(Exception):
    """The receiver could not store an event (its database is away): 503 with Retry-After, nothing stored."""


RETRY_AFTER_SECONDS = 5


async def unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    """503 with Retry-After and the reason; not recorded as a rejection (the database is what failed)."""
    source = request.scope.get("carepath_source", "unknown")
    logger.warning("a %s webhook got 503: %s", source, exc)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return JSONResponse({"error": str(exc)}, status_code=503, headers=headers)


async def rejected_handler(request: Request, exc: Rejected) -> JSONResponse:
    """Answer with the reason and record the refusal (source, reason, time; never the body or a secret)."""
    source = request.scope.get("carepath_source", "unknown")
    try:
        async with request.app.state.engine.begin() as conn:
            await conn.execute(
                insert(WebhookRejection.__table__).values(
                    source=source,
                    status_code=exc.status,
                    reason=exc.reason[:500],
                    remote_addr=request.client.host if request.client else None,
                    received_at=utcnow(),
                )
            )
    except Exception:  # recording must never turn a 4xx into a 500
        logger.exception("could not record a rejected %s webhook", source)
    body: dict = {"error": exc.reason}
    if exc.errors:
        body["errors"] = exc.errors
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def signature_handler(request: Request, exc: Exception) -> JSONResponse:
    """A request not provably from its source (receiver.signatures.SignatureError): 401, recorded like any
    refusal. One handler for every source, so no route wraps its check by hand."""
    return await rejected_handler(request, Rejected(401, str(exc)))
