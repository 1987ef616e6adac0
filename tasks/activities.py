"""Activities on a case (phone call, task, email, SMS, note): recorded by a person, closed or cancelled, and a
person's reply to the customer through the outbox. A person's outbound contact is the case's first response
(`carepath.rules.activities.counts_as_first_response`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from carepath.rules.activities import (
    ActivityInputError,
    check_activity,
    closing_state,
    counts_as_first_response,
)
from models import (
    Activity,
    ActivityDirection,
    ActivityState,
    ActivityType,
    Agent,
    Case,
    Message,
)
from models.base import utcnow
from tasks.messaging import idempotency_key, queue_contact_email, queue_contact_sms
from tasks.sla import record_first_response

# The longest SMS body a reply may have: ten concatenated segments.
MAX_SMS_CHARS = 1530


class ActivityRefused(ActivityInputError):
    """The activity or reply cannot be recorded as asked (unknown ticket, agent, activity); nothing changed."""


@dataclass(frozen=True)
class ActivityRecorded:
    id: int
    ticket: str
    type: str
    state: str
    subject: str
    direction: str | None
    due: datetime | None
    agent: str | None
    first_response: bool  # this activity was the case's first response

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "ticket": self.ticket,
            "type": self.type,
            "state": self.state,
            "subject": self.subject,
            "direction": self.direction,
            "due": self.due.isoformat() if self.due else None,
            "agent": self.agent,
            "first_response": self.first_response,
        }


@dataclass(frozen=True)
class ReplyQueued:
    ticket: str
    channel: str
    activity_id: int
    message_id: int | None  # None when blocked
    status: str  # queued | blocked | already_sent
    reason: str | None  # why it was blocked
    first_response: bool

    def as_json(self) -> dict:
        return {
            "ticket": self.ticket,
            "channel": self.channel,
            "activity_id": self.activity_id,
            "message_id": self.message_id,
            "status": self.status,
            "reason": self.reason,
            "first_response": self.first_response,
        }


def case_by_ticket(session: Session, ticket: str) -> Case:
    case = session.scalars(select(Case).where(Case.ticket_number == ticket)).one_or_none()
    if case is None:
        raise ActivityRefused(f"no case {ticket}")
    return case


def agent_by_email(session: Session, email: str | None) -> Agent | None:
    """The agent with this email (any case); None for None; an unknown address is refused."""
    if email is None:
        return None
    agent = session.scalars(select(Agent).where(func.lower(Agent.email) == email.strip().lower())).first()
    if agent is None:
        raise ActivityRefused(f"no agent with email {email}")
    return agent


def add_activity(
    *,
    session: Session,
    ticket: str,
    type: str,
    subject: str,
    body: str | None = None,
    due: datetime | None = None,
    direction: str | None = None,
    agent_email: str | None = None,
    closed: bool = False,
) -> ActivityRecorded:
    """Record an activity on the case, open or (`closed`) completed. A person's outbound call, email or SMS
    that took place is the case's first response."""
    check_activity(type=type, direction=direction, subject=subject)
    case = case_by_ticket(session, ticket)
    agent = agent_by_email(session, agent_email)
    now = utcnow()
    activity = Activity(
        case_id=case.id,
        type=ActivityType(type),
        subject=subject.strip()[:300],
        body=body,
        state=ActivityState.COMPLETED if closed else ActivityState.OPEN,
        direction=ActivityDirection(direction) if direction else None,
        due_at=due,
        agent_id=agent.id if agent else None,
        automatic=False,
        created_at=now,
        closed_at=now if closed else None,
    )
    session.add(activity)
    session.flush()
    first = _first_response_if_it_counts(session, activity, now)
    return _recorded(activity, case.ticket_number, agent, first)


