"""Delivery status: provider callbacks and inbound SMS update messages and consent."""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from pydantic import Field

from carepath.sources import journey_batch_size
from tasks.delivery import DeliverySummary, drain_delivery


@flow(name="delivery-status")
def delivery_status(
    batch_size: Annotated[int, Field(ge=1, le=50_000)] = journey_batch_size("delivery-status"),
) -> dict:
    """Apply every pending Twilio status callback, SendGrid event and inbound SMS keyword.

    Args:
        batch_size: Events of each kind handled per transaction.
    """
    total = DeliverySummary()
    while True:
        batch = drain_delivery(batch_size)  # callbacks → message status (forward only) → consent
        for name in ("claimed", "updated", "opt_outs", "opt_ins", "failed"):
            setattr(total, name, getattr(total, name) + getattr(batch, name))
        if batch.claimed == 0:
            break
    figures = {
        "events": total.claimed,
        "messages_updated": total.updated,
        "opt_outs": total.opt_outs,
        "opt_ins": total.opt_ins,
        "failed": total.failed,
    }
    get_run_logger().info("delivery status: %s", figures)
    return figures
