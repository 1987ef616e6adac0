"""Case status journey (a Dataverse trigger on the case's status): a case is resolved → the customer hears."""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from pydantic import Field

from carepath.sources import journey_batch_size
from tasks.case_status import StatusSummary, drain_case_status
from tasks.messaging import send_queued_messages


@flow(name="case-status-journey")
def case_status_journey(
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = journey_batch_size("case-status-journey"),
    send_messages: bool = True,
) -> dict:
    """Record every pending case status change and email the customer about the ones configured.

    Args:
        batch_size: Status changes handled per transaction.
        send_messages: Hand the queued emails to the provider at the end (off: leave them queued).
    """
    total = StatusSummary()
    while True:
        batch = drain_case_status(batch_size)  # claim changes → record posted ones → queue the emails
        for name in ("claimed", "changes", "emails_queued", "emails_blocked", "failed"):
            setattr(total, name, getattr(total, name) + getattr(batch, name))
        total.errors.update(batch.errors)
        if batch.claimed == 0:
            break
    sent = send_queued_messages(channel="email") if send_messages else None  # tell the customers
    figures = {
        "changes_claimed": total.claimed,
        "changes_recorded": total.changes,
        "emails_queued": total.emails_queued,
        "emails_blocked": total.emails_blocked,
        "failed": total.failed,
        "emails_sent": sent.sent if sent else 0,
        "emails_failed": sent.failed if sent else 0,
        "emails_unknown": sent.unknown if sent else 0,
    }
    get_run_logger().info("case status journey: %s", figures)
    return figures
