"""A timeline of a case, or of a customer (an account or a contact) across their cases: activities, messages
to the customer with their delivery status, and status changes, newest first."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from carepath.rules.activities import newest_first
from models import Account, Activity, Case, CaseStatusChange, Contact, Message
from tasks.activities import ActivityRefused


def timeline(*, session: Session, key: str, limit: int = 500) -> dict:
    """The timeline for a ticket number, an account number or a contact's email (tried in that order; an
    address with @ is a contact's). At most `limit` entries, the newest."""
    key = key.strip()
    cases, contacts, subject = _whose(session, key)
    tickets = dict(
        session.execute(select(Case.id, Case.ticket_number).where(Case.id.in_(cases))).tuples().all()
    )
    entries: list[dict] = []
    messages = {
        m.id: m
        for m in session.scalars(
            select(Message)
            # Messages to the customer (SLA notices to agents have no contact), on these cases or to these people.
            .where(
                Message.contact_id.is_not(None),
                or_(Message.case_id.in_(cases), Message.contact_id.in_(contacts)),
            )
            .order_by(Message.id.desc())
            .limit(limit)
        )
    }
    for a in session.scalars(
        select(Activity).where(Activity.case_id.in_(cases)).order_by(Activity.id.desc()).limit(limit)
    ):
        message = messages.pop(a.message_id, None) if a.message_id else None
        entry = {
            "at": a.created_at,
            "kind": "activity",
            "type": a.type.value,
            "state": a.state.value,
            "subject": a.subject,
            "direction": a.direction.value if a.direction else None,
            "case": tickets.get(a.case_id),
            "automatic": a.automatic,
        }
        if a.due_at:
            entry["due"] = a.due_at.isoformat()
        if message is not None:
            entry["delivery_status"] = message.status.value
        entries.append(entry)
    for m in messages.values():
        entries.append(
            {
                "at": m.created_at,
                "kind": "message",
                "type": m.channel.value,
                "state": m.status.value,
                "subject": m.subject or (m.body if len(m.body) <= 80 else m.body[:79] + "…"),
                "direction": "outbound",
                "case": tickets.get(m.case_id),
                "automatic": m.journey_step is not None and not m.journey_step.startswith("reply:"),
                "delivery_status": m.status.value,
                **({"delivery_reason": m.status_reason} if m.status_reason else {}),
            }
        )
    for c in session.scalars(
        select(CaseStatusChange)
        .where(CaseStatusChange.case_id.in_(cases))
        .order_by(CaseStatusChange.id.desc())
        .limit(limit)
    ):
        entries.append(
            {
                "at": c.changed_at,
                "kind": "status_change",
                "type": c.to_status.value,
                "state": c.status_reason,
                "subject": c.note
                or (
                    f"{c.from_status.value} → {c.to_status.value}"
                    if c.from_status
                    else f"opened ({c.to_status.value})"
                ),
                "direction": None,
                "case": tickets.get(c.case_id),
                "source": c.source,
            }
        )
    ordered = newest_first(entries)[:limit]
    return {**subject, "timeline": [e | {"at": e["at"].isoformat()} for e in ordered]}


def _whose(session: Session, key: str) -> tuple[list[int], list[int], dict]:
    """The cases and contacts a key names, and what it named (for the answer)."""
    if "@" in key:
        contact_ids = session.scalars(
            select(Contact.id).where(func.lower(Contact.email) == key.lower())
        ).all()
        if not contact_ids:
            raise ActivityRefused(f"no contact with email {key}")
        cases = session.scalars(select(Case.id).where(Case.contact_id.in_(contact_ids))).all()
        return list(cases), list(contact_ids), {"contact": key.lower()}
    case_id = session.scalar(select(Case.id).where(Case.ticket_number == key))
    if case_id is not None:
        return [case_id], [], {"ticket": key}
    account_id = session.scalar(select(Account.id).where(Account.account_number == key))
    if account_id is None:
        raise ActivityRefused(
            f"no case, account or contact {key!r} (a ticket number, an account number or an email)"
        )
    cases = session.scalars(select(Case.id).where(Case.account_id == account_id)).all()
    contacts = session.scalars(select(Contact.id).where(Contact.account_id == account_id)).all()
    return list(cases), list(contacts), {"account": key}
