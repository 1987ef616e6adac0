"""Routing a case to its queue by the active rule set (kept as data: routing_rule / data/organisation.json)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from carepath.rules.routing import first_matching_queue
from models import Account, Case, Contact, Product, Queue, QueueItem, RoutingRule, RoutingRuleSet
from models.base import utcnow


def case_facts(session: Session, case: Case) -> dict[str, str | None]:
    """What routing conditions may name about a case."""
    tier = (
        session.scalar(select(Account.tier).where(Account.id == case.account_id)) if case.account_id else None
    )
    language = (
        session.scalar(select(Contact.language).where(Contact.id == case.contact_id))
        if case.contact_id
        else None
    )
    product = (
        session.scalar(select(Product.sku).where(Product.id == case.product_id)) if case.product_id else None
    )
    return {
        "tier": tier.value if tier else None,
        "origin": case.origin.value,
        "priority": case.priority.value,
        "product": product,
        "language": language,
    }


def route_case(*, session: Session, case: Case) -> str | None:
    """Put the case in the queue the first matching rule names (the active rule sets' rules in order) and
    record when it entered; returns the queue's name (None: no rules and no queues)."""
    rules = session.execute(
        select(RoutingRule.conditions, Queue.name, Queue.id)
        .join(RoutingRuleSet, RoutingRuleSet.id == RoutingRule.rule_set_id)
        .join(Queue, Queue.id == RoutingRule.queue_id)
        .where(RoutingRuleSet.active.is_(True))
        .order_by(RoutingRuleSet.id, RoutingRule.position)
    ).all()
    name = first_matching_queue(case_facts(session, case), [(r.conditions, r.name) for r in rules])
    if name is None:
        return None
    queue_id = next(r.id for r in rules if r.name == name)
    case.queue_id = queue_id
    session.add(QueueItem(queue_id=queue_id, case_id=case.id, entered_at=utcnow()))
    session.flush()
    return name
