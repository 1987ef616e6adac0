"""The outbox loop: release dead workers' leases → settle unknown outcomes → send queued messages.

Each wave is claim (commit) → rate slots → mark attempted (commit) → send → record (commit), so a worker
killed at any moment leaves every message either queued (never attempted), unknown (looked up before any
resend), or settled with its provider id.
"""

from __future__ import annotations

import time
from datetime import timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE

from carepath.channels import email_sender_from_settings, sms_sender_from_settings
from carepath.db import unit_of_work
from carepath.settings import Settings, get_settings
from models import MessageChannel
from models.base import utcnow
from tasks.messaging.claims import (
    ClaimedMessage,
    Released,
    claim_queued_messages,
    mark_attempted,
    release_expired_leases,
)
from tasks.messaging.outcomes import SendSummary, record_outcomes
from tasks.messaging.reconcile import ReconcileSummary, apply_decisions, decide, load_unknown
from tasks.messaging.sending import SendPolicy, deliver


def send_policy(settings: Settings) -> SendPolicy:
    return SendPolicy(
        status_callback=settings.sms_status_callback_url,
        max_attempts=settings.send_max_attempts,
        backoff_seconds=settings.send_backoff_seconds,
        concurrency=settings.send_concurrency,
        from_email=settings.sendgrid_from_email,
    )


def drain_outbox(
    *,
    settings: Settings,
    channel: MessageChannel | None = None,
    batch_size: int = 500,
    max_messages: int | None = None,
    rate_limit_name: str | None = None,
    ids: list[int] | None = None,
) -> SendSummary:
    """Send queued messages a wave at a time until none are left (or `max_messages`); `ids`: only those."""
    sms_sender, email_sender = sms_sender_from_settings(settings), email_sender_from_settings(settings)
    providers = {MessageChannel.SMS: sms_sender.provider, MessageChannel.EMAIL: email_sender.provider}
    policy, lease = send_policy(settings), timedelta(seconds=settings.send_lease_seconds)
    # With a rate limit, a second's worth of messages per wave; without, the whole batch at once.
    wave = min(batch_size, settings.sms_per_second) if rate_limit_name else batch_size
    total = SendSummary()
    while max_messages is None or total.claimed < max_messages:
        limit = wave if max_messages is None else min(wave, max_messages - total.claimed)
        with unit_of_work() as session:
            claim = claim_queued_messages(session=session, limit=limit, lease=lease, channel=channel, ids=ids)
        if not claim.messages:
            break
        if rate_limit_name:
            take_rate_slots(rate_limit_name, claim.messages)
        with unit_of_work() as session:  # committed before any request leaves
            held, attempted_at = mark_attempted(
                session=session, claim=claim, messages=claim.messages, lease=lease
            )
        outcomes = deliver(held, sms_sender=sms_sender, email_sender=email_sender, policy=policy)
        with unit_of_work() as session:
            total.add(
                record_outcomes(
                    session=session,
                    outcomes=outcomes,
                    attempted_at=attempted_at,
                    providers=providers,
                    defer=timedelta(seconds=settings.send_defer_seconds),
                )
            )
    return total


def release_leases() -> Released:
    """Give back what dead or hung senders held (queued if never attempted, else unknown)."""
    with unit_of_work() as session:
        return release_expired_leases(session=session)


def reconcile_outbox(*, settings: Settings, limit: int = 1000) -> ReconcileSummary:
    """Release expired leases, look up every unknown outcome at its provider, and send again — once —
    what the provider never got (after the grace period)."""
    release_leases()
    now = utcnow()
    with unit_of_work() as session:
        unknown = load_unknown(session=session, limit=limit)
    sms_sender = sms_sender_from_settings(settings)
    grace = timedelta(seconds=settings.reconcile_grace_seconds)
    decisions = [decide(m, sms_sender=sms_sender, grace=grace, now=now) for m in unknown]
    with unit_of_work() as session:
        summary, requeued = apply_decisions(session=session, decisions=decisions, now=now)
    if requeued:
        sent = drain_outbox(settings=settings, ids=requeued, rate_limit_name=settings.sms_rate_limit_name)
        # A resend whose outcome is again unknown stays for the next reconcile (it is never sent a third time).
        summary.still_unknown += sent.unknown
    return summary


