"""Routing and assignment: a case goes to the queue its rule set names (rules kept as data: routing_rule /
data/organisation.json) and to the available agent with the best skill match, else it waits there."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import and_, bindparam, func, select, text, update
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Session

from carepath.bulk import bulk_insert, in_list, pg_array_literal
from carepath.db import is_postgres
from carepath.rules.routing import AgentLoad, best_agent, first_matching_queue, required_skills
from models import (
    Account,
    Agent,
    Case,
    CaseStatus,
    Contact,
    Priority,
    Product,
    Queue,
    QueueItem,
    RoutingRule,
    RoutingRuleSet,
)
from models.base import utcnow

# The most urgent cases take the free capacity first.
_URGENCY = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}


@dataclass
class RoutingSummary:
    routed: int = 0
    assigned: int = 0
    waiting: int = 0  # queued, no agent with the skills and free capacity
    by_queue: dict[str, int] = field(default_factory=dict)


def load_rules(*, session: Session) -> list[tuple[dict, int]]:
    """The active rule sets' rules in order: (conditions, queue id)."""
    rows = session.execute(
        select(RoutingRule.conditions, RoutingRule.queue_id)
        .join(RoutingRuleSet, RoutingRuleSet.id == RoutingRule.rule_set_id)
        .where(RoutingRuleSet.active.is_(True))
        .order_by(RoutingRuleSet.id, RoutingRule.position)
    ).all()
    return [(r.conditions, r.queue_id) for r in rows]


def load_agents(*, session: Session) -> list[AgentLoad]:
    """Active agents with their open cases counted, their rows locked in id order on PostgreSQL.

    The lock is what makes assignment race-safe: a second worker waits here, then counts the cases the
    first one assigned (read committed: each statement sees what committed before it)."""
    if is_postgres(session):
        session.execute(text("SELECT id FROM agent WHERE active ORDER BY id FOR UPDATE"))
    held = (
        select(Case.owner_agent_id, func.count().label("n"))
        .where(Case.status == CaseStatus.ACTIVE, Case.owner_agent_id.is_not(None))
        .group_by(Case.owner_agent_id)
        .subquery()
    )
    rows = session.execute(
        select(Agent.id, Agent.skills, Agent.capacity, func.coalesce(held.c.n, 0))
        .outerjoin(held, held.c.owner_agent_id == Agent.id)
        .where(Agent.active.is_(True))
        .order_by(Agent.id)
    ).all()
    return [
        AgentLoad(id_, skills if isinstance(skills, dict) else dict.fromkeys(skills or [], 3), cap, n)
        for id_, skills, cap, n in rows
    ]


def route_and_assign(*, session: Session, case_ids: Iterable[int]) -> RoutingSummary:
    """Queue each unrouted case by the rules and give it to the best available agent, for a whole batch:
    three reads, one update of the cases and one insert of queue items whatever the batch size."""
    summary = RoutingSummary()
    ids = sorted(set(case_ids))
    if not ids:
        return summary
    rules = load_rules(session=session)
    if not rules:  # nothing names a queue: the cases stay unrouted (no need to read them)
        return summary
    facts_stmt = (
        select(
            Case.id,
            Case.origin,
            Case.priority,
            Case.error_code,
            Account.tier,
            Product.sku,
            Product.skill,
            Contact.language,
        )
        .outerjoin(Account, Account.id == Case.account_id)
        .outerjoin(Product, Product.id == Case.product_id)
        .outerjoin(Contact, Contact.id == Case.contact_id)
        .where(in_list(Case.id, ids, session), Case.queue_id.is_(None), Case.status == CaseStatus.ACTIVE)
        .order_by(Case.id)
    )
    if is_postgres(session):  # another worker routing the same cases skips them (it or we will route them)
        facts_stmt = facts_stmt.with_for_update(of=Case.__table__, skip_locked=True)
    cases = session.execute(facts_stmt).all()
    if not cases:
        return summary
    agents = load_agents(session=session)
    qualified: dict[frozenset[str], list[AgentLoad]] = {}  # per skill set: few distinct ones per batch
    queue_names = dict(session.execute(select(Queue.id, Queue.name)).all())
    now = utcnow()
    placed = []
    for c in sorted(cases, key=lambda c: (_URGENCY.get(c.priority, 9), c.id)):
        facts = {
            "tier": c.tier.value if c.tier else None,
            "origin": c.origin.value,
            "priority": c.priority.value,
            "product": c.sku,
            "language": c.language,
            "error_code": c.error_code,
        }
        queue_id = first_matching_queue(facts, rules)
        if queue_id is None:
            continue
        needed = required_skills(product_skill=c.skill, language=c.language, origin=c.origin.value)
        if needed not in qualified:
            qualified[needed] = [a for a in agents if needed <= a.proficiency.keys()]
        agent = best_agent(needed, qualified[needed])
        if agent is not None:
            agent.load += 1
        placed.append((c.id, queue_id, agent.id if agent else None))
        summary.by_queue[queue_names[queue_id]] = summary.by_queue.get(queue_names[queue_id], 0) + 1
    placed.sort()  # one row order for every worker
    _write(session=session, placed=placed, now=now)
    summary.routed = len(placed)
    summary.assigned = sum(1 for p in placed if p[2] is not None)
    summary.waiting = summary.routed - summary.assigned
    return summary


