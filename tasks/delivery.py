"""Delivery tracking: provider callbacks update messages (forward only), keep every event, honour opt-outs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import select
from sqlalchemy.orm import Session

from carepath.db import unit_of_work
from carepath.rules.delivery import (
    SENDGRID_EVENTS,
    TWILIO_STATUS,
    advance_status,
    sms_keyword,
    twilio_error_reason,
)
from models import ConsentStatus, Contact, DeliveryEvent, Message, MessageChannel, MessageStatus
from models.base import utcnow
from tasks.inbox import ClaimedEvent, claim_pending, mark_failed, mark_processed
from tasks.messaging import set_consent
from tasks.messaging.consent import is_twilio_opt_out, record_twilio_opt_out


@dataclass
class DeliverySummary:
    claimed: int = 0
    updated: int = 0
    opt_outs: int = 0
    opt_ins: int = 0
    failed: int = 0
    errors: dict[int, str] = field(default_factory=dict)


def apply_status(message: Message, *, incoming: str, error_code: str | None, reason: str | None) -> bool:
    """Move the message forward if the callback is newer news; keep its code and reason. True if it moved."""
    new = advance_status(message.status.value, incoming)
    moved = new != message.status.value
    if moved:
        was_unknown = message.status is MessageStatus.UNKNOWN
        message.status = MessageStatus(new)
        message.updated_at = utcnow()
        if error_code or reason or was_unknown:  # the provider's word replaces "outcome unknown"
            message.error_code, message.status_reason = error_code, reason
    return moved


def handle_twilio_status(session: Session, event: ClaimedEvent, summary: DeliverySummary) -> str | None:
    p = event.payload
    message = session.scalars(
        select(Message).where(
            Message.provider == "twilio", Message.provider_message_id == p.get("MessageSid")
        )
    ).first()
    if message is None:
        return (
            f"unknown message SID {p.get('MessageSid')!r} (a callback ahead of its send record is replayed)"
        )
    code = p.get("ErrorCode") or None
    incoming = TWILIO_STATUS.get(str(p.get("MessageStatus", "")).lower())
    if incoming is None:
        return f"unknown Twilio status {p.get('MessageStatus')!r}"
    reason = twilio_error_reason(code)
    session.add(
        DeliveryEvent(message_id=message.id, status=incoming, error_code=code, reason=reason, payload=p)
    )
    summary.updated += apply_status(message, incoming=incoming, error_code=code, reason=reason)
    if is_twilio_opt_out(code) and message.contact_id:
        record_twilio_opt_out(session=session, contact_id=message.contact_id)
        summary.opt_outs += 1
    return None


def handle_twilio_inbound(session: Session, event: ClaimedEvent, summary: DeliverySummary) -> str | None:
    action = sms_keyword(event.payload.get("Body"))
    if action is None:
        return None  # an ordinary reply: kept in the inbox; no consent change
    phone = event.payload.get("From")
    contacts = session.scalars(select(Contact.id).where(Contact.phone == phone)).all()
    status = ConsentStatus.OPTED_OUT if action == "opt_out" else ConsentStatus.OPTED_IN
    keyword = str(event.payload.get("Body", "")).strip().upper()
    for contact_id in contacts:
        set_consent(
            session=session,
            contact_id=contact_id,
            channel=MessageChannel.SMS,
            status=status,
            source=f"sms:{keyword}",
        )
    if action == "opt_out":
        summary.opt_outs += len(contacts)
    else:
        summary.opt_ins += len(contacts)
    return None


def find_email_message(session: Session, payload: dict) -> Message | None:
    """The message a SendGrid event is about: by our custom arg, else by SendGrid's message id."""
    custom = payload.get("carepath_message_id")
    if custom is not None and str(custom).isdigit():
        message = session.get(Message, int(custom))
        if message is not None:
            return message
    sg_id = str(payload.get("sg_message_id") or "").split(".")[0]
    if not sg_id:
        return None
    return session.scalars(
        select(Message).where(Message.provider == "sendgrid", Message.provider_message_id == sg_id)
    ).first()


def _event_time(timestamp: object) -> datetime:
    """A SendGrid event's Unix time; now when it has none or it is no time at all (too large, not a number)."""
    try:
        return datetime.fromtimestamp(int(timestamp), UTC) if timestamp else utcnow()  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return utcnow()


def handle_sendgrid_event(session: Session, event: ClaimedEvent, summary: DeliverySummary) -> str | None:
    p = event.payload
    kind = str(p.get("event", ""))
    if kind not in SENDGRID_EVENTS:
        return f"unknown SendGrid event {kind!r}"
    message = find_email_message(session, p)
    if message is None:
        return f"no message matches SendGrid event {p.get('sg_event_id')!r}"
    incoming, opts_out = SENDGRID_EVENTS[kind]
    reason = p.get("reason") or p.get("response")
    if kind == "bounce":
        reason = f"{p.get('type') or 'bounce'}: {reason or 'no reason given'}"
    occurred = _event_time(p.get("timestamp"))
    session.add(
        DeliveryEvent(
            message_id=message.id,
            status=kind,
            error_code=str(p.get("status") or "") or None,
            reason=reason,
            payload=p,
            occurred_at=occurred,
        )
    )
    if message.provider_message_id is None and p.get("sg_message_id"):
        # Its send went unanswered: SendGrid's event, found by our id in custom_args, settles it.
        message.provider = "sendgrid"
        message.provider_message_id = str(p["sg_message_id"]).split(".")[0][:64]
    if incoming:
        summary.updated += apply_status(message, incoming=incoming, error_code=None, reason=reason)
    if opts_out and message.contact_id:
        set_consent(
            session=session,
            contact_id=message.contact_id,
            channel=MessageChannel.EMAIL,
            status=ConsentStatus.OPTED_OUT,
            source=f"sendgrid:{kind}",
        )
        summary.opt_outs += 1
    return None


HANDLERS = {
    ("twilio", "status"): handle_twilio_status,
    ("twilio", "inbound"): handle_twilio_inbound,
    ("sendgrid", "event"): handle_sendgrid_event,
}


def drain_delivery_batch(*, session: Session, limit: int) -> DeliverySummary:
    """Apply one batch of each kind of delivery callback, oldest first."""
    summary = DeliverySummary()
    for (source, kind), handle in HANDLERS.items():
        events = claim_pending(session=session, source=source, kind=kind, limit=limit)
        summary.claimed += len(events)
        done = []
        for event in events:
            error = handle(session, event, summary)
            if error:
                summary.errors[event.id] = error
            else:
                done.append(event.id)
        session.flush()
        mark_processed(session=session, ids=done)
    mark_failed(session=session, errors=summary.errors)
    summary.failed = len(summary.errors)
    return summary


@task(name="drain-delivery-events", cache_policy=NO_CACHE)
def drain_delivery(batch_size: int) -> DeliverySummary:
    """Apply one batch of delivery callbacks and inbound SMS, in one transaction."""
    with unit_of_work() as session:
        return drain_delivery_batch(session=session, limit=batch_size)