@task(name="send-queued-messages", cache_policy=NO_CACHE)
def send_queued_messages(channel: str | None = None, batch_size: int = 500) -> SendSummary:
    """Hand every queued message to its channel, a wave at a time, and record each outcome."""
    settings = get_settings()
    release_leases()
    return drain_outbox(
        settings=settings,
        channel=MessageChannel(channel) if channel else None,
        batch_size=batch_size,
        rate_limit_name=settings.sms_rate_limit_name,
    )


@task(name="reconcile-messages", cache_policy=NO_CACHE)
def reconcile_messages_task(limit: int = 1000) -> ReconcileSummary:
    """Settle messages whose outcome is unknown by asking their provider; resend, once, what it never got."""
    return reconcile_outbox(settings=get_settings(), limit=limit)


def ensure_sms_rate_limit(settings: Settings | None = None) -> None:
    """Create (or set) the Prefect global rate limit SMS sends take slots from, at the provider's rate."""
    from prefect import get_client

    settings = settings or get_settings()
    if settings.sms_rate_limit_name:
        with get_client(sync_client=True) as client:
            client.upsert_global_concurrency_limit_by_name(
                settings.sms_rate_limit_name, settings.sms_per_second, settings.sms_per_second
            )


def take_rate_slots(name: str, messages: list[ClaimedMessage]) -> None:
    """Wait for the provider's SMS rate: one slot per SMS from a Prefect global rate limit whose slots decay
    at the provider's rate (`carepath serve` creates it; a limit that does not exist is not enforced)."""
    from prefect.concurrency.sync import rate_limit

    sms = sum(m.channel is MessageChannel.SMS for m in messages)
    if sms and not _take_rate_slots_quickly(name, sms):
        rate_limit(name, occupy=sms)


def _take_rate_slots_quickly(name: str, slots: int, attempts: int = 40) -> bool:
    """The slots from the same endpoint `rate_limit` uses, retrying a refused write after 50 ms; False: not
    taken (the caller falls back to `rate_limit`).

    On a SQLite-backed Prefect server the increment reads then writes in one transaction; while another writer
    holds the database SQLite refuses at once, the server answers 503, and Prefect's client sleeps 2 s before
    retrying — even with PREFECT_CLIENT_MAX_RETRIES=0, it sleeps before checking its budget (prefect
    client/base.py) — the largest part of a fault's time to SMS there (bench/README.md). So the request goes
    through Prefect's own configured HTTP client (its base URL and authentication) without that retry wrapper.
    That client (and its CSRF-token helper) are attributes Prefect does not promise: if one is missing, or
    anything unexpected comes back, `rate_limit` takes over. A 423 (the rate is used up) waits the server's Retry-After."""
    import httpx
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        http = getattr(client, "_client", None)
        if not isinstance(http, httpx.Client):
            return False
        request = http.build_request(
            "POST",
            "/v2/concurrency_limits/increment",
            json={"names": [name], "slots": slots, "mode": "rate_limit"},
        )
        if getattr(http, "enable_csrf_support", False):  # the token Prefect's own send would add
            add_csrf_headers = getattr(http, "_add_csrf_headers", None)
            if add_csrf_headers is None:
                return False
            add_csrf_headers(request)
        for _ in range(attempts):
            response = httpx.Client.send(http, request)  # the plain send, not Prefect's slow-retrying one
            if response.status_code == 200:
                return True
            if response.status_code == 423:
                time.sleep(float(response.headers.get("Retry-After", "0.1")))
            elif response.status_code == 503:
                time.sleep(0.05)
            else:
                return False
    return False
