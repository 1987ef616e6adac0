"""The outbox: queue messages under an idempotency key, then hand each to its channel exactly once.

A message moves queued → sending → sent | failed in committed steps. Claiming flips it to `sending` in
its own transaction, so a retried task, a re-run flow or a second worker never picks it up again:
that state, and the unique idempotency key, are what guarantee one send per (case, journey step).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import and_, insert, select, update
from sqlalchemy.orm import Session

from carepath.bulk import bulk_insert
from carepath.channels import (
    EmailSender,
    OutgoingEmail,
    OutgoingSms,
    ProviderError,
    SendResult,
    SmsSender,
    email_sender_from_settings,
    sms_sender_from_settings,
)
from carepath.db import dialect_insert, unit_of_work
from carepath.messages import render_fault_sms
from carepath.rules.messaging import TWILIO_OPT_OUT_CODE, sms_block_reason
from carepath.settings import Settings, get_settings
from models import Consent, ConsentStatus, DeliveryEvent, Message, MessageChannel, MessageStatus
from models.base import utcnow
from tasks.device_cases import DeviceOwner, OpenedCase

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


@dataclass(frozen=True)
class ClaimedMessage:
    id: int
    channel: MessageChannel
    to_address: str
    subject: str | None
    body: str
    idempotency_key: str
    contact_id: int | None
    case_id: int | None


@dataclass(frozen=True)
class Outcome:
    message: ClaimedMessage
    result: SendResult | None
    error: ProviderError | None
    attempts: int


@dataclass
class SendSummary:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    failures: dict[int, str] = field(default_factory=dict)


def claim_queued_messages(
    *, session: Session, limit: int, channel: MessageChannel | None = None
) -> list[ClaimedMessage]:
    """Flip up to `limit` queued messages to `sending` and return them; other workers skip them."""
    ids = select(Message.id).where(Message.status == MessageStatus.QUEUED)
    if channel is not None:
        ids = ids.where(Message.channel == channel)
    ids = ids.order_by(Message.id).limit(limit).with_for_update(skip_locked=True)
    now = utcnow()
    stmt = (
        update(Message)
        .where(Message.id.in_(ids.scalar_subquery()), Message.status == MessageStatus.QUEUED)
        .values(status=MessageStatus.SENDING, sending_at=now, updated_at=now)
        .returning(
            Message.id,
            Message.channel,
            Message.to_address,
            Message.subject,
            Message.body,
            Message.idempotency_key,
            Message.contact_id,
            Message.case_id,
        )
    )
    rows = session.execute(stmt, execution_options={"synchronize_session": False}).tuples()
    return sorted((ClaimedMessage(*r) for r in rows), key=lambda m: m.id)


def deliver_one(
    message: ClaimedMessage,
    *,
    sms_sender: SmsSender,
    email_sender: EmailSender,
    status_callback: str | None,
    max_attempts: int,
    backoff_seconds: float,
) -> Outcome:
    """Send one message, retrying transient provider errors with exponential backoff."""
    attempt = 0
    while True:
        attempt += 1
        try:
            if message.channel is MessageChannel.SMS:
                result = sms_sender.send_sms(
                    OutgoingSms(message.to_address, message.body, message.idempotency_key, status_callback)
                )
            else:
                result = email_sender.send_email(
                    OutgoingEmail(
                        to=message.to_address,
                        subject=message.subject or "",
                        text=message.body,
                        idempotency_key=message.idempotency_key,
                        custom_args={"carepath_message_id": str(message.id)},
                    )
                )
            return Outcome(message, result, None, attempt)
        except ProviderError as exc:
            if not exc.transient or attempt >= max_attempts:
                return Outcome(message, None, exc, attempt)
            time.sleep(backoff_seconds * (2 ** (attempt - 1)))


def deliver(
    messages: list[ClaimedMessage],
    *,
    sms_sender: SmsSender,
    email_sender: EmailSender,
    status_callback: str | None,
    concurrency: int,
    max_attempts: int,
    backoff_seconds: float,
) -> list[Outcome]:
    """Send a claimed batch with up to `concurrency` requests in flight.

    SMS go through the sender's async client when it has one (one thread, many requests in flight: the
    Twilio SDK's async client sends several times faster than its sync client in threads); the rest, and
    every sender without one, go through a thread pool.
    """
    sms = [m for m in messages if m.channel is MessageChannel.SMS]
    if sms and hasattr(sms_sender, "send_sms_async") and not _loop_running():
        others = [m for m in messages if m.channel is not MessageChannel.SMS]
        outcomes = asyncio.run(
            _deliver_sms_async(sms, sms_sender, status_callback, concurrency, max_attempts, backoff_seconds)
        )
        messages = others
    else:
        outcomes = []

    def one(m: ClaimedMessage) -> Outcome:
        return deliver_one(
            m,
            sms_sender=sms_sender,
            email_sender=email_sender,
            status_callback=status_callback,
            max_attempts=max_attempts,
            backoff_seconds=backoff_seconds,
        )

    if concurrency <= 1 or len(messages) <= 1:
        return outcomes + [one(m) for m in messages]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(messages))) as pool:
        return outcomes + list(pool.map(one, messages))


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _deliver_sms_async(
    messages: list[ClaimedMessage],
    sender,
    status_callback: str | None,
    concurrency: int,
    max_attempts: int,
    backoff_seconds: float,
) -> list[Outcome]:
    """The async twin of `deliver_one` for a batch of SMS: same retries, many in flight."""
    gate = asyncio.Semaphore(concurrency)
    async with sender.async_client() as client:

        async def one(m: ClaimedMessage) -> Outcome:
            sms = OutgoingSms(m.to_address, m.body, m.idempotency_key, status_callback)
            async with gate:
                attempt = 0
                while True:
                    attempt += 1
                    try:
                        return Outcome(m, await sender.send_sms_async(sms, client), None, attempt)
                    except ProviderError as exc:
                        if not exc.transient or attempt >= max_attempts:
                            return Outcome(m, None, exc, attempt)
                    await asyncio.sleep(backoff_seconds * (2 ** (attempt - 1)))

        return list(await asyncio.gather(*(one(m) for m in messages)))


def record_outcomes(*, session: Session, outcomes: list[Outcome]) -> SendSummary:
    """Save what each provider said: sent with its id, or failed with code and reason; honour opt-outs."""
    now = utcnow()
    summary = SendSummary(claimed=len(outcomes))
    updates, events, opted_out = [], [], set()
    for o in outcomes:
        m = o.message
        if o.result is not None:
            summary.sent += 1
            updates.append(
                {
                    "id": m.id,
                    "status": MessageStatus.SENT,
                    "provider": o.result.provider,
                    "provider_message_id": o.result.provider_message_id,
                    "sent_at": now,
                    "attempts": o.attempts,
                    "updated_at": now,
                    "error_code": None,
                    "status_reason": None,
                }
            )
            events.append(
                {
                    "message_id": m.id,
                    "status": "sent",
                    "error_code": None,
                    "reason": None,
                    "payload": {"provider": o.result.provider, "attempts": o.attempts},
                    "occurred_at": now,
                }
            )
        else:
            err = o.error
            assert err is not None
            summary.failed += 1
            summary.failures[m.id] = err.reason
            code = str(err.code) if err.code is not None else None
            updates.append(
                {
                    "id": m.id,
                    "status": MessageStatus.FAILED,
                    "provider": err.provider,
                    "error_code": code,
                    "status_reason": err.reason[:500],
                    "attempts": o.attempts,
                    "updated_at": now,
                }
            )
            events.append(
                {
                    "message_id": m.id,
                    "status": "failed",
                    "error_code": code,
                    "reason": err.reason,
                    "payload": {
                        "provider": err.provider,
                        "http_status": err.http_status,
                        "attempts": o.attempts,
                    },
                    "occurred_at": now,
                }
            )
            if err.code == TWILIO_OPT_OUT_CODE and m.contact_id is not None:
                opted_out.add(m.contact_id)
    if updates:
        session.execute(update(Message), updates)
        session.execute(insert(DeliveryEvent.__table__), events)
    for contact_id in opted_out:
        set_consent(
            session=session,
            contact_id=contact_id,
            channel=MessageChannel.SMS,
            status=ConsentStatus.OPTED_OUT,
            source=f"twilio:{TWILIO_OPT_OUT_CODE}",
        )
    return summary


def set_consent(
    *, session: Session, contact_id: int, channel: MessageChannel, status: ConsentStatus, source: str
) -> None:
    """Record a contact's consent on a channel (one current row per contact and channel)."""
    stmt = dialect_insert(session, Consent).values(
        contact_id=contact_id, channel=channel, status=status, source=source, changed_at=utcnow()
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["contact_id", "channel"],
        set_={
            "status": stmt.excluded.status,
            "source": stmt.excluded.source,
            "changed_at": stmt.excluded.changed_at,
        },
    )
    session.execute(stmt)


