"""An agent's work on a case from the Prefect UI: record or close an activity, reply to the customer."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from prefect import flow, get_run_logger

from carepath.db import unit_of_work
from carepath.settings import get_settings
from models import MessageChannel
from tasks.activities import add_activity, close_activity, reply_to_customer


@flow(name="add-activity")
def add_activity_flow(
    ticket: str,
    type: Literal["phone_call", "task", "email", "sms", "note"],
    subject: str,
    body: str | None = None,
    due: datetime | None = None,
    direction: Literal["inbound", "outbound"] | None = None,
    agent: str | None = None,
    closed: bool = False,
) -> dict:
    """Record a phone call, task, email, SMS or note on a case; a person's outbound call is its first response.

    Args:
        ticket: The case's ticket number, e.g. CAS-7K3MQ-9XZ2B.
        type: What kind of activity.
        subject: What it is about, in a line.
        body: Notes, the call's summary.
        due: When it is due (a planned call or a task); a time without a zone is UTC.
        direction: Inbound (the customer reached us) or outbound (we reached the customer).
        agent: The agent's email: who did it.
        closed: Record it completed (it already happened) rather than open.
    """
    from carepath.rules.activities import parse_due

    with unit_of_work() as session:
        recorded = add_activity(
            session=session,
            ticket=ticket,
            type=type,
            subject=subject,
            body=body,
            due=parse_due(due.isoformat()) if due else None,
            direction=direction,
            agent_email=agent,
            closed=closed,
        )
    get_run_logger().info("%s: %s #%s %s", ticket, recorded.type, recorded.id, recorded.state)
    return recorded.as_json()


@flow(name="close-activity")
def close_activity_flow(activity_id: int, cancel: bool = False) -> dict:
    """Complete an open activity, or cancel it.

    Args:
        activity_id: The activity's id (from show-case or the timeline).
        cancel: Cancel it (it will not be done) rather than complete it.
    """
    with unit_of_work() as session:
        recorded = close_activity(session=session, activity_id=activity_id, cancel=cancel)
    get_run_logger().info("activity %s %s", activity_id, recorded.state)
    return recorded.as_json()


@flow(name="reply-to-customer")
def reply_to_customer_flow(
    ticket: str,
    channel: Literal["email", "sms"],
    text: str,
    agent: str,
    request_id: str | None = None,
) -> dict:
    """An agent's email or SMS to the case's customer: through the outbox (once, consent honoured), an outbound
    activity on the case, its first response.

    Args:
        ticket: The case's ticket number, e.g. CAS-7K3MQ-9XZ2B.
        channel: Email or SMS.
        text: What the customer reads.
        agent: The replying agent's email.
        request_id: Tells two identical replies apart; without it the same reply is sent once, however often
            the run is retried.
    """
    from tasks.messaging import drain_outbox

    with unit_of_work() as session:
        reply = reply_to_customer(
            session=session,
            ticket=ticket,
            channel=channel,
            text=text,
            agent_email=agent,
            request_id=request_id,
        )
    if reply.status == "queued" and reply.message_id is not None:
        drain_outbox(settings=get_settings(), channel=MessageChannel(channel), ids=[reply.message_id])
    get_run_logger().info("%s: %s reply %s", ticket, channel, reply.status)
    return reply.as_json()
