"""The quarantine: rows a data-quality gate refused, kept with the expectations they failed.

One row per file row (kind, file sha256, row number) or per inbox event: importing the same file again or
replaying an event that fails again updates its entry (the expectations now failed), never adds a second.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, delete, select
from sqlalchemy.orm import Session

from carepath.bulk import in_list
from carepath.db import dialect_insert
from models import QuarantinedRow
from models.base import utcnow


def quarantine_file_rows(
    *,
    session: Session,
    kind: str,
    file_name: str,
    file_sha256: str,
    rows: Sequence[tuple[int, Mapping[str, Any], Sequence[str]]],
) -> None:
    """Keep each (row number, raw values, expectations failed) of a file; a row kept before is updated."""
    if not rows:
        return
    now = utcnow()
    stmt = dialect_insert(session, QuarantinedRow)
    stmt = stmt.on_conflict_do_update(
        index_elements=["kind", "file_sha256", "row_number"],
        set_={"failed_expectations": stmt.excluded.failed_expectations, "source": stmt.excluded.source},
    )
    session.execute(
        stmt,
        [
            {
                "kind": kind,
                "source": file_name[:255],
                "file_sha256": file_sha256,
                "row_number": number,
                "raw": dict(raw),
                "failed_expectations": list(names),
                "quarantined_at": now,
            }
            for number, raw, names in rows
        ],
    )


def release_file_rows(
    *, session: Session, kind: str, file_sha256: str, first: int, last: int, still_bad: Iterable[int]
) -> int:
    """Forget the quarantined rows of this file between `first` and `last` that now pass (a re-import after
    the cause was fixed: the account now exists, say); returns how many."""
    t = QuarantinedRow.__table__
    stmt = delete(t).where(
        t.c.kind == kind, t.c.file_sha256 == file_sha256, t.c.row_number.between(first, last)
    )
    bad = list(still_bad)
    if bad:
        stmt = stmt.where(~in_list(t.c.row_number, bad, session))
    return session.execute(stmt).rowcount


def quarantine_inbox_events(
    *, session: Session, kind: str, events: Sequence[tuple[int, Mapping[str, Any], Sequence[str]]]
) -> None:
    """Keep each (inbox event id, payload, expectations failed); an event kept before is updated."""
    if not events:
        return
    now = utcnow()
    stmt = dialect_insert(session, QuarantinedRow)
    stmt = stmt.on_conflict_do_update(
        index_elements=["inbox_event_id"],
        set_={
            "failed_expectations": stmt.excluded.failed_expectations,
            "raw": stmt.excluded.raw,
            "quarantined_at": stmt.excluded.quarantined_at,
        },
    )
    session.execute(
        stmt,
        [
            {
                "kind": kind,
                "source": "inbox",
                "inbox_event_id": event_id,
                "raw": dict(payload),
                "failed_expectations": list(names),
                "quarantined_at": now,
            }
            for event_id, payload, names in events
        ],
    )


def quarantined(*, session: Session, kind: str, file_sha256: str | None = None) -> list[QuarantinedRow]:
    """A kind's quarantined rows (of one file), in file order."""
    stmt = select(QuarantinedRow).where(QuarantinedRow.kind == kind)
    if file_sha256:
        stmt = stmt.where(and_(QuarantinedRow.file_sha256 == file_sha256))
    return list(session.scalars(stmt.order_by(QuarantinedRow.row_number, QuarantinedRow.inbox_event_id)))