def fail_stale_sending(*, session: Session, older_than: timedelta) -> int:
    """Messages left `sending` by a worker that died: their outcome is unknown, so they are not resent
    (a duplicate text is worse than a missing one); they are marked failed for an operator to review."""
    cutoff = utcnow() - older_than
    return session.execute(
        update(Message)
        .where(and_(Message.status == MessageStatus.SENDING, Message.sending_at < cutoff))
        .values(
            status=MessageStatus.FAILED,
            status_reason="outcome unknown: the sender stopped mid-send; not resent to avoid a duplicate",
            updated_at=utcnow(),
        ),
        execution_options={"synchronize_session": False},
    ).rowcount


def drain_outbox(
    *,
    settings: Settings,
    channel: MessageChannel | None = None,
    batch_size: int = 500,
    max_messages: int | None = None,
    rate_limit_name: str | None = None,
) -> SendSummary:
    """Send queued messages a batch at a time (claim → deliver → record) until none are left."""
    sms_sender, email_sender = sms_sender_from_settings(settings), email_sender_from_settings(settings)
    total = SendSummary()
    while max_messages is None or total.claimed < max_messages:
        limit = batch_size if max_messages is None else min(batch_size, max_messages - total.claimed)
        with unit_of_work() as session:
            claimed = claim_queued_messages(session=session, limit=limit, channel=channel)
        if not claimed:
            break
        # With a rate limit, a second's worth of messages at a time; without, the whole batch at once.
        step = settings.sms_per_second if rate_limit_name else len(claimed)
        outcomes = []
        for start in range(0, len(claimed), step):
            chunk = claimed[start : start + step]
            if rate_limit_name:
                take_rate_slots(rate_limit_name, chunk)
            outcomes += deliver(
                chunk,
                sms_sender=sms_sender,
                email_sender=email_sender,
                status_callback=settings.sms_status_callback_url,
                concurrency=settings.send_concurrency,
                max_attempts=settings.send_max_attempts,
                backoff_seconds=settings.send_backoff_seconds,
            )
        with unit_of_work() as session:
            batch = record_outcomes(session=session, outcomes=outcomes)
        total.claimed += batch.claimed
        total.sent += batch.sent
        total.failed += batch.failed
        total.failures.update(batch.failures)
    return total


@task(name="send-queued-messages", cache_policy=NO_CACHE)
def send_queued_messages(channel: str | None = None, batch_size: int = 500) -> SendSummary:
    """Hand every queued message to its channel, a batch at a time, and record each outcome."""
    settings = get_settings()
    return drain_outbox(
        settings=settings,
        channel=MessageChannel(channel) if channel else None,
        batch_size=batch_size,
        rate_limit_name=settings.sms_rate_limit_name,
    )


def take_rate_slots(name: str, messages: list[ClaimedMessage]) -> None:
    """Wait for the provider's SMS rate: one slot per SMS from a Prefect global rate limit whose slots decay
    at the provider's rate (`carepath serve` creates it; a limit that does not exist is not enforced)."""
    from prefect.concurrency.sync import rate_limit

    sms = sum(m.channel is MessageChannel.SMS for m in messages)
    if sms:
        rate_limit(name, occupy=sms)
