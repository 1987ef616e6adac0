"""The simple version, for comparison: one event at a time through the ORM, a transaction each.

Written the way a competent engineer would write it: the same database, schema and indexes as the
set-based drain, each query able to use an index (the claim, the device, the recent-fault count, the
open case, the consent), and one short transaction per event.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from pydantic import ValidationError
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from carepath.messages import render_fault_sms
from carepath.rules.faults import is_critical
from carepath.rules.messaging import sms_block_reason
from carepath.rules.tickets import new_ticket_number, new_tracking_token
from carepath.schemas import FaultIn
from carepath.settings import get_settings
from models import (
    Case,
    CaseStatus,
    CaseStatusChange,
    Channel,
    Consent,
    Contact,
    Device,
    DeviceFault,
    InboxEvent,
    InboxState,
    Message,
    MessageChannel,
    MessageStatus,
    Priority,
)
from models.base import utcnow
from tasks.messaging import FAULT_SMS_STEP, idempotency_key


def process_one_event(
    session: Session,
    event: InboxEvent,
    *,
    threshold: int,
    window: timedelta,
    min_count: int,
    tracking_url: Callable[[str, str], str],
) -> None:
    """Handle a single fault the way a first draft would: load, check, create, commit."""
    try:
        fault = FaultIn.model_validate(event.payload)
    except ValidationError as exc:
        event.state, event.error = InboxState.FAILED, str(exc)[:500]
        return
    device = session.scalars(select(Device).where(Device.device_id == fault.device_id)).one_or_none()
    if device is None:
        event.state, event.error = InboxState.FAILED, "unknown device"
        return
    critical = is_critical(fault.error_code, threshold)
    recent = (
        session.scalar(
            select(func.count())
            .select_from(DeviceFault)
            .where(
                DeviceFault.device_id == device.device_id,
                DeviceFault.occurred_at >= fault.occurred_at - window,
                DeviceFault.occurred_at <= fault.occurred_at,
            )
        )
        + 1
    )
    open_case = session.scalars(
        select(Case).where(Case.device_id == device.device_id, Case.status == CaseStatus.ACTIVE)
    ).one_or_none()
    case_id = None
    if critical and open_case is not None:
        open_case.fault_occurrences += 1
        open_case.last_fault_at = max(open_case.last_fault_at or fault.occurred_at, fault.occurred_at)
        open_case.fault_frequency = recent
        case_id = open_case.id
    elif critical and recent >= min_count:
        contact = session.get(Contact, device.owner_contact_id)
        consent = session.scalars(
            select(Consent).where(Consent.contact_id == contact.id, Consent.channel == MessageChannel.SMS)
        ).one_or_none()
        case = Case(
            ticket_number=new_ticket_number(),
            tracking_token=new_tracking_token(),
            title=f"Device {device.device_id}: critical fault {fault.error_code}",
            account_id=contact.account_id,
            contact_id=contact.id,
            product_id=device.product_id,
            device_id=device.device_id,
            error_code=fault.error_code,
            priority=Priority.CRITICAL,
            origin=Channel.IOT,
            fault_occurrences=1,
            fault_frequency=recent,
            first_fault_at=fault.occurred_at,
            last_fault_at=fault.occurred_at,
        )
        session.add(case)
        session.flush()
        case_id = case.id
        session.add(CaseStatusChange(case_id=case.id, to_status=CaseStatus.ACTIVE, source="naive"))
        blocked = sms_block_reason(phone=contact.phone, consent=consent.status.value if consent else None)
        session.add(
            Message(
                idempotency_key=idempotency_key(case.id, FAULT_SMS_STEP),
                channel=MessageChannel.SMS,
                case_id=case.id,
                contact_id=contact.id,
                journey_step=FAULT_SMS_STEP,
                to_address=contact.phone,
                body=render_fault_sms(
                    language=contact.language,
                    first_name=contact.first_name,
                    device_id=device.device_id,
                    error_code=fault.error_code,
                    ticket_number=case.ticket_number,
                    tracking_url=tracking_url(case.ticket_number, case.tracking_token),
                ),
                status=MessageStatus.BLOCKED if blocked else MessageStatus.QUEUED,
                status_reason=blocked,
            )
        )
    session.add(
        DeviceFault(
            inbox_event_id=event.id,
            device_id=device.device_id,
            error_code=fault.error_code,
            occurred_at=fault.occurred_at,
            message=fault.message,
            critical=critical,
            case_id=case_id,
        )
    )
    event.state, event.processed_at = InboxState.PROCESSED, utcnow()


def next_pending_fault() -> Select[tuple[InboxEvent]]:
    """The oldest pending fault, locked, skipping rows another worker holds.

    Filtering on `kind` and ordering by `id` is what lets PostgreSQL walk the inbox's partial index
    (`ix_inbox_event_pending`: kind, id WHERE state = 'pending') and stop at the first row, as the
    set-based claim does; without `kind` it walks the primary key past every processed event.
    """
    return (
        select(InboxEvent)
        .where(InboxEvent.state == InboxState.PENDING, InboxEvent.kind == "fault", InboxEvent.source == "iot")
        .order_by(InboxEvent.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


def naive_drain(
    session_factory: sessionmaker[Session],
    *,
    limit: int,
    threshold: int = 10,
    window: timedelta = timedelta(hours=1),
    min_count: int = 1,
) -> int:
    """Process up to `limit` pending faults one by one, committing each."""
    tracking_url = get_settings().tracking_url
    done = 0
    while done < limit:
        with session_factory() as session, session.begin():
            event = session.scalars(next_pending_fault()).first()
            if event is None:
                break
            process_one_event(
                session,
                event,
                threshold=threshold,
                window=window,
                min_count=min_count,
                tracking_url=tracking_url,
            )
        done += 1
    return done
