"""Old duplicate contacts already merged into the real ones (a portal registration typed in a hurry, a second
address): deactivated and emptied, so the weekly bulk delete has work in the demo; one still has a case, so the
demo shows it kept."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from carepath.rules.tickets import new_tracking_token
from data.customers import STORY
from models import Case, CaseStatus, CaseStatusChange, Channel, Contact

# Days since each duplicate was merged: all older than a month; the last one keeps its case.
MERGED_DAYS_AGO = (35, 42, 60, 90, 120, 150)
KEPT_TICKET = "CAS-MERGE-00001"


def seed_merged_contacts(session: Session, *, today: date) -> list[Contact]:
    """Duplicates of generated contacts, merged into them; flushes, never commits."""
    masters = session.scalars(
        select(Contact).order_by(Contact.id).offset(len(STORY)).limit(len(MERGED_DAYS_AGO))
    ).all()
    morning = datetime.combine(today, time(9, 0), tzinfo=UTC)
    duplicates = []
    for master, days in zip(masters, MERGED_DAYS_AGO):
        local, domain = master.email.split("@")
        merged_at = morning - timedelta(days=days)
        duplicates.append(
            Contact(
                first_name=master.first_name[0] + ".",
                last_name=master.last_name,
                email=f"{local}.portal@{domain}",
                phone=master.phone,
                language=master.language,
                time_zone=master.time_zone,
                account_id=master.account_id,
                active=False,
                merged_into_id=master.id,
                merged_at=merged_at,
                created_at=merged_at - timedelta(days=30),
            )
        )
    session.add_all(duplicates)
    session.flush()
    kept = duplicates[-1]
    opened = kept.created_at + timedelta(days=2)
    case = Case(
        ticket_number=KEPT_TICKET,
        title="Portal login does not work",
        account_id=kept.account_id,
        contact_id=kept.id,
        origin=Channel.WEB,
        status=CaseStatus.RESOLVED,
        status_reason="problem_solved",
        tracking_token=new_tracking_token(),
        created_at=opened,
        updated_at=opened + timedelta(days=1),
        first_response_at=opened + timedelta(hours=1),
        resolved_at=opened + timedelta(days=1),
    )
    session.add(case)
    session.flush()
    session.add_all(
        [
            CaseStatusChange(
                case_id=case.id, to_status=CaseStatus.ACTIVE, source="portal", changed_at=opened
            ),
            CaseStatusChange(
                case_id=case.id,
                from_status=CaseStatus.ACTIVE,
                to_status=CaseStatus.RESOLVED,
                status_reason="problem_solved",
                source="agent",
                changed_at=opened + timedelta(days=1),
            ),
        ]
    )
    session.flush()
    return duplicates
