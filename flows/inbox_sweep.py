"""Inbox sweep (every minute): whatever was accepted but not yet handled gets handled; nothing is lost."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import func, select, update

from carepath.db import unit_of_work
from carepath.sources import journeys, load_flow, retryable_kinds
from flows.outbox import outbox
from models import InboxEvent, InboxState
from models.base import utcnow

# Callbacks that can arrive before what they refer to is recorded: retried a few times before giving up.
RETRYABLE = retryable_kinds()


@task(cache_policy=NO_CACHE)
def pending_by_kind() -> dict[str, int]:
    """How many inbox rows wait, by source and kind."""
    with unit_of_work() as session:
        rows = session.execute(
            select(InboxEvent.source, InboxEvent.kind, func.count())
            .where(InboxEvent.state == InboxState.PENDING)
            .group_by(InboxEvent.source, InboxEvent.kind)
        ).all()
    return {f"{s}.{k}": n for s, k, n in rows}


@task(cache_policy=NO_CACHE)
def retry_early_callbacks(max_attempts: int, min_age_seconds: int) -> int:
    """Put failed callbacks that may have come too early back to pending (up to `max_attempts`)."""
    cutoff = utcnow() - timedelta(seconds=min_age_seconds)
    total = 0
    with unit_of_work() as session:
        for source, kind in RETRYABLE:
            total += session.execute(
                update(InboxEvent)
                .where(
                    InboxEvent.state == InboxState.FAILED,
                    InboxEvent.source == source,
                    InboxEvent.kind == kind,
                    InboxEvent.attempts < max_attempts,
                    InboxEvent.processed_at < cutoff,
                )
                .values(state=InboxState.PENDING, attempts=InboxEvent.attempts + 1),
                execution_options={"synchronize_session": False},
            ).rowcount
    return total


@task(cache_policy=NO_CACHE)
def announce_unannounced(min_age_seconds: int, limit: int = 10_000) -> int:
    """Emit the Prefect events that were never emitted (Prefect was down, or the change was made in
    Carepath itself), so automations hear of every accepted event."""
    from carepath.events import announce, prefect_api_url
    from carepath.settings import get_settings

    api_url = prefect_api_url(get_settings().prefect_api_url)
    cutoff = utcnow() - timedelta(seconds=min_age_seconds)
    with unit_of_work() as session:
        rows = session.execute(
            select(InboxEvent.id, InboxEvent.source, InboxEvent.kind)
            .where(
                InboxEvent.announced_at.is_(None),
                InboxEvent.state == InboxState.PENDING,
                InboxEvent.received_at < cutoff,
            )
            .order_by(InboxEvent.id)
            .limit(limit)
        ).all()
        groups: dict[tuple[str, str], list[int]] = {}
        for inbox_id, source, kind in rows:
            groups.setdefault((source, kind), []).append(inbox_id)
        if not announce(groups, api_url=api_url):
            return 0
        session.execute(
            update(InboxEvent).where(InboxEvent.id.in_([r[0] for r in rows])).values(announced_at=utcnow()),
            execution_options={"synchronize_session": False},
        )
    return len(rows)


@task(cache_policy=NO_CACHE)
def refresh_entitlements() -> dict[str, int]:
    """Entitlements follow their dates: waiting → active on the start date, active → expired after the end."""
    from tasks.entitlement_terms import refresh_entitlement_states

    with unit_of_work() as session:
        return refresh_entitlement_states(session=session, on=utcnow().date())


@task(cache_policy=NO_CACHE)
def prune_sign_in_attempts() -> int:
    """Forget portal sign-in attempts older than a day, or than the rate-limit window if that is longer."""
    from carepath.settings import get_settings
    from tasks.sign_in import prune_attempts

    keep = max(timedelta(days=1), timedelta(minutes=get_settings().sign_in_window_minutes))
    with unit_of_work() as session:
        return prune_attempts(session=session, older_than=utcnow() - keep)


@flow(name="inbox-sweep")
def inbox_sweep(
    max_attempts: int = 5,
    retry_after_seconds: int = 60,
    announce_after_seconds: int = 5,
) -> dict:
    """Bring entitlement states up to date, announce what was never announced, drain every kind of pending inbox row, retry early callbacks,
    then the outbox: dead senders' leases released, unknown outcomes settled, queued messages sent.

    Args:
        announce_after_seconds: Pending rows unannounced for this long get their Prefect event now.
        max_attempts: Times a callback that arrived before its message is retried.
        retry_after_seconds: How long a failed callback waits before it is retried.
    """
    # Here, not in a daily flow: a one-at-a-time minute run keeps states within a minute of the (UTC)
    # date change, for two small set-based updates; case creation checks the dates itself anyway.
    entitlements = refresh_entitlements()
    pruned = prune_sign_in_attempts()
    announced = announce_unannounced(announce_after_seconds)
    retried = retry_early_callbacks(max_attempts, retry_after_seconds)
    pending = pending_by_kind()
    ran = []
    for name, journey in journeys().items():  # each journey whose sources have pending rows, as a subflow
        if any(pending.get(f"{source}.{kind}") for source, kind in journey.kinds):
            load_flow(journey.entrypoint)()
            ran.append(name)
    sent = outbox()
    figures = {
        "pending": sum(pending.values()),
        "announced": announced,
        "retried": retried,
        "ran": len(ran),
        "entitlement_states_changed": sum(entitlements.values()),
        "sign_in_attempts_pruned": pruned,
        **{f"messages_{k}": v for k, v in sent.items()},
    }
    get_run_logger().info("inbox sweep: %s; ran %s", figures, ran or "nothing")
    return figures
