"""Portal registration (the portal's merge plugin): registrations posted by the portal → contacts with logins."""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from carepath.db import unit_of_work
from carepath.settings import get_settings
from carepath.sources import journey_batch_size
from models import MessageChannel
from tasks.registration import RegistrationRun, drain_registrations, queued_registration_emails


@task(name="decide-portal-registrations", cache_policy=NO_CACHE)
def decide_registrations(batch_size: int) -> RegistrationRun:
    """One batch of pending registrations merged, linked, refused or put up for review, in one transaction."""
    with unit_of_work() as session:
        return drain_registrations(session=session, settings=get_settings(), limit=batch_size)


@task(name="send-registration-emails", cache_policy=NO_CACHE)
def send_registration_emails() -> int:
    """The polite refusals and the notices to support still queued (by this run, the webhook's or the
    command's), handed to the provider: once each, the outbox's key sees to that."""
    from tasks.messaging import drain_outbox

    with unit_of_work() as session:
        ids = queued_registration_emails(session=session)
    if not ids:
        return 0
    return drain_outbox(settings=get_settings(), channel=MessageChannel.EMAIL, ids=ids).sent


@flow(name="portal-registration")
def portal_registration(
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = journey_batch_size("portal-registration"),
) -> dict:
    """Merge each portal registration into the contact with its email, or link it to the account its domain
    belongs to; refuse public domains and put unknown ones up for review, telling support and the registrant.

    Args:
        batch_size: Registrations decided per transaction.
    """
    outcomes: dict[str, int] = {}
    claimed = failed = 0
    while True:
        run = decide_registrations(batch_size)  # claim → decide → contact, login, conflicts, emails queued
        claimed, failed = claimed + run.claimed, failed + len(run.errors)
        for outcome, n in run.outcomes.items():
            outcomes[outcome] = outcomes.get(outcome, 0) + n
        if run.claimed < batch_size:
            break
    sent = send_registration_emails()  # tell the registrants and support
    figures = {"claimed": claimed, "failed": failed, "emails_sent": sent, **outcomes}
    get_run_logger().info("portal registration: %s", figures)
    return figures
