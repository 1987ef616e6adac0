"""Putting device faults into the inbox (the receiver, the CLI and the demo all come through here)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from tasks.inbox import StoredEvent, store_events


class MissingEventId(ValueError):
    """An event without an id cannot be de-duplicated, so it is refused rather than stored."""


def store_fault_events(*, session: Session, events: Iterable[Mapping[str, Any]]) -> list[StoredEvent]:
    """Store raw fault payloads in the inbox under their event id (validation happens when drained)."""
    pairs = []
    for event in events:
        event_id = event.get("event_id") if isinstance(event, Mapping) else None
        if not isinstance(event_id, str) or not event_id.strip():
            raise MissingEventId(f"fault without an event_id: {str(event)[:200]}")
        pairs.append((event_id, event))
    return store_events(session=session, source="iot", kind="fault", events=pairs)
