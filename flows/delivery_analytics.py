"""Delivery analytics: messages by channel, status and reason over a period, as a table and a CSV."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy import func, select

from carepath.db import unit_of_work
from carepath.settings import get_settings
from models import Message


@task(cache_policy=NO_CACHE)
def count_deliveries(start: datetime, end: datetime) -> pd.DataFrame:
    """Messages created in [start, end) grouped by channel, status and reason."""
    stmt = (
        select(Message.channel, Message.status, Message.status_reason, func.count().label("messages"))
        .where(Message.created_at >= start, Message.created_at < end)
        .group_by(Message.channel, Message.status, Message.status_reason)
    )
    with unit_of_work() as session:
        rows = [(c.value, s.value, r or "", n) for c, s, r, n in session.execute(stmt)]
    frame = pd.DataFrame(rows, columns=["channel", "status", "reason", "messages"])
    return frame.sort_values(
        ["channel", "status", "messages"], ascending=[True, True, False], ignore_index=True
    )


@flow(name="delivery-analytics")
def delivery_analytics(since: date | None = None, until: date | None = None, days: int = 7) -> str:
    """Count messages by channel, status and reason; publish a table artifact and write a CSV.

    Args:
        since: First day (UTC) of the period; default: `days` before `until`.
        until: Last day (UTC) of the period, inclusive; default: today.
        days: Length of the period when `since` is not given.
    """
    last = until or datetime.now(UTC).date()
    first = since or last - timedelta(days=days - 1)
    start = datetime.combine(first, time.min, UTC)
    end = datetime.combine(last + timedelta(days=1), time.min, UTC)
    frame = count_deliveries(start, end)
    out = Path(get_settings().reports_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"delivery-analytics-{first.isoformat()}-{last.isoformat()}.csv"
    frame.to_csv(path, index=False)
    create_table_artifact(
        key="delivery-analytics",
        table=frame.to_dict(orient="records"),
        description=f"Messages by channel, status and reason, {first} to {last} (CSV: {path.name})",
    )
    get_run_logger().info("delivery analytics: %d rows → %s", len(frame), path)
    return str(path)
