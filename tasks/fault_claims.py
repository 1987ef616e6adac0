"""Claiming fault events and turning them into validated faults, fast on PostgreSQL.

On PostgreSQL the claim query extracts the fields from the JSONB payload server-side, and a payload in the
canonical shape (`{"event_id": "…", "device_id": "…", "error_code": 14, "occurred_at": "…Z"}`) is
checked in Python without decoding the whole document or building a pydantic model. Anything else —
a string error code, a missing zone, an over-long field — goes through `FaultIn`, so what is accepted and
every error message stay exactly pydantic's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.orm import Session

from carepath.db import is_postgres
from carepath.rules.faults import Fault
from carepath.schemas import FaultIn, describe_validation_error
from tasks.inbox import ClaimedEvent, claim_pending, mark_processed

# ASCII digits only, and offsets PostgreSQL can store (up to ±15:59) with minutes under 60 (pydantic's
# limit; Python's fromisoformat would take +05:75). Anything else is for pydantic to judge.
_CANONICAL_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-5]):[0-5][0-9])"
)

# _PENDING_INDEX_ONLY: `kind = ANY('{fault}')` and `ORDER BY kind, id` (the same rows, the same order) are
# served in order only by the partial index of pending rows, so the claim walks that index whatever the
# statistics say. With `kind = 'fault'` and `ORDER BY id`, statistics taken while a backlog was pending made
# the planner walk the primary key past every row already processed: each claim slower than the last.
# Claiming marks the rows processed in the same statement (one pass over them, not a lock now and an
# update later); a fault that turns out bad is marked failed afterwards, in the same transaction.
# The ids come from an ARRAY(…) so the planner looks them up by primary key instead of hashing the whole
# inbox. The server checks the payload's JSON types and event id, and whether the device is registered;
# Python checks the rest.
_PG_CLAIM_SQL = r"""
    WITH claimed AS (
        UPDATE inbox_event
        SET state = 'processed', processed_at = now(), error = NULL, attempts = attempts + 1
        WHERE id = ANY(ARRAY(
            SELECT id FROM inbox_event
            WHERE state = 'pending' AND source = 'iot' AND kind = ANY('{fault}')
            ORDER BY kind, id  -- only ix_inbox_event_pending has this order: see _PENDING_INDEX_ONLY
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ))
        RETURNING id, event_id, payload
    )
    SELECT c.id, c.event_id,
           jsonb_typeof(c.payload->'event_id') = 'string' AND c.payload->>'event_id' = c.event_id
           AND jsonb_typeof(c.payload->'device_id') = 'string'
           AND jsonb_typeof(c.payload->'error_code') = 'number'
           AND jsonb_typeof(c.payload->'occurred_at') = 'string'
           AND coalesce(jsonb_typeof(c.payload->'message'), 'null') IN ('string', 'null') AS shaped,
           c.payload->>'device_id' AS device_id, c.payload->>'error_code' AS error_code,
           c.payload->>'occurred_at' AS occurred_at, c.payload->>'message' AS message,
           EXISTS (SELECT 1 FROM device d WHERE d.device_id = c.payload->>'device_id') AS known,
           -- Whether the device may have reported a critical fault in this claim: anything that is not
           -- plainly a number at or under the threshold counts, so this errs on the side of planning.
           bool_or(CASE WHEN jsonb_typeof(c.payload->'error_code') = 'number'
                        THEN (c.payload->>'error_code')::numeric > %(threshold)s ELSE true END)
               OVER (PARTITION BY c.payload->>'device_id') AS maybe_critical
    FROM claimed c
    ORDER BY c.id
    """  # a psycopg2 statement: parameters as %(name)s


@dataclass
class ClaimedFaults:
    count: int  # rows claimed, valid or not
    faults: list[Fault]
    errors: dict[int, str]  # inbox id → why the fault is invalid
    # Inbox ids whose payload is in the canonical shape: PostgreSQL can copy them straight from the inbox.
    canonical: set[int] = field(default_factory=set)
    # Registered devices among the canonical faults' (the claim looked them up; the others' are not known).
    registered: set[str] = field(default_factory=set)
    # Inbox ids of routine faults: canonical, of registered devices that reported nothing critical in this
    # claim. They need no plan and no case, only to be recorded (not in `faults`).
    routine: list[int] = field(default_factory=list)


def claim_faults(
    *, session: Session, limit: int, threshold: int | None = None, not_after: datetime | None = None
) -> ClaimedFaults:
    """Claim up to `limit` pending faults, marking them processed (the caller marks the bad ones failed, in
    the same transaction); return how many, the valid faults, and each invalid one's reason.

    With the critical `threshold`, PostgreSQL also sets apart the routine faults (see `ClaimedFaults`), so the
    bulk of a batch costs no Python objects at all. A fault dated after `not_after` is never routine: the
    data-quality gate (tasks/fault_gate.py) sees it.
    """
    if not is_postgres(session):
        events = claim_pending(session=session, source="iot", kind="fault", limit=limit)
        mark_processed(session=session, ids=[e.id for e in events])
        faults, errors = parse_faults(events)
        return ClaimedFaults(len(events), faults, errors)
    # Straight from the driver: plain tuples, no result-row objects for thousands of rows.
    with session.connection().connection.cursor() as cursor:
        # No threshold: every device counts as maybe critical, so nothing is set apart as routine.
        cursor.execute(_PG_CLAIM_SQL, {"limit": limit, "threshold": -1 if threshold is None else threshold})
        rows = cursor.fetchall()
    faults, slow, canonical, registered, routine = [], [], set(), set(), []
    fromisoformat, time_shape = datetime.fromisoformat, _CANONICAL_TIME.fullmatch
    for ref, event_id, shaped, device_id, code, occurred, message, known, maybe_critical in rows:
        # What the server did not check: whitespace and lengths as pydantic sees them, a plain integer of
        # at most 7 digits (no sign, fraction or exponent), a real date in the canonical form.
        if (
            shaped
            and event_id == event_id.strip()
            and 0 < len(device_id) <= 64
            and device_id == device_id.strip()
            and 0 < len(code) <= 7
            and code.isascii()
            and code.isdigit()
            and (message is None or (len(message) <= 500 and message == message.strip()))
            and time_shape(occurred)
        ):
            error_code = int(code)
            try:
                at = fromisoformat(occurred)
            except ValueError:
                at = None
            if at is None or error_code > 1_000_000:
                slow.append(ref)
                continue
            canonical.add(ref)
            if known and not maybe_critical and (not_after is None or at <= not_after):
                routine.append((ref, device_id, error_code, at, message))
                continue
            faults.append(Fault(ref, device_id, error_code, at, message))
            if known:
                registered.add(device_id)
        else:
            slow.append(ref)
    errors: dict[int, str] = {}
    if slow:
        # A payload the fast path could not read may still name one of the "routine" devices (with spaces
        # around its id, say) and be critical: plan every fault of this claim, to be safe.
        faults.extend(Fault(*r) for r in routine)
        registered.update(r[1] for r in routine)
        routine = []
        payloads = session.execute(
            text("SELECT id, event_id, payload FROM inbox_event WHERE id = ANY(:ids)"), {"ids": slow}
        )
        more, errors = parse_faults([ClaimedEvent(r.id, r.event_id, r.payload) for r in payloads])
        faults.extend(more)
    return ClaimedFaults(len(rows), faults, errors, canonical, registered, [r[0] for r in routine])


def parse_faults(events: list[ClaimedEvent]) -> tuple[list[Fault], dict[int, str]]:
    """Validate each claimed payload with `FaultIn`; a bad one gets its reason and does not stop the others."""
    faults, errors = [], {}
    for event in events:
        try:
            f = FaultIn.model_validate(event.payload)
        except ValidationError as exc:
            errors[event.id] = describe_validation_error(exc)
            continue
        if f.event_id != event.event_id:
            errors[event.id] = f"invalid fault: payload event_id {f.event_id!r} differs from the inbox's"
            continue
        # In UTC: pydantic accepts offsets up to ±23:59, PostgreSQL stores ±15:59 at most.
        faults.append(Fault(event.id, f.device_id, f.error_code, f.occurred_at.astimezone(UTC), f.message))
    return faults, errors
