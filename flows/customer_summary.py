"""Customer summary, from the UI: a ticket or an email → the customer, the case, recent cases, timeline,
entitlement and SLA state, published as a markdown artifact and returned as JSON."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from carepath.db import unit_of_work
from tasks.customer_summary import customer_summary, render_markdown


@task(name="summarise-customer", cache_policy=NO_CACHE)
def summarise(key: str) -> dict:
    """Read everything the summary shows (raises UnknownCustomer for an unknown ticket or email)."""
    with unit_of_work() as session:
        return customer_summary(session=session, key=key)


@flow(name="customer-summary")
def customer_summary_flow(key: str) -> dict:
    """A customer at a glance: who they are, the case, recent cases, the timeline of activities and messages
    with delivery status, entitlement remaining and SLA state.

    Args:
        key: A ticket number (CAS-…) or a contact's email address.
    """
    summary = summarise(key)
    create_markdown_artifact(
        key="customer-summary", markdown=render_markdown(summary), description=f"Customer summary: {key}"
    )
    return summary
