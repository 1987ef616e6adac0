"""Email to case (Dynamics' automatic record creation): emails from a file or a mail server's Maildir → cases."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from carepath.db import unit_of_work
from carepath.masking import mask_text
from carepath.settings import get_settings
from carepath.sources import journey_batch_size
from models import MessageChannel
from tasks.email_to_case import EmailRun, drain_inbound, email_in


@task(name="read-emails-into-cases", cache_policy=NO_CACHE)
def read_emails_into_cases(path: str) -> EmailRun:
    """Each email at `path` into a new case or an activity on its case; acknowledgements sent."""
    return email_in(path=Path(path), settings=get_settings())


@task(name="drain-inbound-emails", cache_policy=NO_CACHE)
def drain_inbound_emails(batch_size: int) -> EmailRun:
    """One batch of the emails SendGrid posted into cases, then their acknowledgements sent."""
    from tasks.messaging import drain_outbox

    settings = get_settings()
    with unit_of_work() as session:
        run = drain_inbound(session=session, settings=settings, limit=batch_size)
    acks = [o.acknowledgement_id for o in run.outcomes if o.acknowledgement_id is not None]
    if acks:
        drain_outbox(settings=settings, channel=MessageChannel.EMAIL, ids=acks)
    return run


@flow(name="email-to-case")
def email_to_case(path: str | None = None, batch_size: int = journey_batch_size("email-to-case")) -> dict:
    """Turn emails into cases: a reply joins its case, a new request opens one and is acknowledged with its
    ticket number, a machine's email is never answered.

    Args:
        path: An .eml file, or a Maildir folder a mail server delivers to (new/, cur/, tmp/). Empty: the
            emails SendGrid Inbound Parse posted to /webhooks/sendgrid/inbound.
        batch_size: Posted emails handled per transaction.
    """
    if path:
        run = read_emails_into_cases(path)
    else:
        run = EmailRun([], [])
        while True:
            batch = drain_inbound_emails(batch_size)
            run.outcomes += batch.outcomes
            run.refused += batch.refused
            if batch.claimed < batch_size:
                break
    figures = {
        "emails": len(run.outcomes),
        "cases_created": sum(o.case_created for o in run.outcomes),
        "acknowledged": sum(o.acknowledged for o in run.outcomes),
        "refused": len(run.refused),
    }
    refused = mask_text("; ".join(run.refused)) or "none"  # a refusal names the sender's address
    get_run_logger().info("email to case: %s; refused: %s", figures, refused)
    return figures
