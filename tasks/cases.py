"""Cases: find a device's open case, open cases in bulk, attach repeat faults, record status changes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, case, select, text, update
from sqlalchemy.orm import Session

from carepath.bulk import bulk_insert_columns, in_list, pg_array_literal
from carepath.db import is_postgres
from carepath.rules.faults import DevicePlan, case_title
from carepath.rules.tickets import new_ticket_number, new_tracking_token
from models import Case, CaseStatus, CaseStatusChange, Channel, Priority
from models.base import utcnow
from tasks.device_cases import DeviceOwner, OpenedCase
from tasks.entitlement_terms import decide_new_cases, record_new_case_terms


@dataclass(frozen=True)
class NewIotCase:
    device_id: str
    contact_id: int
    account_id: int | None
    product_id: int | None
    product_sku: str | None
    error_code: int
    title: str
    description: str | None
    first_fault_at: datetime
    last_fault_at: datetime
    occurrences: int
    frequency: int

    @classmethod
    def from_plan(cls, plan: DevicePlan, owner: DeviceOwner) -> NewIotCase:
        """The case a device's plan opens: mapped from the opening fault, counting the faults attached."""
        opener = plan.opens_case
        assert opener is not None
        attached = plan.attached
        f = opener.fault
        return cls(
            device_id=plan.device_id,
            contact_id=owner.contact_id,
            account_id=owner.account_id,
            product_id=owner.product_id,
            product_sku=owner.product_sku,
            error_code=f.error_code,
            title=case_title(
                error_code=f.error_code,
                device_id=f.device_id,
                product_name=owner.product_name,
                message=f.message,
            ),
            description=f.message,
            first_fault_at=f.occurred_at,
            last_fault_at=max(d.fault.occurred_at for d in attached),
            occurrences=len(attached),
            frequency=max(d.frequency for d in attached),
        )


# PostgreSQL: a look-up in that partial unique index per device, whatever the statistics say (with
# `= ANY(…)` of thousands of ids the planner read every active case). OFFSET 0 keeps the nested loop.
_PG_OPEN_CASES = text(
    """
    SELECT v.device_id, c.id FROM unnest(CAST(:ids AS varchar[])) AS v(device_id)
    CROSS JOIN LATERAL (
        SELECT id FROM support_case WHERE device_id = v.device_id AND status = 'active' OFFSET 0
    ) AS c
    """
)


def find_open_cases(*, session: Session, device_ids: Iterable[str]) -> dict[str, int]:
    """The open case of each device that has one (at most one each: a partial unique index says so)."""
    device_ids = list(device_ids)
    if not device_ids:
        return {}
    if is_postgres(session):
        rows = session.connection().execute(_PG_OPEN_CASES, {"ids": pg_array_literal(device_ids)})
        return {device_id: case_id for device_id, case_id in rows}
    stmt = select(Case.device_id, Case.id).where(
        Case.status == CaseStatus.ACTIVE, in_list(Case.device_id, device_ids, session)
    )
    return {k: v for k, v in session.connection().execute(stmt).tuples()}


def open_iot_cases(
    *, session: Session, cases: list[NewIotCase], journey: str
) -> tuple[dict[str, OpenedCase], dict[str, int], dict[str, str]]:
    """Insert critical-priority IoT cases with their first status-history row and their entitlement terms.

    Returns the cases opened, by device; the devices whose open case another worker created first
    (their faults attach to that case instead: the partial unique index makes the race harmless); and
    the devices whose case a spent entitlement refused, with the reason (no case is opened for them).
    """
    if not cases:
        return {}, {}, {}
    now = utcnow()
    # Decide and insert in device order: concurrent drains then wait on each other instead of deadlocking.
    cases = sorted(cases, key=lambda c: c.device_id)
    in_force, decided = decide_new_cases(
        session=session,
        cases=[(c.device_id, Channel.IOT.value, c.product_sku, c.account_id, c.contact_id) for c in cases],
        on=now.date(),
    )
    refused = {d: t.refusal for d, t in decided.items() if t.refusal is not None}
    kept = [c for c in cases if c.device_id not in refused] if refused else cases
    n = len(kept)
    # Column by column (one array each on PostgreSQL), in device order.
    columns = {
        "ticket_number": [new_ticket_number() for _ in range(n)],
        "tracking_token": [new_tracking_token() for _ in range(n)],
        "title": [c.title for c in kept],
        "description": [c.description for c in kept],
        "account_id": [c.account_id for c in kept],
        "contact_id": [c.contact_id for c in kept],
        "product_id": [c.product_id for c in kept],
        "device_id": [c.device_id for c in kept],
        "error_code": [c.error_code for c in kept],
        "priority": [Priority.CRITICAL] * n,
        "origin": [Channel.IOT] * n,
        "status": [CaseStatus.ACTIVE] * n,
        "status_reason": ["in_progress"] * n,
        "entitlement_id": [decided[c.device_id].entitlement_id for c in kept],
        "fault_occurrences": [c.occurrences for c in kept],
        "fault_frequency": [c.frequency for c in kept],
        "first_fault_at": [c.first_fault_at for c in kept],
        "last_fault_at": [c.last_fault_at for c in kept],
        "created_at": [now] * n,
        "updated_at": [now] * n,
    }
    by_device = {c.device_id: c for c in cases}
    opened = {
        r.device_id: OpenedCase(
            r.id,
            r.ticket_number,
            r.tracking_token,
            r.device_id,
            by_device[r.device_id].contact_id,
            by_device[r.device_id].error_code,
        )
        for r in bulk_insert_columns(
            session,
            Case.__table__,
            columns,
            conflict_columns=["device_id"],
            conflict_where="status = 'active'",
            returning=["id", "device_id", "ticket_number", "tracking_token"],
        )
    }
    raced = find_open_cases(session=session, device_ids=by_device.keys() - opened.keys() - refused.keys())
    record_new_case_terms(
        session=session,
        opened=[(opened[d].id, Channel.IOT.value, decided[d]) for d in sorted(opened)],
        in_force=in_force,
        at=now,
    )
    record_status_changes(
        session=session,
        changes=[
            {
                "case_id": o.id,
                "from_status": None,
                "to_status": CaseStatus.ACTIVE,
                "status_reason": "in_progress",
                "note": f"Opened from critical fault {o.error_code} on {o.device_id}",
            }
            for o in opened.values()
        ],
        source=journey,
    )
    return opened, raced, refused


