"""The customer's tracking page: `GET /track/{ticket}?t={token}`, as HTML or JSON. No internal notes."""

from __future__ import annotations

import hmac
from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select

from models import Case, CaseStatusChange

router = APIRouter()
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(["html", "j2"])
)
# Compared against when the ticket does not exist, so both failures cost the same (no ticket oracle).
_DUMMY_TOKEN = "x" * 32

STATUS_LABELS = {"active": "In progress", "resolved": "Resolved", "cancelled": "Cancelled"}


def _not_found(as_json: bool) -> Response:
    if as_json:
        return JSONResponse({"error": "not found"}, status_code=404)
    html = _templates.get_template("not_found.html.j2").render()
    return HTMLResponse(html, status_code=404)


@router.get("/track/{ticket}", response_model=None)
async def track(
    request: Request, ticket: str, t: str = Query(default="", max_length=128), format: str | None = None
) -> Response:
    """The case's status, last update and history for the holder of the tracking link."""
    as_json = format == "json" or "application/json" in request.headers.get("accept", "")
    async with request.app.state.engine.connect() as conn:
        case = (
            await conn.execute(
                select(
                    Case.id,
                    Case.ticket_number,
                    Case.title,
                    Case.status,
                    Case.status_reason,
                    Case.tracking_token,
                    Case.created_at,
                    Case.updated_at,
                    Case.resolved_at,
                ).where(Case.ticket_number == ticket[:20])
            )
        ).first()
        expected = case.tracking_token if case else _DUMMY_TOKEN
        if not hmac.compare_digest(expected.encode(), t.encode()) or case is None:
            return _not_found(as_json)
        history = (
            await conn.execute(
                select(
                    CaseStatusChange.to_status, CaseStatusChange.status_reason, CaseStatusChange.changed_at
                )
                .where(CaseStatusChange.case_id == case.id)
                .order_by(CaseStatusChange.changed_at, CaseStatusChange.id)
            )
        ).all()
    last_update = max([case.updated_at, *(h.changed_at for h in history)])
    view = {
        "ticket_number": case.ticket_number,
        "title": case.title,
        "status": case.status.value,
        "status_label": STATUS_LABELS.get(case.status.value, case.status.value),
        "opened_at": case.created_at.isoformat(),
        "last_update": last_update.isoformat(),
        "resolved_at": case.resolved_at.isoformat() if case.resolved_at else None,
        "history": [
            {
                "status": h.to_status.value,
                "label": STATUS_LABELS.get(h.to_status.value, h.to_status.value),
                "reason": (h.status_reason or "").replace("_", " "),
                "at": h.changed_at.isoformat(),
            }
            for h in history
        ],
    }
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
    if as_json:
        return JSONResponse(view, headers=headers)
    html = _templates.get_template("track.html.j2").render(case=view)
    return HTMLResponse(html, headers=headers)
