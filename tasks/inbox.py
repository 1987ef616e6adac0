"""The inbox: store inbound events once, claim pending ones in batches, record how each ended."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from carepath.bulk import in_list
from carepath.db import dialect_insert
from models import InboxEvent, InboxState
from models.base import utcnow


@dataclass(frozen=True)
class ClaimedEvent:
    id: int
    event_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class StoredEvent:
    inbox_id: int
    event_id: str
    created: bool  # False when the same (source, event id) was already in the inbox


def store_events(
    *, session: Session, source: str, kind: str, events: Iterable[tuple[str, Mapping[str, Any]]]
) -> list[StoredEvent]:
    """Insert (event id, payload) pairs; a pair whose (source, event id) is known adds nothing."""
    rows = [{"source": source, "kind": kind, "event_id": eid, "payload": dict(p)} for eid, p in events]
    if not rows:
        return []
    now = utcnow()
    for row in rows:
        row.update(state=InboxState.PENDING, received_at=now, attempts=0)
    stmt = (
        dialect_insert(session, InboxEvent)
        .on_conflict_do_nothing(index_elements=["source", "event_id"])
        .returning(InboxEvent.id, InboxEvent.event_id)
    )
    created = {r.event_id: r.id for r in session.execute(stmt, rows)}
    missing = {r["event_id"] for r in rows} - created.keys()
    existing: dict[str, int] = {}
    if missing:
        stmt = select(InboxEvent.event_id, InboxEvent.id).where(
            InboxEvent.source == source, InboxEvent.event_id.in_(missing)
        )
        existing = {k: v for k, v in session.execute(stmt).tuples()}
    out, seen = [], set()
    for row in rows:
        eid = row["event_id"]
        out.append(StoredEvent(created.get(eid) or existing[eid], eid, eid in created and eid not in seen))
        seen.add(eid)
    return out


def claim_pending(*, session: Session, source: str, kind: str, limit: int) -> list[ClaimedEvent]:
    """Lock up to `limit` pending events, oldest first; other workers skip the locked rows.

    The locks last until the caller's transaction ends, so a worker that dies mid-batch leaves its
    events pending for the next one: nothing claimed is lost.
    """
    stmt = (
        select(InboxEvent.id, InboxEvent.event_id, InboxEvent.payload)
        .where(InboxEvent.state == InboxState.PENDING, InboxEvent.source == source, InboxEvent.kind == kind)
        .order_by(InboxEvent.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [ClaimedEvent(r.id, r.event_id, r.payload) for r in session.execute(stmt)]


def mark_processed(*, session: Session, ids: Iterable[int]) -> None:
    """Record that these events were handled."""
    ids = list(ids)
    if ids:
        t = InboxEvent.__table__
        session.execute(
            update(t)
            .where(in_list(t.c.id, ids, session))
            .values(
                state=InboxState.PROCESSED,
                processed_at=utcnow(),
                error=None,
                attempts=t.c.attempts + 1,
            )
        )


def mark_failed(*, session: Session, errors: Mapping[int, str]) -> None:
    """Record why each of these events could not be handled; they stay in the inbox for replay."""
    if errors:
        now = utcnow()
        session.execute(
            update(InboxEvent),
            [
                {"id": i, "state": InboxState.FAILED, "error": reason[:2000], "processed_at": now}
                for i, reason in errors.items()
            ],
        )


def replay_failed(
    *, session: Session, source: str, kind: str | None = None, ids: Iterable[int] | None = None
) -> int:
    """Put failed events back to pending (after the cause was fixed); returns how many."""
    stmt = update(InboxEvent).where(InboxEvent.state == InboxState.FAILED, InboxEvent.source == source)
    if kind:
        stmt = stmt.where(InboxEvent.kind == kind)
    if ids is not None:
        stmt = stmt.where(InboxEvent.id.in_(list(ids)))
    return session.execute(stmt.values(state=InboxState.PENDING, error=None)).rowcount