_PG_LOCK_CASES = text(
    """
    SELECT c.id FROM unnest(CAST(:ids AS integer[])) AS v(id)
    CROSS JOIN LATERAL (SELECT id FROM support_case WHERE id = v.id OFFSET 0 FOR NO KEY UPDATE) AS c
    """
)


def attach_faults_to_open_cases(
    *, session: Session, plans: list[DevicePlan], case_ids: dict[str, int]
) -> None:
    """Count repeat faults on the device's open case (occurrences, last seen, frequency); no new case."""
    params = []
    for p in plans:
        attached = p.attached
        if attached and p.device_id in case_ids:
            params.append(
                {
                    "b_id": case_ids[p.device_id],
                    "b_n": len(attached),
                    "b_last": max(d.fault.occurred_at for d in attached),
                    "b_freq": attached[-1].frequency,
                }
            )
    if not params:
        return
    params.sort(key=lambda p: p["b_id"])  # one lock order for every drain
    now = utcnow()
    if is_postgres(session):
        # Lock in id order first (concurrent drains then queue instead of deadlocking), then one
        # statement for the whole batch, the values travelling as arrays. NO KEY UPDATE is the lock the
        # UPDATE takes anyway: it keeps drains apart but lets another drain insert a fault referring to
        # the case (its foreign-key check takes KEY SHARE) without waiting for this one to commit.
        # The ids are sorted: one primary-key probe each, locked in the array's order (a nested loop over
        # unnest keeps it; `id = ANY(…) ORDER BY id` read the whole table when the planner misjudged it).
        session.execute(_PG_LOCK_CASES, {"ids": pg_array_literal(p["b_id"] for p in params)})
        session.execute(
            text(
                """
                UPDATE support_case AS c
                SET fault_occurrences = c.fault_occurrences + v.n,
                    last_fault_at = CASE WHEN c.last_fault_at IS NULL OR c.last_fault_at < v.last
                                         THEN v.last ELSE c.last_fault_at END,
                    fault_frequency = v.freq,
                    updated_at = :now
                FROM unnest(CAST(:ids AS integer[]), CAST(:ns AS integer[]),
                            CAST(:lasts AS timestamptz[]), CAST(:freqs AS integer[])) AS v(id, n, last, freq)
                WHERE c.id = v.id
                """
            ),
            {
                "now": now,
                "ids": pg_array_literal(p["b_id"] for p in params),
                "ns": pg_array_literal(p["b_n"] for p in params),
                "lasts": pg_array_literal(p["b_last"] for p in params),
                "freqs": pg_array_literal(p["b_freq"] for p in params),
            },
        )
        return
    t = Case.__table__
    last = bindparam("b_last", type_=t.c.last_fault_at.type)
    stmt = (
        update(t)
        .where(t.c.id == bindparam("b_id"))
        .values(
            fault_occurrences=t.c.fault_occurrences + bindparam("b_n"),
            last_fault_at=case(
                (t.c.last_fault_at.is_(None), last), (t.c.last_fault_at < last, last), else_=t.c.last_fault_at
            ),
            fault_frequency=bindparam("b_freq"),
            updated_at=now,
        )
    )
    session.connection().execute(stmt, params)


def record_status_changes(*, session: Session, changes: list[dict], source: str) -> None:
    """Append rows to the cases' status history."""
    if changes:
        now, n = utcnow(), len(changes)
        columns = {"source": [source] * n, "changed_at": [now] * n}
        for name in changes[0]:
            columns[name] = [c[name] for c in changes]
        bulk_insert_columns(session, CaseStatusChange.__table__, columns)
