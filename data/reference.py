"""Static reference data from data/*.json: products, queues, routing, agents, calendars, SLAs, articles, goals."""

from __future__ import annotations

import calendar
import json
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from models import (
    Agent,
    BusinessCalendar,
    Goal,
    Holiday,
    KnowledgeArticle,
    Product,
    Queue,
    RoutingRule,
    RoutingRuleSet,
    Sla,
    SlaKpi,
    Tier,
)

DATA_DIR = Path(__file__).resolve().parent


@cache
def load_json(name: str) -> Any:
    """A JSON file from data/, parsed once per process."""
    return json.loads((DATA_DIR / name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class EntitlementTemplate:
    """The terms one kind of support contract grants (from organisation.json)."""

    name: str
    allocation: int
    channels: tuple[str, ...]
    sla_id: int


@dataclass(frozen=True)
class Reference:
    """What customer seeding needs from the reference data: products and contract terms."""

    products: dict[str, Product]  # by SKU
    entitlements: dict[str, EntitlementTemplate]  # "gold", "silver", "basic"


def seed_reference(session: Session, *, today: date) -> Reference:
    """Insert every static reference row; flushes so ids exist, never commits."""
    org = load_json("organisation.json")
    products = {p["sku"]: Product(**p) for p in load_json("products.json")}
    for skill, skus in org["skill_areas"].items():  # the skill agents need to work a product's cases
        for sku in skus:
            products[sku].skill = skill
    queues = {q["name"]: Queue(name=q["name"], description=q["description"]) for q in org["queues"]}
    agents = [Agent(**a) for a in org["agents"]]
    calendars = {
        c["name"]: BusinessCalendar(
            name=c["name"], timezone=c["timezone"], hours=c["hours"], country=c.get("country")
        )
        for c in org["calendars"]
    }
    rule_sets = {
        s["name"]: RoutingRuleSet(name=s["name"], active=s["active"]) for s in org["routing_rule_sets"]
    }
    session.add_all([*products.values(), *queues.values(), *agents, *calendars.values(), *rule_sets.values()])
    session.flush()
    agent_ids = {a.email: a.id for a in agents}
    for q in org["queues"]:  # the manager is told when a case in the queue breaches its SLA
        queues[q["name"]].manager_agent_id = agent_ids[q["manager"]] if q.get("manager") else None

    slas = {
        s["name"]: Sla(
            name=s["name"],
            applies_to_tier=Tier(s["applies_to_tier"]) if s["applies_to_tier"] else None,
            applies_to_priorities=list(s.get("applies_to_priorities", [])),
            # No calendar means the SLA clock runs around the clock (gold customers pay for that).
            calendar_id=calendars[s["calendar"]].id if s["calendar"] else None,
            pause_on_hold=s["pause_on_hold"],
        )
        for s in org["slas"]
    }
    session.add_all(slas.values())
    session.flush()

    rows: list[Any] = []
    for s in org["routing_rule_sets"]:
        # Positions follow the file's order: the first matching rule wins.
        rows += [
            RoutingRule(
                rule_set_id=rule_sets[s["name"]].id,
                position=i,
                conditions=r["conditions"],
                queue_id=queues[r["queue"]].id,
            )
            for i, r in enumerate(s["rules"], start=1)
        ]
    for c in org["calendars"]:
        rows += [
            Holiday(calendar_id=calendars[c["name"]].id, day=date.fromisoformat(h["day"]), name=h["name"])
            for h in c["holidays"]
        ]
    for s in org["slas"]:
        rows += [SlaKpi(sla_id=slas[s["name"]].id, **k) for k in s["kpis"]]
    rows += [
        KnowledgeArticle(
            article_number=a["article_number"],
            title=a["title"],
            content=a["content"],
            keywords=a["keywords"],
            product_id=products[a["sku"]].id if a.get("sku") else None,
            language=a["language"],
            published=True,
        )
        for a in load_json("knowledge_articles.json")
    ]
    month_end = today.replace(day=calendar.monthrange(today.year, today.month)[1])
    rows += [
        Goal(
            name=g["name"],
            metric=g["metric"],
            period_start=today.replace(day=1),
            period_end=month_end,
            target=float(g["target"]),
            description=g["description"],
        )
        for g in org["goals"]
    ]
    session.add_all(rows)
    session.flush()

    templates = {
        kind: EntitlementTemplate(
            name=t["name"],
            allocation=t["allocation"],
            channels=tuple(t["channels"]),
            sla_id=slas[t["sla"]].id,
        )
        for kind, t in org["entitlements"].items()
    }
    return Reference(products=products, entitlements=templates)
