"""Demo data for Carepath: a believable support organisation, seeded deterministically into the caller's session."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from data.customers import STORY, account_number, seed_customers
from data.duplicate_people import seed_likely_duplicate
from data.merged_contacts import seed_merged_contacts
from data.reference import load_json, seed_reference
from models import (
    Account,
    Agent,
    BusinessCalendar,
    Consent,
    Contact,
    Device,
    Entitlement,
    Goal,
    Holiday,
    KnowledgeArticle,
    Product,
    Queue,
    RoutingRule,
    Sla,
    SlaKpi,
)

FIRST_ACCOUNT = account_number(1)  # its presence means the demo has been seeded already


@dataclass(frozen=True)
class DemoSummary:
    """Row counts of the demo data in the database, and whether this call inserted them."""

    created: bool
    accounts: int
    contacts: int
    consents: int
    devices: int
    entitlements: int
    products: int
    queues: int
    routing_rules: int
    agents: int
    calendars: int
    holidays: int
    slas: int
    sla_kpis: int
    articles: int
    goals: int


_COUNTED = {
    "accounts": Account,
    "contacts": Contact,
    "consents": Consent,
    "devices": Device,
    "entitlements": Entitlement,
    "products": Product,
    "queues": Queue,
    "routing_rules": RoutingRule,
    "agents": Agent,
    "calendars": BusinessCalendar,
    "holidays": Holiday,
    "slas": Sla,
    "sla_kpis": SlaKpi,
    "articles": KnowledgeArticle,
    "goals": Goal,
}


def summarise(session: Session, *, created: bool) -> DemoSummary:
    """Count what the database holds now (including anything flushed but not yet committed)."""
    counts = {
        name: session.scalar(select(func.count()).select_from(model)) or 0 for name, model in _COUNTED.items()
    }
    return DemoSummary(created=created, **counts)


def seed_demo(
    session: Session, *, accounts: int = 40, seed: int = 7, today: date | None = None
) -> DemoSummary:
    """Seed reference data and `accounts` customer accounts (story accounts included); flushes, never commits."""
    if session.scalar(select(Account.id).where(Account.account_number == FIRST_ACCOUNT)) is not None:
        return summarise(session, created=False)
    if accounts < len(STORY):
        raise ValueError(f"accounts must be at least {len(STORY)}: the story accounts alone need that many")
    # `today` anchors entitlement years, goal months and install dates; pass it for date-stable output.
    today = today or datetime.now(UTC).date()
    rng = random.Random(seed)
    ref = seed_reference(session, today=today)
    seed_customers(session, rng, ref, accounts=accounts, today=today)
    seed_merged_contacts(session, today=today)  # after the random draws: they stay as they were
    seed_likely_duplicate(session)
    return summarise(session, created=True)


def _parse_utc(value: str) -> datetime:
    # Python 3.11+ reads the trailing "Z" itself.
    return datetime.fromisoformat(value).astimezone(UTC)


def _iso_z(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def load_demo_faults(now: datetime | None = None) -> list[dict]:
    """The demo fault events with occurred_at shifted so the latest one happened at `now` (default: now, UTC)."""
    if now is None:
        now = datetime.now(UTC).replace(microsecond=0)
    elif now.tzinfo is None:
        raise ValueError("naive datetime; pass an aware UTC datetime")
    # Deep copies: callers may mutate events (e.g. to build a bad payload) without touching the cached file.
    events: list[dict] = copy.deepcopy(load_json("demo_faults.json"))
    shift = now - max(_parse_utc(e["occurred_at"]) for e in events)
    for event in events:
        event["occurred_at"] = _iso_z(_parse_utc(event["occurred_at"]) + shift)
    return events
