"""The customer's tracking page: `GET /track/{ticket}?t={token}`, as HTML or JSON. No internal notes.

The page speaks the contact's language (as the SMS does) and shows times in the contact's time zone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from phonenumbers import timezone as phone_zones
from sqlalchemy import select

from carepath.messages import DEFAULT_LANGUAGE, STATUS_LABELS, base_language
from models import Case, CaseStatus, CaseStatusChange, Contact, ResolutionActivity

router = APIRouter()
TEMPLATE_DIR = Path(__file__).parent / "templates"
_templates = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
# Compared against when the ticket does not exist, so both failures cost the same (no ticket oracle).
_DUMMY_TOKEN = "x" * 32
# The languages the page speaks: one `track.<lang>.json` of words each.
LANGUAGES = frozenset(p.name.split(".")[1] for p in TEMPLATE_DIR.glob("track.*.json"))
_NO_CACHE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
# Two instants half a year apart: zones that agree on both share their rules closely enough to show times.
_PROBES = (datetime(2025, 1, 15, tzinfo=UTC), datetime(2025, 7, 15, tzinfo=UTC))


@lru_cache(maxsize=16)
def page_strings(language: str) -> dict[str, Any]:
    """The page's words in a language (`track.<lang>.json`), any missing one in English; with status labels."""
    lang = base_language(language) if base_language(language) in LANGUAGES else DEFAULT_LANGUAGE
    strings = json.loads((TEMPLATE_DIR / f"track.{DEFAULT_LANGUAGE}.json").read_text(encoding="utf-8"))
    if lang != DEFAULT_LANGUAGE:
        own = json.loads((TEMPLATE_DIR / f"track.{lang}.json").read_text(encoding="utf-8"))
        strings = {**strings, **own, "reasons": {**strings["reasons"], **own.get("reasons", {})}}
    labels = STATUS_LABELS.get(lang, STATUS_LABELS[DEFAULT_LANGUAGE])
    strings["statuses"] = {k: v[:1].upper() + v[1:] for k, v in labels.items()}
    strings["lang"] = lang
    return strings


def preferred_language(accept_language: str | None) -> str:
    """The best language of an Accept-Language header that the page speaks, else English."""
    best, best_q = DEFAULT_LANGUAGE, 0.0
    for part in (accept_language or "").split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        try:
            q = float(params.strip()[2:]) if params.strip().startswith("q=") else 1.0
        except ValueError:
            continue
        lang = base_language(tag.strip() or None)
        if q > best_q and lang in LANGUAGES:
            best, best_q = lang, q
    return best


def customer_zone(time_zone: str | None, phone: str | None) -> ZoneInfo:
    """The contact's own zone if valid; else the zone of their phone number's area, if it has one; else UTC."""
    if time_zone:
        try:
            return ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    if phone:
        try:
            names = [
                n for n in phone_zones.time_zones_for_number(phonenumbers.parse(phone)) if n != "Etc/Unknown"
            ]
            zones = [ZoneInfo(n) for n in names]
        except (phonenumbers.NumberParseException, ZoneInfoNotFoundError, ValueError):
            zones = []
        # Several candidates (Italy: Rome and Vatican) are fine while they keep the same clock.
        if zones and all(len({p.astimezone(z).utcoffset() for z in zones}) == 1 for p in _PROBES):
            return zones[0]
    return ZoneInfo("UTC")


def local_time(moment: datetime, zone: ZoneInfo, strings: dict[str, Any]) -> dict[str, str]:
    """A moment in the customer's zone: ISO form for `<time datetime>` and words with the zone's abbreviation."""
    local = moment.astimezone(zone)
    text = strings["date_format"].format(
        day=local.day, month=strings["months"][local.month - 1], year=local.year, time=f"{local:%H:%M}"
    )
    return {"iso": local.isoformat(), "text": f"{text} {local.tzname()}"}


def reason_text(reason: str | None, strings: dict[str, Any]) -> str:
    """A status reason in the page's language; one it has no words for (set through the API) as it came."""
    return strings["reasons"].get(reason, (reason or "").replace("_", " "))


