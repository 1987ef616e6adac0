"""Cases: find a device's open case, open cases in bulk, attach repeat faults, record status changes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import bindparam, case, or_, select, text, update
from sqlalchemy.orm import Session

from carepath.bulk import bulk_insert, in_list, pg_array_literal
from carepath.db import is_postgres
from carepath.rules.entitlements import EntitlementTerms, choose_entitlement
from carepath.rules.faults import DevicePlan, case_title
from carepath.rules.tickets import new_ticket_number, new_tracking_token
from models import Case, CaseStatus, CaseStatusChange, Channel, Entitlement, EntitlementState, Priority
from models.base import utcnow
from tasks.device_cases import DeviceOwner, OpenedCase


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


def find_open_cases(*, session: Session, device_ids: Iterable[str]) -> dict[str, int]:
    """The open case of each device that has one (at most one each: a partial unique index says so)."""
    device_ids = list(device_ids)
    if not device_ids:
        return {}
    stmt = select(Case.device_id, Case.id).where(
        Case.status == CaseStatus.ACTIVE, in_list(Case.device_id, device_ids, session)
    )
    return {k: v for k, v in session.connection().execute(stmt).tuples()}


def load_entitlement_terms(
    *, session: Session, account_ids: set[int], contact_ids: set[int], on: date
) -> tuple[dict[int, list[EntitlementTerms]], dict[int, list[EntitlementTerms]]]:
    """Active entitlements in force on `on`, by account and by contact."""
    by_account: dict[int, list[EntitlementTerms]] = {}
    by_contact: dict[int, list[EntitlementTerms]] = {}
    if not account_ids and not contact_ids:
        return by_account, by_contact
    e = Entitlement
    stmt = select(
        e.id, e.account_id, e.contact_id, e.starts_on, e.ends_on, e.remaining, e.channels, e.product_ids
    ).where(
        e.state == EntitlementState.ACTIVE,
        e.starts_on <= on,
        e.ends_on >= on,
        or_(in_list(e.account_id, account_ids, session), in_list(e.contact_id, contact_ids, session)),
    )
    rows = session.connection().execute(stmt).tuples()
    for id_, account_id, contact_id, starts_on, ends_on, remaining, channels, products in rows:
        terms = EntitlementTerms(id_, starts_on, ends_on, remaining, tuple(channels), tuple(products))
        if account_id is not None:
            by_account.setdefault(account_id, []).append(terms)
        if contact_id is not None:
            by_contact.setdefault(contact_id, []).append(terms)
    return by_account, by_contact


def open_iot_cases(
    *, session: Session, cases: list[NewIotCase], journey: str
) -> tuple[dict[str, OpenedCase], dict[str, int]]:
    """Insert critical-priority IoT cases with their first status-history row.

    Returns the cases opened, by device, and the devices whose open case another worker created first
    (their faults attach to that case instead: the partial unique index makes the race harmless).
    """
    if not cases:
        return {}, {}
    now = utcnow()
    today = now.date()
    by_account, by_contact = load_entitlement_terms(
        session=session,
        account_ids={c.account_id for c in cases if c.account_id is not None},
        contact_ids={c.contact_id for c in cases},
        on=today,
    )
    rows = []
    # Insert in device order: concurrent drains then wait on each other instead of deadlocking.
    for c in sorted(cases, key=lambda c: c.device_id):
        candidates = by_account.get(c.account_id, []) + by_contact.get(c.contact_id, [])
        chosen = choose_entitlement(
            candidates, channel=Channel.IOT.value, product_sku=c.product_sku, on=today
        )
        rows.append(
            {
                "ticket_number": new_ticket_number(),
                "tracking_token": new_tracking_token(),
                "title": c.title,
                "description": c.description,
                "account_id": c.account_id,
                "contact_id": c.contact_id,
                "product_id": c.product_id,
                "device_id": c.device_id,
                "error_code": c.error_code,
                "priority": Priority.CRITICAL,
                "origin": Channel.IOT,
                "status": CaseStatus.ACTIVE,
                "status_reason": "in_progress",
                "entitlement_id": chosen.id if chosen else None,
                "fault_occurrences": c.occurrences,
                "fault_frequency": c.frequency,
                "first_fault_at": c.first_fault_at,
                "last_fault_at": c.last_fault_at,
                "created_at": now,
                "updated_at": now,
            }
        )
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
        for r in bulk_insert(
            session,
            Case.__table__,
            rows,
            conflict_columns=["device_id"],
            conflict_where="status = 'active'",
            returning=["id", "device_id", "ticket_number", "tracking_token"],
        )
    }
    raced = find_open_cases(session=session, device_ids=by_device.keys() - opened.keys())
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
    return opened, raced


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
        # statement for the whole batch, the values travelling as arrays.
        session.execute(
            text(
                "SELECT id FROM support_case WHERE id = ANY(CAST(:ids AS integer[])) ORDER BY id FOR UPDATE"
            ),
            {"ids": pg_array_literal(p["b_id"] for p in params)},
        )
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
        now = utcnow()
        bulk_insert(
            session, CaseStatusChange.__table__, [{"source": source, "changed_at": now, **c} for c in changes]
        )
