"""Resolve a case from the Prefect UI: the same rules as `carepath resolve` and the case-status webhook."""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from carepath.db import unit_of_work
from tasks.case_status import announce_status_change
from tasks.resolution import Resolved, resolve_case


@task(name="resolve-case", cache_policy=NO_CACHE)
def resolve(ticket: str, resolution: str, minutes: int, close_activities: bool) -> Resolved:
    """Resolve the case in one transaction, then announce the status change."""
    with unit_of_work() as session:
        resolved = resolve_case(
            session=session,
            ticket=ticket,
            resolution=resolution,
            minutes=minutes,
            close_activities=close_activities,
            source="prefect-ui",
        )
    if resolved.inbox_event_id is not None:
        announce_status_change(resolved.inbox_event_id)
    return resolved


@flow(name="resolve-case")
def resolve_case_flow(
    ticket: str,
    resolution: str,
    minutes: Annotated[int, Field(ge=0, le=100_000)],
    close_activities: bool = False,
) -> dict:
    """Resolve a case: a resolution activity with the time spent, the entitlement used, the customer told.

    Args:
        ticket: The case's ticket number, e.g. CAS-7K3MQ-9XZ2B.
        resolution: What solved the problem (the customer reads it in the resolution email).
        minutes: Time spent on the case, in minutes.
        close_activities: Close the case's open activities first (otherwise they refuse the resolution).
    """
    resolved = resolve(ticket, resolution, minutes, close_activities)
    get_run_logger().info(
        "%s resolved%s; entitlement remaining %s",
        ticket,
        "" if resolved.changed else " already (nothing changed)",
        resolved.entitlement_remaining,
    )
    return resolved.as_json()
