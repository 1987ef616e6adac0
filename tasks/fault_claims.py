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
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.orm import Session

from carepath.db import is_postgres
from carepath.rules.faults import Fault
from carepath.schemas import FaultIn, describe_validation_error
from tasks.inbox import ClaimedEvent, claim_pending, mark_processed

_CANONICAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")
_CANONICAL_CODE = re.compile(r"\d{1,7}")

# Claiming marks the rows processed in the same statement (one pass over them, not a lock now and an
# update later); a fault that turns out bad is marked failed afterwards, in the same transaction.
_PG_CLAIM = text(
    """
    UPDATE inbox_event
    SET state = 'processed', processed_at = now(), error = NULL, attempts = attempts + 1
    WHERE id IN (
        SELECT id FROM inbox_event
        WHERE state = 'pending' AND source = 'iot' AND kind = 'fault'
        ORDER BY id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id, event_id,
           jsonb_typeof(payload->'event_id') = 'string' AND payload->>'event_id' = event_id AS same_id,
           jsonb_typeof(payload->'device_id') AS device_type, payload->>'device_id' AS device_id,
           jsonb_typeof(payload->'error_code') AS code_type, payload->>'error_code' AS code,
           jsonb_typeof(payload->'occurred_at') AS time_type, payload->>'occurred_at' AS occurred_at,
           jsonb_typeof(payload->'message') AS message_type, payload->>'message' AS message
    """
)


@dataclass
class ClaimedFaults:
    count: int  # rows claimed, valid or not
    faults: list[Fault]
    errors: dict[int, str]  # inbox id → why the fault is invalid
    # Inbox ids whose payload is in the canonical shape: PostgreSQL can copy them straight from the inbox.
    canonical: set[int] = field(default_factory=set)


def claim_faults(*, session: Session, limit: int) -> ClaimedFaults:
    """Claim up to `limit` pending faults, marking them processed (the caller marks the bad ones failed, in
    the same transaction); return how many, the valid faults, and each invalid one's reason."""
    if not is_postgres(session):
        events = claim_pending(session=session, source="iot", kind="fault", limit=limit)
        mark_processed(session=session, ids=[e.id for e in events])
        faults, errors = parse_faults(events)
        return ClaimedFaults(len(events), faults, errors)
    rows = sorted(session.execute(_PG_CLAIM, {"limit": limit}).all(), key=lambda r: r.id)
    faults, slow = [], []
    for row in rows:
        fault = _canonical_fault(row)
        if fault is None:
            slow.append(row.id)
        else:
            faults.append(fault)
    errors: dict[int, str] = {}
    if slow:
        payloads = session.execute(
            text("SELECT id, event_id, payload FROM inbox_event WHERE id = ANY(:ids)"), {"ids": slow}
        )
        more, errors = parse_faults([ClaimedEvent(r.id, r.event_id, r.payload) for r in payloads])
        faults.extend(more)
    return ClaimedFaults(len(rows), faults, errors, {f.ref for f in faults} - set(slow))


def _canonical_fault(row) -> Fault | None:
    """A Fault when the row is in the canonical shape pydantic would accept unchanged, else None."""
    if not (
        row.same_id
        and row.device_type == "string"
        and row.code_type == "number"
        and row.time_type == "string"
    ):
        return None
    device_id, code, occurred, message = row.device_id, row.code, row.occurred_at, row.message
    if not (0 < len(device_id) <= 64 and device_id == device_id.strip() and _CANONICAL_CODE.fullmatch(code)):
        return None
    error_code = int(code)
    if error_code > 1_000_000 or not _CANONICAL_TIME.fullmatch(occurred):
        return None
    try:
        at = datetime.fromisoformat(occurred)
    except ValueError:
        return None
    if row.message_type not in (None, "null"):
        if row.message_type != "string" or len(message) > 500 or message != message.strip():
            return None
    else:
        message = None
    return Fault(row.id, device_id, error_code, at, message)


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
        faults.append(Fault(event.id, f.device_id, f.error_code, f.occurred_at, f.message))
    return faults, errors