def _tokens_match(expected: str, given: str) -> bool:
    # Digests first: compare_digest leaks a length mismatch, digests always have the same length.
    return hmac.compare_digest(
        hashlib.sha256(expected.encode()).digest(), hashlib.sha256(given.encode()).digest()
    )


def _not_found(request: Request, as_json: bool) -> Response:
    # The visitor's own Accept-Language, never the case's contact: the page must not tell which part was wrong.
    if as_json:
        return JSONResponse({"error": "not found"}, status_code=404, headers=_NO_CACHE)
    strings = page_strings(preferred_language(request.headers.get("accept-language")))
    html = _templates.get_template("not_found.html.j2").render(s=strings, lang=strings["lang"])
    return HTMLResponse(html, status_code=404, headers=_NO_CACHE)


@router.get("/track/{ticket}", response_model=None)
async def track(
    request: Request, ticket: str, t: str = Query(default="", max_length=128), format: str | None = None
) -> Response:
    """The case's status, times, resolution and history for the holder of the tracking link."""
    as_json = format == "json" or "application/json" in request.headers.get("accept", "")
    if "\x00" in ticket:  # no ticket has one, and PostgreSQL refuses it in a query's text
        return _not_found(request, as_json)
    async with request.app.state.engine.connect() as conn:
        case = (
            await conn.execute(
                select(
                    Case.id,
                    Case.ticket_number,
                    Case.title,
                    Case.status,
                    Case.tracking_token,
                    Case.created_at,
                    Case.updated_at,
                    Case.resolved_at,
                    Contact.language,
                    Contact.time_zone,
                    Contact.phone,
                    ResolutionActivity.resolution,
                )
                .outerjoin(Contact, Contact.id == Case.contact_id)
                .outerjoin(ResolutionActivity, ResolutionActivity.case_id == Case.id)
                .where(Case.ticket_number == ticket[:20])
            )
        ).first()
        if not _tokens_match(case.tracking_token if case else _DUMMY_TOKEN, t) or case is None:
            return _not_found(request, as_json)
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
    resolved = case.status is CaseStatus.RESOLVED
    # A reopened case keeps its old resolution row; only a resolved case shows it.
    resolution = case.resolution if resolved else None
    zone = customer_zone(case.time_zone, case.phone)
    strings = page_strings(case.language or preferred_language(request.headers.get("accept-language")))
    labels = strings["statuses"]
    if as_json:  # times in UTC, labels in the customer's language
        return JSONResponse(
            {
                "ticket_number": case.ticket_number,
                "title": case.title,
                "status": case.status.value,
                "status_label": labels.get(case.status.value, case.status.value),
                "language": strings["lang"],
                "time_zone": zone.key,
                "opened_at": case.created_at.isoformat(),
                "last_update": last_update.isoformat(),
                "resolved_at": case.resolved_at.isoformat() if resolved and case.resolved_at else None,
                "resolution": resolution,
                "history": [
                    {
                        "status": h.to_status.value,
                        "label": labels.get(h.to_status.value, h.to_status.value),
                        "reason": reason_text(h.status_reason, strings),
                        "at": h.changed_at.isoformat(),
                    }
                    for h in history
                ],
            },
            headers=_NO_CACHE,
        )
    view = {
        "ticket_number": case.ticket_number,
        "title": case.title,
        "status": case.status.value,
        "status_label": labels.get(case.status.value, case.status.value),
        "opened_at": local_time(case.created_at, zone, strings),
        "last_update": local_time(last_update, zone, strings),
        "resolved_at": local_time(case.resolved_at, zone, strings) if resolved and case.resolved_at else None,
        "resolution": resolution,
        "zone_name": zone.key.replace("_", " "),
        "history": [
            {
                "label": labels.get(h.to_status.value, h.to_status.value),
                "reason": reason_text(h.status_reason, strings),
                "at": local_time(h.changed_at, zone, strings),
            }
            for h in history
        ],
    }
    html = _templates.get_template("track.html.j2").render(case=view, s=strings, lang=strings["lang"])
    return HTMLResponse(html, headers=_NO_CACHE)
