"""A case as an operator reads it: status, queue, owner, SLA KPIs, activities, entitlement, messages."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Activity, Agent, Case, Entitlement, KpiInstance, Queue, SlaKpi


def case_summary(*, session: Session, case: Case) -> dict:
    """The case with what surrounds it, as JSON-ready values (times in ISO 8601, UTC)."""
    queue = session.scalar(select(Queue.name).where(Queue.id == case.queue_id)) if case.queue_id else None
    owner = (
        session.scalar(select(Agent.name).where(Agent.id == case.owner_agent_id))
        if case.owner_agent_id
        else None
    )
    kpis = session.execute(
        select(SlaKpi.kpi, KpiInstance.state, KpiInstance.due_at)
        .join(SlaKpi, SlaKpi.id == KpiInstance.sla_kpi_id)
        .where(KpiInstance.case_id == case.id)
        .order_by(KpiInstance.due_at)
    ).all()
    activities = session.execute(
        select(Activity.type, Activity.state, Activity.subject, Activity.created_at, Activity.due_at)
        .where(Activity.case_id == case.id)
        .order_by(Activity.created_at, Activity.id)
    ).all()
    entitlement = (
        session.execute(
            select(Entitlement.name, Entitlement.remaining).where(Entitlement.id == case.entitlement_id)
        ).first()
        if case.entitlement_id
        else None
    )
    return {
        "ticket": case.ticket_number,
        "title": case.title,
        "status": case.status.value,
        "status_reason": case.status_reason,
        "queue": queue,
        "owner": owner,
        "priority": case.priority.value,
        "origin": case.origin.value,
        "created_at": case.created_at.isoformat(),
        "resolved_at": case.resolved_at.isoformat() if case.resolved_at else None,
        "sla": [{"kpi": k.kpi, "state": k.state.value, "due": k.due_at.isoformat()} for k in kpis],
        "activities": [
            {
                "type": a.type.value,
                "state": a.state.value,
                "subject": a.subject,
                "at": a.created_at.isoformat(),
                "due": a.due_at.isoformat() if a.due_at else None,
            }
            for a in activities
        ],
        "entitlement": {"name": entitlement.name, "remaining": entitlement.remaining}
        if entitlement
        else None,
    }
