"""Case status changes: record them with their history, and tell the customer about the ones that matter."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from carepath.db import unit_of_work
from carepath.messages import render_status_email
from carepath.rules.delivery import should_notify
from carepath.rules.messaging import email_block_reason
from carepath.schemas import CaseStatusIn
from carepath.settings import Settings, get_settings
from models import (
    Case,
    CaseStatus,
    CaseStatusChange,
    Consent,
    Contact,
    MessageChannel,
    ResolutionActivity,
)
from models.base import utcnow
from tasks.entitlement_terms import (  # noqa: F401 — use_/return_entitlement: status changes' API
    follow_status_change,
    return_entitlement,
    use_entitlement,
)
from tasks.inbox import claim_pending, mark_failed, mark_processed, store_events
from tasks.messaging import idempotency_key, insert_messages, outbox_row

DEFAULT_REASONS = {
    CaseStatus.ACTIVE: "in_progress",
    CaseStatus.RESOLVED: "problem_solved",
    CaseStatus.CANCELLED: "cancelled",
}


def change_case_status(
    *,
    session: Session,
    case: Case,
    to_status: CaseStatus,
    source: str,
    status_reason: str | None = None,
    resolution: str | None = None,
    time_spent_minutes: int | None = None,
    changed_at: datetime | None = None,
    emit: bool = True,
) -> CaseStatusChange | None:
    """Move a case to a status, keep the change in its history and (with `emit`) put a
    `case_status` event in the inbox in the same transaction, so the journey hears of every change.

    The case's entitlement term follows the status (tasks/entitlement_terms.py): resolving uses one
    (15 → 14) and reopening or cancelling gives it back, or — for an entitlement that decreases on
    creation — cancelling gives back the term creation took and reactivating takes it again. The same status again is no transition: a new reason is kept in the history, and
    nothing else happens (no entitlement use, no event, no email). Returns the transition, or None.
    """
    # Lock the case first: two workers applying the same change serialise here, and the second sees
    # the status the first set (SQLite's BEGIN IMMEDIATE already serialises writers).
    session.refresh(case, with_for_update=True)
    reason = status_reason or DEFAULT_REASONS[to_status]
    when, now = changed_at or utcnow(), utcnow()
    if case.status == to_status:
        if case.status_reason != reason:
            case.status_reason, case.updated_at = reason, now
            session.add(_history(case, to_status, to_status, reason, source, when, note="reason changed"))
            _sla_status_change(session, case, to_status, reason, when)  # on hold pauses the clocks
        return None
    from_status = case.status
    case.status, case.status_reason, case.updated_at = to_status, reason, now
    change = _history(case, from_status, to_status, reason, source, when)
    session.add(change)
    session.flush()
    if to_status is CaseStatus.RESOLVED:
        case.resolved_at = when
        if resolution is not None or time_spent_minutes is not None:
            _record_resolution(session, case, resolution, time_spent_minutes)
    elif from_status is CaseStatus.RESOLVED:
        case.resolved_at = None
    follow_status_change(
        session=session, case=case, from_status=from_status, to_status=to_status, change_id=change.id
    )
    _sla_status_change(session, case, to_status, reason, when)
    if emit:
        store_events(
            session=session,
            source="carepath",
            kind="case_status",
            events=[
                (
                    status_change_event_id(change.id),
                    {"case_id": case.id, "change_id": change.id, "to_status": to_status.value},
                )
            ],
        )
    return change


def _sla_status_change(
    session: Session, case: Case, to_status: CaseStatus, reason: str, at: datetime
) -> None:
    from tasks.sla import on_status_change

    on_status_change(
        session=session,
        case=case,
        to_status=to_status,
        reason=reason,
        on_hold=get_settings().sla_on_hold_reasons,
        at=at,
    )


def _history(
    case: Case,
    from_status: CaseStatus | None,
    to_status: CaseStatus,
    reason: str,
    source: str,
    when: datetime,
    note: str | None = None,
) -> CaseStatusChange:
    return CaseStatusChange(
        case_id=case.id,
        from_status=from_status,
        to_status=to_status,
        status_reason=reason,
        source=source,
        changed_at=when,
        note=note,
    )


def announce_status_change(inbox_id: int) -> bool:
    """Tell Prefect (after the commit) that a status change waits in the inbox, so the case-status journey runs
    now; False when Prefect did not take it (the inbox sweep announces it later)."""
    from carepath.events import announce, prefect_api_url

    return announce(
        {("carepath", "case_status"): [inbox_id]}, api_url=prefect_api_url(get_settings().prefect_api_url)
    )


def status_change_event_id(change_id: int) -> str:
    """The inbox event id under which a status change made in Carepath is announced."""
    return f"case-status-change-{change_id}"


def _record_resolution(session: Session, case: Case, resolution: str | None, minutes: int | None) -> None:
    activity = session.scalars(
        select(ResolutionActivity).where(ResolutionActivity.case_id == case.id)
    ).first()
    if activity is None:
        session.add(
            ResolutionActivity(case_id=case.id, resolution=resolution or "", time_spent_minutes=minutes or 0)
        )
    else:
        activity.resolution = resolution or activity.resolution
        activity.time_spent_minutes = minutes if minutes is not None else activity.time_spent_minutes


@dataclass
class StatusSummary:
    claimed: int = 0
    changes: int = 0
    emails_queued: int = 0
    emails_blocked: int = 0
    failed: int = 0
    errors: dict[int, str] = field(default_factory=dict)


def drain_case_status_batch(*, session: Session, settings: Settings, limit: int) -> StatusSummary:
    """Claim status changes (our own and posted ones) → record posted ones → email where configured."""
    summary = StatusSummary()
    changes: list[tuple[CaseStatusChange, str | None]] = []
    done: list[int] = []
    own = claim_pending(session=session, source="carepath", kind="case_status", limit=limit)
    for event in own:
        change = session.get(CaseStatusChange, event.payload.get("change_id"))
        if change is None:
            summary.errors[event.id] = f"unknown status change {event.payload.get('change_id')!r}"
            continue
        resolution = session.scalars(
            select(ResolutionActivity.resolution).where(ResolutionActivity.case_id == change.case_id)
        ).first()
        changes.append((change, resolution))
        done.append(event.id)
    posted = claim_pending(session=session, source="cases", kind="status", limit=limit)
    for event in posted:
        try:
            data = CaseStatusIn.model_validate(event.payload)
        except ValidationError as exc:
            summary.errors[event.id] = f"invalid status change: {exc.errors()[0]['msg']}"
            continue
        case = session.scalars(select(Case).where(Case.ticket_number == data.ticket_number)).first()
        if case is None:
            summary.errors[event.id] = f"unknown ticket {data.ticket_number!r} (replay once the case exists)"
            continue
        change = change_case_status(
            session=session,
            case=case,
            to_status=CaseStatus(data.status),
            status_reason=data.status_reason,
            resolution=data.resolution,
            time_spent_minutes=data.time_spent_minutes,
            changed_at=data.changed_at,
            source=f"webhook:{data.source_system or 'cases'}",
            emit=False,
        )
        if change is not None:
            changes.append((change, data.resolution))
        done.append(event.id)
    summary.claimed = len(own) + len(posted)
    summary.changes = len(changes)
    summary.emails_queued, summary.emails_blocked = queue_status_emails(
        session=session, changes=changes, settings=settings
    )
    mark_failed(session=session, errors=summary.errors)
    mark_processed(session=session, ids=done)
    summary.failed = len(summary.errors)
    return summary


def queue_status_emails(
    *, session: Session, changes: list[tuple[CaseStatusChange, str | None]], settings: Settings
) -> tuple[int, int]:
    """One email per notified transition (key: case and status change), blocked when the contact opted out."""
    rows, now = [], utcnow()
    for change, resolution in changes:
        if not should_notify(change.to_status.value, settings.case_status_notify):
            continue
        case = session.get(Case, change.case_id)
        contact = session.get(Contact, case.contact_id) if case.contact_id else None
        if contact is None:
            continue
        consent = session.scalars(
            select(Consent.status).where(
                Consent.contact_id == contact.id, Consent.channel == MessageChannel.EMAIL
            )
        ).first()
        blocked = email_block_reason(email=contact.email, consent=consent.value if consent else None)
        subject, body = render_status_email(
            language=contact.language,
            status=change.to_status.value,
            first_name=contact.first_name,
            ticket_number=case.ticket_number,
            title=case.title,
            resolution=resolution,
            tracking_url=settings.tracking_url(case.ticket_number, case.tracking_token),
        )
        rows.append(
            outbox_row(
                key=idempotency_key(case.id, f"status:{change.id}"),
                channel=MessageChannel.EMAIL,
                case_id=case.id,
                contact_id=contact.id,
                journey_step=f"case_{change.to_status.value}",
                to_address=contact.email,
                subject=subject,
                body=body,
                template=f"email/case_{'resolved' if change.to_status is CaseStatus.RESOLVED else 'status_changed'}",
                blocked=blocked,
                now=now,
            )
        )
    return insert_messages(session=session, rows=rows)


@task(name="drain-case-status-changes", cache_policy=NO_CACHE)
def drain_case_status(batch_size: int) -> StatusSummary:
    """Record and notify one batch of case status changes, in one transaction."""
    with unit_of_work() as session:
        return drain_case_status_batch(session=session, settings=get_settings(), limit=batch_size)
