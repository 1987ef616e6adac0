"""Resolving a case (Dynamics' "Resolve Case"): resolution text and time spent, open activities first closed,
the entitlement used, the status change recorded and announced for the case-status journey."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import Activity, ActivityState, Case, CaseStatus, Entitlement, InboxEvent
from models.base import utcnow
from tasks.case_status import change_case_status, status_change_event_id


class ResolutionRefused(Exception):
    """The case cannot be resolved as asked (unknown ticket, open activities); nothing changed."""


@dataclass(frozen=True)
class Resolved:
    ticket: str
    changed: bool  # False: it was already resolved (nothing happened)
    entitlement_remaining: int | None
    closed_activities: list[str]
    inbox_event_id: int | None  # the status-change event to announce

    def as_json(self) -> dict:
        return {
            "ticket": self.ticket,
            "status": "resolved",
            "entitlement_remaining": self.entitlement_remaining,
        }


def resolve_case(
    *,
    session: Session,
    ticket: str,
    resolution: str,
    minutes: int,
    close_activities: bool = False,
    source: str,
) -> Resolved:
    """Resolve the case with `ticket`. Open activities refuse it (named in the error) unless
    `close_activities`, which cancels them (as Dynamics does: they were not done); completed and cancelled
    activities do not count. Resolving a resolved case again changes nothing."""
    if minutes < 0:
        raise ResolutionRefused(f"time spent must be zero or more minutes, not {minutes}")
    if not resolution.strip():
        raise ResolutionRefused("a resolution text is required")
    case = session.scalars(select(Case).where(Case.ticket_number == ticket)).one_or_none()
    if case is None:
        raise ResolutionRefused(f"no case {ticket}")
    session.refresh(case, with_for_update=True)
    closed: list[str] = []
    if case.status is not CaseStatus.RESOLVED:
        open_ = session.execute(
            select(Activity.id, Activity.type, Activity.subject)
            .where(Activity.case_id == case.id, Activity.state == ActivityState.OPEN)
            .order_by(Activity.id)
        ).all()
        names = [f"{a.type.value} #{a.id} «{a.subject}»" for a in open_]
        if open_ and not close_activities:
            raise ResolutionRefused(
                f"{ticket} has open activities: {', '.join(names)} — close or cancel them first "
                "(or resolve with --close-activities)"
            )
        if open_:
            session.execute(
                update(Activity)
                .where(Activity.id.in_([a.id for a in open_]))
                .values(state=ActivityState.CANCELLED, closed_at=utcnow()),
                execution_options={"synchronize_session": False},
            )
            closed = names
    change = change_case_status(
        session=session,
        case=case,
        to_status=CaseStatus.RESOLVED,
        resolution=resolution,
        time_spent_minutes=minutes,
        source=source,
    )
    event_id = (
        session.scalar(select(InboxEvent.id).where(InboxEvent.event_id == status_change_event_id(change.id)))
        if change
        else None
    )
    remaining = (
        session.scalar(select(Entitlement.remaining).where(Entitlement.id == case.entitlement_id))
        if case.entitlement_id
        else None
    )
    return Resolved(ticket, change is not None, remaining, closed, event_id)
