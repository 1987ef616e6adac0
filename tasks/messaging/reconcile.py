"""Settling unknown outcomes by asking the provider, before anything is sent again.

SMS: Twilio's Messages list for our To and From since the attempt, matched by body (the tracking link in it
is unique to the ticket). Found → the message takes Twilio's id and status. Email: SendGrid has no look-up;
its delivery events carry our message id (`custom_args`) and settle the message when they arrive
(tasks/delivery.py). Not found once the grace period has passed → queued again, once; not found after that
resend either → failed for an operator, never a third request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from carepath.channels import SendResult, SmsSender
from models import DeliveryEvent, Message, MessageChannel, MessageStatus

logger = logging.getLogger("carepath.outbox")

MAX_RESENDS = 1


@dataclass
class ReconcileSummary:
    settled: int = 0
    resent: int = 0
    still_unknown: int = 0
    failed: int = 0


def load_unknown(*, session: Session, limit: int) -> list:
    """Messages whose outcome is unknown, oldest first."""
    return session.execute(
        select(
            Message.id,
            Message.channel,
            Message.to_address,
            Message.body,
            Message.attempted_at,
            Message.resends,
        )
        .where(Message.status == MessageStatus.UNKNOWN)
        .order_by(Message.id)
        .limit(limit)
    ).all()


@dataclass(frozen=True)
class Decision:
    message_id: int
    action: str  # settle | resend | give_up | wait
    found: SendResult | None = None


def decide(m, *, sms_sender: SmsSender, grace: timedelta, now: datetime) -> Decision:
    """Ask the provider (outside any transaction: a look-up may take seconds) what became of one message."""
    since = m.attempted_at or now
    if m.channel is MessageChannel.SMS:
        try:
            found = sms_sender.find_sent(to=m.to_address, body=m.body, since=since)
        except Exception as exc:  # the look-up itself went unanswered: nothing is settled or resent
            logger.warning("could not look up message %s at the provider: %s", m.id, exc)
            return Decision(m.id, "wait")
        if found is not None:
            return Decision(m.id, "settle", found)
    if since > now - grace:
        return Decision(m.id, "wait")
    return Decision(m.id, "resend" if m.resends < MAX_RESENDS else "give_up")


def apply_decisions(
    *, session: Session, decisions: list[Decision], now: datetime
) -> tuple[ReconcileSummary, list[int]]:
    """Write what the look-ups found; returns the summary and the ids queued again (to be sent now)."""
    summary, requeued = ReconcileSummary(), []
    for d in decisions:  # each write holds only while the message is still unknown (another run may have won)
        if d.action == "settle" and d.found is not None:
            found = d.found
            summary.settled += _settle(
                session, d.message_id, found.provider, found.provider_message_id, found.status, now
            )
        elif d.action == "resend":
            if _requeue(session, d.message_id, now):
                requeued.append(d.message_id)
                summary.resent += 1
        elif d.action == "give_up":
            summary.failed += _give_up(session, d.message_id, now)
        else:
            summary.still_unknown += 1
    return summary, requeued


def _settle_as(session: Session, message_id: int, now: datetime, event: str, reason: str, **values) -> int:
    """Move one message on from `unknown` (only if it still is) and keep the step as a delivery event."""
    done = session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == MessageStatus.UNKNOWN)
        .values(updated_at=now, **values),
        execution_options={"synchronize_session": False},
    ).rowcount
    if done:
        session.execute(
            insert(DeliveryEvent.__table__).values(
                message_id=message_id,
                status=event,
                error_code=None,
                reason=reason,
                payload={"provider_message_id": values.get("provider_message_id")},
                occurred_at=now,
            )
        )
    return done


def _settle(
    session: Session, message_id: int, provider: str, provider_id: str | None, status: str, now: datetime
) -> int:
    return _settle_as(
        session,
        message_id,
        now,
        "settled",
        "found at the provider",
        status=MessageStatus(status),
        provider=provider,
        provider_message_id=provider_id,
        sent_at=now,
        status_reason=None,
    )


def _requeue(session: Session, message_id: int, now: datetime) -> int:
    reason = "outcome unknown and not found at the provider after the grace period: sent again, once"
    return _settle_as(
        session,
        message_id,
        now,
        "resend",
        reason,
        status=MessageStatus.QUEUED,
        resends=Message.resends + 1,
        attempted_at=None,
        sending_at=None,
        lease_expires_at=None,
        status_reason=reason,
    )


def _give_up(session: Session, message_id: int, now: datetime) -> int:
    reason = "outcome unknown: not found at the provider after one resend; not sent again (review)"
    return _settle_as(
        session, message_id, now, "failed", reason, status=MessageStatus.FAILED, status_reason=reason
    )
