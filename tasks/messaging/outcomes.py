"""Recording what each provider said: sent with its id, refused with code and reason, or unknown."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert, update
from sqlalchemy.orm import Session

from models import DeliveryEvent, Message, MessageChannel, MessageStatus
from models.base import utcnow
from tasks.messaging.consent import is_twilio_opt_out, record_twilio_opt_out
from tasks.messaging.sending import Outcome


@dataclass
class SendSummary:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    deferred: int = 0  # refused provably (429, 5xx) after every attempt: queued again after a wait
    failures: dict[int, str] = field(default_factory=dict)

    def add(self, other: SendSummary) -> None:
        self.claimed += other.claimed
        self.sent += other.sent
        self.failed += other.failed
        self.unknown += other.unknown
        self.deferred += other.deferred
        self.failures.update(other.failures)


def deferred(o: Outcome, defer: timedelta | None) -> bool:
    """Whether the outcome is a refusal that proves the provider took nothing (429, 5xx, refused connection),
    to be tried again after `defer` rather than failed: a provider outage must delay messages, not lose them."""
    return defer is not None and o.error is not None and o.error.transient


def _row(
    o: Outcome, now: datetime, provider: str | None, attempted_at: datetime, defer: timedelta | None = None
) -> tuple[dict, dict]:
    """The message update and the delivery event for one outcome."""
    base = {
        "b_id": o.message.id,
        "attempts": o.attempts,
        "updated_at": now,
        "lease_expires_at": None,
        "attempted_at": attempted_at,
    }
    if deferred(o, defer):
        # Held, as never attempted (nothing reached the provider), until the lease runs out: then
        # release_expired_leases queues it again. Not claimable meanwhile, so no sender spins on it.
        err = o.error
        reason = f"deferred after {o.attempts} refusals ({err.http_status or 'no answer'}): {err.reason}"[
            :500
        ]
        update_row = {
            **base,
            "status": MessageStatus.SENDING,
            "lease_expires_at": now + defer,
            "attempted_at": None,
            "provider": err.provider,
            "provider_message_id": None,
            "sent_at": None,
            "error_code": str(err.code) if err.code is not None else None,
            "status_reason": reason,
        }
        payload = {"provider": err.provider, "http_status": err.http_status, "attempts": o.attempts}
        return update_row, {
            "message_id": o.message.id,
            "status": "deferred",
            "error_code": update_row["error_code"],
            "reason": reason,
            "payload": payload,
            "occurred_at": now,
        }
    if o.result is not None:
        update_row = {
            **base,
            "status": MessageStatus(o.result.status),
            "provider": o.result.provider,
            "provider_message_id": o.result.provider_message_id,
            "sent_at": now,
            "error_code": None,
            "status_reason": None,
        }
        return update_row, {
            "message_id": o.message.id,
            "status": "sent",
            "error_code": None,
            "reason": None,
            "payload": {"provider": o.result.provider, "attempts": o.attempts},
            "occurred_at": now,
        }
    if o.error is not None:
        err = o.error
        code = str(err.code) if err.code is not None else None
        update_row = {
            **base,
            "status": MessageStatus.FAILED,
            "provider": err.provider,
            "provider_message_id": None,
            "sent_at": None,
            "error_code": code,
            "status_reason": err.reason[:500],
        }
        payload = {"provider": err.provider, "http_status": err.http_status, "attempts": o.attempts}
        return update_row, {
            "message_id": o.message.id,
            "status": "failed",
            "error_code": code,
            "reason": err.reason,
            "payload": payload,
            "occurred_at": now,
        }
    reason = f"outcome unknown: {o.unknown}"[:500]
    update_row = {
        **base,
        "status": MessageStatus.UNKNOWN,
        "provider": provider,
        "provider_message_id": None,
        "sent_at": None,
        "error_code": None,
        "status_reason": reason,
    }
    return update_row, {
        "message_id": o.message.id,
        "status": "unknown",
        "error_code": None,
        "reason": reason,
        "payload": {"provider": provider, "attempts": o.attempts},
        "occurred_at": now,
    }


def record_outcomes(
    *,
    session: Session,
    outcomes: list[Outcome],
    attempted_at: datetime,
    providers: dict[MessageChannel, str],
    defer: timedelta | None = None,
) -> SendSummary:
    """Save each outcome on its message (only while this attempt still holds it); honour opt-outs. With
    `defer`, a provable refusal after every attempt is tried again after that wait instead of failing."""
    now = utcnow()
    summary = SendSummary(claimed=len(outcomes))
    updates, events, opted_out = [], [], set()
    for o in outcomes:
        update_row, event = _row(o, now, providers.get(o.message.channel), attempted_at, defer)
        updates.append(update_row)
        events.append(event)
        if o.result is not None:
            summary.sent += 1
        elif deferred(o, defer):
            summary.deferred += 1
        elif o.error is not None:
            summary.failed += 1
            summary.failures[o.message.id] = o.error.reason
            if is_twilio_opt_out(o.error.code) and o.message.contact_id is not None:
                opted_out.add(o.message.contact_id)
        else:
            summary.unknown += 1
            summary.failures[o.message.id] = update_row["status_reason"]
    if updates:
        t = Message.__table__
        columns = [k for k in updates[0] if k != "b_id"]
        session.execute(
            update(t)
            .where(t.c.id == bindparam("b_id"), t.c.attempted_at == attempted_at)
            .values({k: bindparam(f"v_{k}") for k in columns}),
            [{"b_id": u["b_id"], **{f"v_{k}": u[k] for k in columns}} for u in updates],
        )
        session.execute(insert(DeliveryEvent.__table__), events)
    for contact_id in opted_out:
        record_twilio_opt_out(session=session, contact_id=contact_id)
    return summary
