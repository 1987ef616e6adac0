"""The outbox on its own: settle unknown outcomes at the provider, then send whatever is queued.

The journeys send what they queue; this flow is for everything else — messages a dead sender gave back,
unknown outcomes, a backlog left while the provider was down — whether or not new events arrive. The drain
loop runs it whenever the outbox has work, the inbox sweep every minute, operators from the UI or the CLI.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from pydantic import Field

from tasks.messaging import reconcile_messages_task, send_queued_messages


@flow(name="reconcile-messages")
def reconcile_messages(limit: Annotated[int, Field(ge=1, le=100_000)] = 1000) -> dict[str, int]:
    """Look up every message whose outcome is unknown at its provider: adopt what it has, send again —
    once — what it never got after the grace period.

    Args:
        limit: Unknown messages looked up in this run (oldest first).
    """
    summary = reconcile_messages_task(limit)
    figures = {"settled": summary.settled, "resent": summary.resent, "still_unknown": summary.still_unknown}
    if summary.failed:
        figures["failed"] = summary.failed
    get_run_logger().info("reconcile messages: %s", figures)
    return figures


@flow(name="outbox")
def outbox(
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500, reconcile: bool = True
) -> dict[str, int]:
    """Release dead senders' leases, settle unknown outcomes, and send every queued message.

    Args:
        batch_size: Messages claimed per wave when no rate limit applies.
        reconcile: Look up unknown outcomes at the provider first (the drain loop, polling several times a
            second, leaves that to the minute sweep).
    """
    reconciled = reconcile_messages() if reconcile else {}
    sent = send_queued_messages(batch_size=batch_size)
    figures = {**reconciled, "sent": sent.sent, "failed": sent.failed, "unknown": sent.unknown}
    get_run_logger().info("outbox: %s", figures)
    return figures
