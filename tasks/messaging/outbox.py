"""Queueing: a message row per (case, journey step), queued or blocked with its reason, never sent twice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from carepath.bulk import bulk_insert
from carepath.messages import render_fault_sms
from carepath.rules.messaging import one_line, sms_block_reason
from models import Message, MessageChannel, MessageStatus
from models.base import utcnow

if TYPE_CHECKING:
    from tasks.cases import OpenedCase
    from tasks.faults import DeviceOwner

FAULT_SMS_STEP = "iot_fault_sms"


def idempotency_key(case_id: int, step: str) -> str:
    """One message per case and journey step."""
    return f"case:{case_id}:{step}"


def outbox_row(
    *,
    key: str,
    channel: MessageChannel,
    case_id: int,
    contact_id: int,
    journey_step: str,
    to_address: str | None,
    body: str,
    template: str,
    blocked: str | None,
    now: datetime,
    subject: str | None = None,
) -> dict:
    """A message row for `insert_messages`: queued, or blocked with the reason, not yet attempted."""
    return {
        "idempotency_key": key,
        "channel": channel,
        "case_id": case_id,
        "contact_id": contact_id,
        "journey_step": journey_step,
        "to_address": to_address,
        "subject": subject,
        "body": body,
        "template": template,
        "status": MessageStatus.BLOCKED if blocked else MessageStatus.QUEUED,
        "status_reason": blocked,
        "attempts": 0,
        "resends": 0,
        "created_at": now,
        "updated_at": now,
    }


def queue_fault_sms(
    *,
    session: Session,
    cases: list[OpenedCase],
    owners: dict[str, DeviceOwner],
    tracking_url: Callable[[str, str], str],
    status_callback: str | None = None,
) -> tuple[int, int]:
    """Queue the "we opened a case" SMS for each new case, or record it blocked with the reason."""
    if not cases:
        return 0, 0
    now = utcnow()
    rows = []
    for c in cases:
        owner = owners[c.device_id]
        blocked = sms_block_reason(
            phone=owner.phone, consent=owner.sms_consent, phone_valid=owner.phone_valid
        )
        rows.append(
            outbox_row(
                key=idempotency_key(c.id, FAULT_SMS_STEP),
                channel=MessageChannel.SMS,
                case_id=c.id,
                contact_id=owner.contact_id,
                journey_step=FAULT_SMS_STEP,
                to_address=owner.phone,
                body=render_fault_sms(
                    language=owner.language,
                    first_name=owner.first_name,
                    device_id=c.device_id,
                    error_code=c.error_code,
                    ticket_number=c.ticket_number,
                    tracking_url=tracking_url(c.ticket_number, c.tracking_token),
                ),
                template="sms/iot_fault_case_opened",
                blocked=blocked,
                now=now,
            )
        )
    return insert_messages(session=session, rows=rows)


def insert_messages(*, session: Session, rows: list[dict]) -> tuple[int, int]:
    """Add message rows to the outbox; a row whose idempotency key exists adds nothing.
    Returns (queued, blocked) among the rows given."""
    bulk_insert(session, Message.__table__, rows, conflict_columns=["idempotency_key"])
    blocked = sum(r["status"] is MessageStatus.BLOCKED for r in rows)
    return len(rows) - blocked, blocked


def queue_contact_email(
    *,
    session: Session,
    case_id: int,
    contact_id: int,
    step: str,
    subject: str,
    body: str,
    template: str,
    now: datetime,
) -> tuple[int | None, str | None]:
    """Queue one email to a case's contact under the key (case, step), honouring an email opt-out.
    Returns the message id (None when blocked or the contact has no address) and the reason it was blocked."""
    from sqlalchemy import select

    from carepath.rules.messaging import email_block_reason
    from models import Consent, Contact

    contact = session.get(Contact, contact_id)
    consent = session.scalar(
        select(Consent.status).where(
            Consent.contact_id == contact_id, Consent.channel == MessageChannel.EMAIL
        )
    )
    blocked = email_block_reason(
        email=contact.email if contact else None, consent=consent.value if consent else None
    )
    return _queue_one(
        session=session,
        key=idempotency_key(case_id, step),
        channel=MessageChannel.EMAIL,
        case_id=case_id,
        contact_id=contact_id,
        journey_step=step,
        to_address=contact.email if contact else None,
        subject=one_line(subject)[:300],  # whatever the title held, one header line
        body=body,
        template=template,
        blocked=blocked,
        now=now,
    )


def queue_contact_sms(
    *,
    session: Session,
    case_id: int,
    contact_id: int,
    step: str,
    body: str,
    template: str | None,
    now: datetime,
) -> tuple[int | None, str | None]:
    """Queue one SMS to a case's contact under the key (case, step): texting needs the contact's SMS opt-in
    and a valid mobile number, else the message is recorded blocked with the reason. Returns the message id
    (None when blocked) and the reason it was blocked."""
    from sqlalchemy import select

    from models import Consent, Contact

    contact = session.get(Contact, contact_id)
    consent = session.scalar(
        select(Consent.status).where(Consent.contact_id == contact_id, Consent.channel == MessageChannel.SMS)
    )
    phone = contact.phone if contact else None
    trusted = contact is not None and contact.phone_checked == phone
    blocked = sms_block_reason(
        phone=phone,
        consent=consent.value if consent else None,
        phone_valid=contact.phone_valid if trusted else None,
    )
    return _queue_one(
        session=session,
        key=idempotency_key(case_id, step),
        channel=MessageChannel.SMS,
        case_id=case_id,
        contact_id=contact_id,
        journey_step=step,
        to_address=phone,
        body=body,
        template=template,
        blocked=blocked,
        now=now,
    )


def _queue_one(*, session: Session, key: str, blocked: str | None, **row) -> tuple[int | None, str | None]:
    """Insert one message (a repeat of its key inserts nothing) and return its id — None when blocked — and
    the reason it was blocked."""
    from sqlalchemy import select

    insert_messages(session=session, rows=[outbox_row(key=key, blocked=blocked, **row)])
    message_id = session.scalar(select(Message.id).where(Message.idempotency_key == key))
    return (None if blocked else message_id), blocked
