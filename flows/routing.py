"""Routing (every minute, and from the Prefect UI): unrouted cases go to the queue their rules name, and cases
waiting in a queue go to an agent who now has the skills and room."""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from pydantic import Field

from carepath.db import unit_of_work
from tasks.routing import route_pending


@flow(name="route-cases")
def route_cases(limit: Annotated[int, Field(ge=1, le=100_000)] = 5000) -> dict:
    """Route the active cases no queue holds yet, then assign waiting cases to agents with free capacity.

    Args:
        limit: Cases to take at most in one pass, for each of the two steps.
    """
    with unit_of_work() as session:
        summary = route_pending(session=session, limit=limit)
    result = {
        "routed": summary.routed,
        "assigned": summary.assigned,
        "waiting": summary.waiting,
        "by_queue": summary.by_queue,
    }
    get_run_logger().info("Routing: %s", result)
    return result