def _write(*, session: Session, placed: list[tuple[int, int, int | None]], now) -> None:
    if not placed:
        return
    if is_postgres(session):
        session.execute(
            text(
                """
                UPDATE support_case AS c SET queue_id = v.queue_id, owner_agent_id = v.agent_id, updated_at = :now
                FROM unnest(CAST(:ids AS integer[]), CAST(:queues AS integer[]), CAST(:agents AS integer[]))
                     AS v(id, queue_id, agent_id)
                WHERE c.id = v.id
                """
            ),
            {
                "now": now,
                "ids": pg_array_literal(p[0] for p in placed),
                "queues": pg_array_literal(p[1] for p in placed),
                "agents": pg_array_literal(p[2] for p in placed),
            },
        )
    else:
        t = Case.__table__
        session.connection().execute(
            update(t)
            .where(and_(t.c.id == bindparam("b_id")))
            .values(queue_id=bindparam("b_queue"), owner_agent_id=bindparam("b_agent"), updated_at=now),
            [{"b_id": i, "b_queue": q, "b_agent": a} for i, q, a in placed],
        )
    bulk_insert(
        session,
        QueueItem.__table__,
        [
            {
                "queue_id": q,
                "case_id": i,
                "worked_by_agent_id": a,
                "entered_at": now,
                "picked_at": now if a is not None else None,
            }
            for i, q, a in placed
        ],
        conflict_columns=["queue_id", "case_id"],
    )


def assign_waiting(*, session: Session, limit: int = 5000) -> RoutingSummary:
    """Give cases waiting in their queues (routed, no owner) to agents who now have the skills and free
    capacity — the most urgent first, then the longest waiting. Set-based like route_and_assign."""
    summary = RoutingSummary()
    item = QueueItem.__table__
    waiting_stmt = (
        select(Case.id, Case.queue_id, Case.origin, Product.skill, Contact.language)
        .join(item, and_(item.c.case_id == Case.id, item.c.queue_id == Case.queue_id))
        .outerjoin(Product, Product.id == Case.product_id)
        .outerjoin(Contact, Contact.id == Case.contact_id)
        .where(Case.status == CaseStatus.ACTIVE, Case.queue_id.is_not(None), Case.owner_agent_id.is_(None))
        .order_by(_urgency_order(), item.c.entered_at, Case.id)
        .limit(limit)
    )
    if is_postgres(session):
        waiting_stmt = waiting_stmt.with_for_update(of=Case.__table__, skip_locked=True)
    waiting = session.execute(waiting_stmt).all()
    if not waiting:
        return summary
    agents = load_agents(session=session)
    if not any(a.free > 0 for a in agents):
        summary.waiting = len(waiting)
        return summary
    qualified: dict[frozenset[str], list[AgentLoad]] = {}
    taken: list[tuple[int, int, int]] = []
    for w in waiting:
        needed = required_skills(product_skill=w.skill, language=w.language, origin=w.origin.value)
        if needed not in qualified:
            qualified[needed] = [a for a in agents if needed <= a.proficiency.keys()]
        agent = best_agent(needed, qualified[needed])
        if agent is None:
            summary.waiting += 1
            continue
        agent.load += 1
        taken.append((w.id, w.queue_id, agent.id))
    if taken:
        now = utcnow()
        taken.sort()
        t = Case.__table__
        conn = session.connection()
        conn.execute(
            update(t)
            .where(t.c.id == bindparam("b_id"), t.c.owner_agent_id.is_(None))
            .values(owner_agent_id=bindparam("b_agent"), updated_at=now),
            [{"b_id": i, "b_agent": a} for i, _, a in taken],
        )
        conn.execute(
            update(item)
            .where(item.c.case_id == bindparam("b_id"), item.c.queue_id == bindparam("b_queue"))
            .values(worked_by_agent_id=bindparam("b_agent"), picked_at=now),
            [{"b_id": i, "b_queue": q, "b_agent": a} for i, q, a in taken],
        )
    summary.assigned = len(taken)
    return summary


def route_pending(*, session: Session, limit: int = 5000) -> RoutingSummary:
    """One routing pass: active cases no queue holds yet (made by hand, by a rule set added later, or by a
    creator without routing) are routed, then waiting cases go to agents who have room now."""
    unrouted = session.scalars(
        select(Case.id)
        .where(Case.status == CaseStatus.ACTIVE, Case.queue_id.is_(None))
        .order_by(Case.id)
        .limit(limit)
    ).all()
    routed = route_and_assign(session=session, case_ids=unrouted)
    later = assign_waiting(session=session, limit=limit)
    routed.assigned += later.assigned
    routed.waiting = later.waiting
    return routed


def _urgency_order():
    return sql_case(*((Case.priority == p, rank) for p, rank in _URGENCY.items()), else_=9)


def route_case(*, session: Session, case: Case) -> str | None:
    """Route and assign one case the ORM holds; returns its queue's name (None: no rule names one)."""
    session.flush()
    route_and_assign(session=session, case_ids=[case.id])
    session.expire(case, ["queue_id", "owner_agent_id", "updated_at"])
    return session.scalar(select(Queue.name).where(Queue.id == case.queue_id)) if case.queue_id else None
