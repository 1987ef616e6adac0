"""Claims on queued messages are leases: a worker that dies gives back what it never attempted.

queued ─claim─► sending (lease) ─attempt─► sending (attempted_at set, committed) ─► sent | failed | unknown

`attempted_at` is committed just before a wave's requests leave. When a lease runs out, that one column
tells the two crashes apart: never attempted → queued again (nothing left us); attempted → `unknown`, to be
looked up at the provider (reconcile), never resent blindly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import Message, MessageChannel, MessageStatus
from models.base import utcnow


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
class Claim:
    """Messages one worker holds until `expires`; `token` (the claim time) tells its rows from a later
    claim of the same rows by another worker after the lease ran out."""

    messages: list[ClaimedMessage]
    token: datetime
    expires: datetime


def claim_queued_messages(
    *,
    session: Session,
    limit: int,
    lease: timedelta,
    channel: MessageChannel | None = None,
    ids: list[int] | None = None,
) -> Claim:
    """Lease up to `limit` queued messages (oldest first); other workers skip them.

    Two statements, not `UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`: PostgreSQL's
    planner may run that subquery once per outer row, each run locking the next rows (2n rows claimed,
    measured). The SELECT locks exactly the ids it returns; the UPDATE takes those ids."""
    wanted = select(Message.id).where(Message.status == MessageStatus.QUEUED)
    if channel is not None:
        wanted = wanted.where(Message.channel == channel)
    if ids is not None:
        wanted = wanted.where(Message.id.in_(ids))
    wanted = wanted.order_by(Message.id).limit(limit).with_for_update(skip_locked=True)
    now = utcnow()
    expires = now + lease
    picked = session.scalars(wanted).all()
    if not picked:
        return Claim([], now, expires)
    rows = session.execute(
        update(Message)
        .where(Message.id.in_(picked), Message.status == MessageStatus.QUEUED)
        .values(status=MessageStatus.SENDING, sending_at=now, lease_expires_at=expires, updated_at=now)
        .returning(
            Message.id,
            Message.channel,
            Message.to_address,
            Message.subject,
            Message.body,
            Message.idempotency_key,
            Message.contact_id,
            Message.case_id,
        ),
        execution_options={"synchronize_session": False},
    ).tuples()
    return Claim(sorted((ClaimedMessage(*r) for r in rows), key=lambda m: m.id), now, expires)


def mark_attempted(
    *, session: Session, claim: Claim, messages: list[ClaimedMessage], lease: timedelta
) -> tuple[list[ClaimedMessage], datetime]:
    """Record that these messages' requests are about to leave (commit before sending), renewing the lease.
    Returns the messages still held by this claim — only those may be sent — and the attempt time."""
    now = utcnow()
    held = set(
        session.scalars(
            update(Message)
            .where(
                Message.id.in_([m.id for m in messages]),
                Message.status == MessageStatus.SENDING,
                Message.sending_at == claim.token,
            )
            .values(attempted_at=now, lease_expires_at=now + lease, updated_at=now)
            .returning(Message.id),
            execution_options={"synchronize_session": False},
        ).all()
    )
    return [m for m in messages if m.id in held], now


@dataclass
class Released:
    requeued: int = 0  # claimed, never attempted: queued again
    unknown: int = 0  # attempted, no outcome recorded: to be looked up


def outbox_waiting(*, session: Session, now: datetime | None = None) -> bool:
    """Whether messages wait to be sent: queued, or held by a lease that ran out (both on partial indexes)."""
    now = now or utcnow()
    queued = select(Message.id).where(Message.status == MessageStatus.QUEUED).limit(1)
    expired = (
        select(Message.id)
        # The IN names the partial index's predicate, so the planner can use ix_message_in_flight.
        .where(Message.status.in_([MessageStatus.SENDING, MessageStatus.UNKNOWN]))
        .where(Message.status == MessageStatus.SENDING, Message.lease_expires_at < now)
        .limit(1)
    )
    return session.scalar(queued) is not None or session.scalar(expired) is not None


def release_expired_leases(*, session: Session, now: datetime | None = None) -> Released:
    """Give back the messages of workers whose lease ran out (they died or hung)."""
    now = now or utcnow()
    expired = (Message.status == MessageStatus.SENDING, Message.lease_expires_at < now)
    requeued = session.execute(
        update(Message)
        .where(*expired, Message.attempted_at.is_(None))
        .values(status=MessageStatus.QUEUED, sending_at=None, lease_expires_at=None, updated_at=now),
        execution_options={"synchronize_session": False},
    ).rowcount
    unknown = session.execute(
        update(Message)
        .where(*expired, Message.attempted_at.is_not(None))
        .values(
            status=MessageStatus.UNKNOWN,
            lease_expires_at=None,
            status_reason="outcome unknown: the sender stopped after the request may have left",
            updated_at=now,
        ),
        execution_options={"synchronize_session": False},
    ).rowcount
    return Released(requeued, unknown)
