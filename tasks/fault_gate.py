"""The IoT inbox drain's data-quality gate: the `inbox_faults` suite applied to every claimed batch.

What the claim materialised is validated: the faults it parsed and the payloads pydantic refused (so a refusal
names the expectations it failed). The suite's checks run first as the plain pandas operations GX's metrics use
(`carepath.quality.screen`, milliseconds for a batch); Great Expectations then validates the rows that may fail,
and names what they failed. A clean batch costs no GX call at all (nor, in a fresh process, its import). A failing event is marked failed in the inbox with
those names (replayable, like any failure) and quarantined; the rest of the batch goes on.

On PostgreSQL most faults of a batch are "routine" and never become Python objects (tasks/fault_claims.py): their
payload is canonical — a device id of 1 to 64 characters, an error code of at most 7 plain digits and at most
1,000,000, an ISO 8601 time with a zone — which is what this suite asks, checked server-side and in the claim
loop; the claim also keeps a fault dated after `not_after` out of the routine set, so it reaches this gate.

`owner_phone_is_e164` is a warning: it is counted in the run's summary, the case still opens, and the SMS is
blocked with its reason where the number cannot be texted (carepath.rules.messaging, as before the gate).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from carepath import quality
from carepath.bulk import in_list
from carepath.rules.faults import is_critical
from carepath.settings import get_settings
from models import Contact, Device, InboxEvent
from models.base import utcnow
from tasks.fault_claims import ClaimedFaults
from tasks.quarantine import quarantine_inbox_events

SUITE = "inbox_faults"
COLUMNS = ["device_id", "error_code", "occurred_at", "owner_phone"]


@dataclass
class GateSummary:
    """A drain's gate figures: events quarantined, and rows per expectation failed (and warned)."""

    validated: int = 0
    quarantined: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    warned: Counter[str] = field(default_factory=Counter)

    def add(self, other: GateSummary) -> None:
        self.validated += other.validated
        self.quarantined += other.quarantined
        self.failed.update(other.failed)
        self.warned.update(other.warned)


def gate_horizon() -> datetime:
    """The latest time a fault may report: now plus the clock skew devices are allowed."""
    return utcnow() + timedelta(seconds=get_settings().clock_skew_seconds)


def gate_claimed_faults(
    *, session: Session, claim: ClaimedFaults, threshold: int, not_after: datetime
) -> GateSummary:
    """Validate the claim's materialised faults and refused payloads; move failing faults from `claim.faults`
    to `claim.errors` (named), name the refused ones' failures, quarantine every failing event."""
    refused = _payloads(session, list(claim.errors)) if claim.errors else {}
    # A critical fault may open a case and text the device's owner: only those rows carry the owner's phone.
    texts = [is_critical(f.error_code, threshold) for f in claim.faults]
    phones = _owner_phones(session, {f.device_id for f, t in zip(claim.faults, texts) if t})
    rows = [
        (
            f.ref,
            f.device_id,
            str(f.error_code),
            f.occurred_at.isoformat(),
            phones.get(f.device_id) if t else "",
        )
        for f, t in zip(claim.faults, texts)
    ]
    rows += [
        (ref, _text(p.get("device_id")), _text(p.get("error_code")), _text(p.get("occurred_at")), "")
        for ref, p in refused.items()
        if isinstance(p, dict)
    ]
    if not rows:
        return GateSummary()
    frame = pd.DataFrame(rows, columns=[quality.ROW, *COLUMNS], dtype=object)
    frame = quality.text_frame(frame, COLUMNS).assign(**{quality.ROW: frame[quality.ROW]})
    frame["error_code__number"] = quality.integer_values(frame["error_code"])
    frame["occurred_at__utc"] = quality.timestamp_values(frame["occurred_at"])
    validation = quality.validate(
        SUITE, frame, parameters={"now_plus_skew": not_after.isoformat()}, screened=True
    )

    failed = validation.failed
    if failed:
        claim.faults = [f for f in claim.faults if f.ref not in failed]
        for ref, names in failed.items():
            why = f"failed expectations: {', '.join(names)} (inbox_faults suite)"
            claim.errors[ref] = f"{why}; {claim.errors[ref]}" if ref in claim.errors else why
        payloads = refused | _payloads(session, [r for r in failed if r not in refused])
        quarantine_inbox_events(
            session=session,
            kind=SUITE,
            events=[(ref, _as_dict(payloads.get(ref)), names) for ref, names in sorted(failed.items())],
        )
    return GateSummary(
        validated=len(frame),
        quarantined=len(failed),
        failed=validation.failed_counts(),
        warned=Counter(n for names in validation.warned.values() for n in names),
    )


def _payloads(session: Session, ids: list[int]) -> dict[int, Any]:
    if not ids:
        return {}
    stmt = select(InboxEvent.id, InboxEvent.payload).where(in_list(InboxEvent.id, ids, session))
    return dict(session.execute(stmt).tuples().all())


def _owner_phones(session: Session, device_ids: set[str]) -> dict[str, str]:
    """Each device's owner's phone, for the devices whose critical fault would text them."""
    if not device_ids:
        return {}
    stmt = (
        select(Device.device_id, Contact.phone)
        .join(Contact, Contact.id == Device.owner_contact_id)
        .where(in_list(Device.device_id, device_ids, session))
    )
    return {d: p or "" for d, p in session.execute(stmt).tuples()}


def _text(value: Any) -> str:
    """A JSON value as the text a CSV would hold (so the suite reads payloads and files alike)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int | str):
        return str(value)
    return json.dumps(value)


def _as_dict(payload: Any) -> dict[str, Any]:
    return payload if isinstance(payload, dict) else {"payload": payload}