def close_activity(*, session: Session, activity_id: int, cancel: bool = False) -> ActivityRecorded:
    """Complete an open activity, or cancel it. Completing a planned outbound call is the case's first
    response if none came before."""
    activity = session.get(Activity, activity_id, with_for_update=True)
    if activity is None:
        raise ActivityRefused(f"no activity {activity_id}")
    activity.state = ActivityState(closing_state(current=activity.state.value, cancel=cancel))
    now = utcnow()
    activity.closed_at = now
    session.flush()
    ticket = session.scalar(select(Case.ticket_number).where(Case.id == activity.case_id))
    agent = session.get(Agent, activity.agent_id) if activity.agent_id else None
    first = _first_response_if_it_counts(session, activity, now)
    return _recorded(activity, ticket, agent, first)


def reply_to_customer(
    *,
    session: Session,
    ticket: str,
    channel: str,
    text: str,
    agent_email: str,
    request_id: str | None = None,
) -> ReplyQueued:
    """An agent's email or SMS to the case's contact: queued through the outbox under a key made of the
    reply (the same reply asked for twice is sent once; `request_id` tells two identical replies apart),
    consent honoured, with a completed outbound activity linked to the message. It is the case's first
    response unless consent or the address blocked it."""
    if channel not in ("email", "sms"):
        raise ActivityRefused(f"unknown channel {channel!r}: email or sms")
    text = text.strip()
    if not text:
        raise ActivityRefused("a reply needs a text")
    if channel == "sms" and len(text) > MAX_SMS_CHARS:
        raise ActivityRefused(f"an SMS reply is at most {MAX_SMS_CHARS} characters, not {len(text)}")
    case = case_by_ticket(session, ticket)
    agent = agent_by_email(session, agent_email)
    if case.contact_id is None:
        raise ActivityRefused(f"{ticket} has no contact to reply to")
    session.refresh(case, with_for_update=True)  # two identical replies at once: one activity
    step = "reply:" + (
        request_id or hashlib.sha256(f"{channel}\n{agent.email}\n{text}".encode()).hexdigest()[:24]
    )
    now = utcnow()
    if channel == "email":
        subject = f"[{case.ticket_number}] Re: {case.title}"[:300]
        message_id, blocked = queue_contact_email(
            session=session,
            case_id=case.id,
            contact_id=case.contact_id,
            step=step,
            subject=subject,
            body=text + "\n",
            template=None,
            now=now,
        )
    else:
        subject = text if len(text) <= 80 else text[:79] + "…"
        message_id, blocked = queue_contact_sms(
            session=session,
            case_id=case.id,
            contact_id=case.contact_id,
            step=step,
            body=text,
            template=None,
            now=now,
        )
    # The message row exists even when blocked: the activity links to it either way, once.
    stored = session.scalar(
        select(Message.id).where(Message.idempotency_key == idempotency_key(case.id, step))
    )
    existing = session.scalar(select(Activity.id).where(Activity.message_id == stored))
    if existing is not None:
        return ReplyQueued(ticket, channel, existing, message_id, "already_sent", blocked, False)
    activity = Activity(
        case_id=case.id,
        type=ActivityType(channel),
        subject=subject,
        body=text,
        state=ActivityState.COMPLETED,
        direction=ActivityDirection.OUTBOUND,
        agent_id=agent.id,
        automatic=False,
        message_id=stored,
        created_at=now,
        closed_at=now,
    )
    session.add(activity)
    session.flush()
    first = False if blocked else _first_response_if_it_counts(session, activity, now)
    return ReplyQueued(
        ticket, channel, activity.id, message_id, "blocked" if blocked else "queued", blocked, first
    )


def _first_response_if_it_counts(session: Session, activity: Activity, at: datetime) -> bool:
    counts = counts_as_first_response(
        type=activity.type.value,
        direction=activity.direction.value if activity.direction else None,
        automatic=activity.automatic,
        state=activity.state.value,
        planned=activity.due_at is not None,
    )
    return counts and record_first_response(session=session, case_id=activity.case_id, at=at)


def _recorded(activity: Activity, ticket: str, agent: Agent | None, first: bool) -> ActivityRecorded:
    return ActivityRecorded(
        activity.id,
        ticket,
        activity.type.value,
        activity.state.value,
        activity.subject,
        activity.direction.value if activity.direction else None,
        activity.due_at,
        agent.email if agent else None,
        first,
    )
