"""Historical device-fault imports (CSV or Parquet): history, not news.

Each fault is kept as the webhook would have left it once drained — an inbox event (source iot, already
processed) and its `device_fault` row — and opens no case and sends nothing. The inbox's unique (source, event
id) makes it idempotent by event id, across paths too: a fault the webhook already delivered is not loaded
again, and a fault imported first is a no-op when the device sends it later.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from carepath import quality
from carepath.bulk import bulk_insert, in_list
from carepath.rules.faults import is_critical
from carepath.settings import get_settings
from models import Device, DeviceFault, InboxEvent, InboxState
from models.base import utcnow
from tasks.imports.run import KEY, ImportKind, objects


def derive(session: Session, frame: pd.DataFrame) -> dict[int, list[str]]:
    """KEY (the event id), the error code as a number, the time in UTC, and whether the device is registered."""
    frame[KEY] = objects(frame, [e or None for e in frame["event_id"]])
    frame["error_code__number"] = quality.integer_values(frame["error_code"])
    frame["occurred_at__utc"] = quality.timestamp_values(frame["occurred_at"])
    devices = {d for d in frame["device_id"] if d}
    known = (
        set(session.scalars(select(Device.device_id).where(in_list(Device.device_id, devices, session))))
        if devices
        else set()
    )
    frame["device_id__registered"] = objects(frame, [(d in known) if d else None for d in frame["device_id"]])
    return {}


def load(session: Session, good: pd.DataFrame) -> int:
    """Record each fault not already known (as a processed inbox event and its fault row); returns how many."""
    now, threshold = utcnow(), get_settings().fault_critical_threshold
    faults = {
        event_id: (device_id, int(code), at.to_pydatetime(), message or None)
        for event_id, device_id, code, at, message in zip(
            good[KEY],
            good["device_id"],
            good["error_code__number"],
            good["occurred_at__utc"],
            good["message"],
        )
    }
    events = [
        {
            "source": "iot",
            "kind": "fault",
            "event_id": event_id,
            "payload": {
                "event_id": event_id,
                "device_id": device_id,
                "error_code": code,
                "occurred_at": at.isoformat().replace("+00:00", "Z"),
                "message": message,
            },
            "state": InboxState.PROCESSED.value,
            "attempts": 0,
            "received_at": now,
            "processed_at": now,
        }
        for event_id, (device_id, code, at, message) in faults.items()
    ]
    inserted = bulk_insert(
        session,
        InboxEvent.__table__,
        events,
        conflict_columns=["source", "event_id"],
        returning=["id", "event_id"],
    )
    rows = []
    for r in inserted:
        device_id, code, at, message = faults[r.event_id]
        rows.append(
            {
                "inbox_event_id": r.id,
                "device_id": device_id,
                "error_code": code,
                "occurred_at": at,
                "message": message,
                "critical": is_critical(code, threshold),
                "case_id": None,
                "recorded_at": now,
            }
        )
    bulk_insert(session, DeviceFault.__table__, rows)
    return len(rows)


FAULTS = ImportKind(
    name="faults",
    columns=("event_id", "device_id", "error_code", "occurred_at", "message"),
    formats=("csv", "parquet"),
    key="event_id",
    derive=derive,
    load=load,
)
