"""The IoT fault drain: one batch of pending faults → recorded faults, cases and queued SMS, set-based.

Every statement works on the whole batch (a handful of queries per batch, not per fault), so a batch of
thousands of faults costs little more than a batch of ten. The caller owns the transaction: the inbox
rows stay locked until it commits, so a crash leaves them pending and nothing is half-done.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import and_, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from carepath.bulk import bulk_insert, in_list, pg_array_literal
from carepath.db import is_postgres, unit_of_work
from carepath.rules.faults import DevicePlan, Fault, FaultAction, FaultRules, is_critical, plan_device
from carepath.settings import Settings, get_settings
from models import Consent, Contact, Device, DeviceFault, MessageChannel, Product
from models.base import utcnow
from tasks.cases import NewIotCase, attach_faults_to_open_cases, find_open_cases, open_iot_cases
from tasks.device_cases import DeviceOwner
from tasks.fault_claims import claim_faults
from tasks.fault_gate import GateSummary, gate_claimed_faults, gate_horizon
from tasks.inbox import mark_failed
from tasks.messaging import queue_fault_sms
from tasks.routing import route_and_assign
from tasks.sla import start_kpis_for_cases

JOURNEY = "iot_fault_journey"


@dataclass
class DrainSummary:
    claimed: int = 0
    processed: int = 0
    failed: int = 0
    critical: int = 0
    cases_opened: int = 0
    faults_attached: int = 0
    sms_queued: int = 0
    sms_blocked: int = 0
    errors: dict[int, str] = field(default_factory=dict)
    gate: GateSummary = field(default_factory=GateSummary)  # the inbox_faults data-quality gate

    def add(self, other: DrainSummary) -> None:
        for name in (
            "claimed",
            "processed",
            "failed",
            "critical",
            "cases_opened",
            "faults_attached",
            "sms_queued",
            "sms_blocked",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.update(other.errors)
        self.gate.add(other.gate)


def load_known_devices(*, session: Session, device_ids: set[str]) -> set[str]:
    """Which of these device ids are registered (an index-only look-up)."""
    if not device_ids:
        return set()
    return set(
        session.scalars(select(Device.device_id).where(in_list(Device.device_id, device_ids, session)))
    )


# PostgreSQL: one index look-up per device id, whatever the statistics say. (A device id list of thousands
# against `= ANY(…)` let the planner hash-join whole tables, or scan a fault log it had analysed empty.)
# OFFSET 0 keeps each LATERAL subquery a nested loop instead of being merged into one join.
_PG_OWNERS = """
    SELECT o.* FROM unnest(CAST(%(ids)s AS varchar[])) AS v(device_id)
    CROSS JOIN LATERAL (
        SELECT d.device_id, c.id, c.account_id, c.first_name, c.phone, c.phone_checked, c.phone_valid,
               c.language, s.status, p.id, p.name, p.sku
        FROM device d
        JOIN contact c ON c.id = d.owner_contact_id
        LEFT JOIN product p ON p.id = d.product_id
        LEFT JOIN consent s ON s.contact_id = c.id AND s.channel = 'sms'
        WHERE d.device_id = v.device_id
        OFFSET 0
    ) AS o
    """  # a psycopg2 statement: parameters as %(name)s
_PG_RECENT_FAULT_TIMES = text(
    """
    SELECT v.device_id, f.occurred_at FROM unnest(CAST(:ids AS varchar[])) AS v(device_id)
    CROSS JOIN LATERAL (
        SELECT occurred_at FROM device_fault
        WHERE device_id = v.device_id AND occurred_at >= :since AND occurred_at <= :until
        OFFSET 0
    ) AS f
    """
).columns(
    device_id=DeviceFault.__table__.c.device_id.type, occurred_at=DeviceFault.__table__.c.occurred_at.type
)


def load_device_owners(*, session: Session, device_ids: set[str]) -> dict[str, DeviceOwner]:
    """Each device's owner, contact details, SMS consent and product, in one query."""
    if not device_ids:
        return {}
    if is_postgres(session):
        with session.connection().connection.cursor() as cursor:  # plain driver tuples
            cursor.execute(_PG_OWNERS, {"ids": pg_array_literal(device_ids)})
            rows = cursor.fetchall()
        return {row[0]: _owner(row, row[8]) for row in rows}
    stmt = (
        select(
            Device.device_id,
            Contact.id,
            Contact.account_id,
            Contact.first_name,
            Contact.phone,
            Contact.phone_checked,
            Contact.phone_valid,
            Contact.language,
            Consent.status,
            Product.id,
            Product.name,
            Product.sku,
        )
        .join(Contact, Contact.id == Device.owner_contact_id)
        .outerjoin(Product, Product.id == Device.product_id)
        .outerjoin(Consent, and_(Consent.contact_id == Contact.id, Consent.channel == MessageChannel.SMS))
        .where(in_list(Device.device_id, device_ids, session))
    )
    return {
        row[0]: _owner(row, row[8].value if row[8] else None)
        for row in session.connection().execute(stmt).tuples()
    }


def _owner(row, sms_consent: str | None) -> DeviceOwner:
    """(device id, contact id, account id, first name, phone, phone checked, phone valid, language,
    consent, product id, name, SKU) → the owner; a phone check counts only for the number it checked."""
    return DeviceOwner(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[6] if row[5] == row[4] else None,
        row[7] or "en",
        sms_consent,
        row[9],
        row[10],
        row[11],
    )


def load_recent_fault_times(
    *, session: Session, device_ids: set[str], since: datetime, until: datetime
) -> dict[str, list[datetime]]:
    """Times of faults already recorded for these devices within [since, until]."""
    times: dict[str, list[datetime]] = defaultdict(list)
    if device_ids and is_postgres(session):
        rows = session.connection().execute(
            _PG_RECENT_FAULT_TIMES, {"ids": pg_array_literal(device_ids), "since": since, "until": until}
        )
        for device_id, at in rows.tuples():
            times[device_id].append(at)
    elif device_ids:
        stmt = select(DeviceFault.device_id, DeviceFault.occurred_at).where(
            in_list(DeviceFault.device_id, device_ids, session),
            DeviceFault.occurred_at >= since,
            DeviceFault.occurred_at <= until,
        )
        for device_id, at in session.connection().execute(stmt).tuples():
            times[device_id].append(at)
    return times


# Faults copied from their inbox payload server-side: only ids (and flags, case ids) travel.
_PAYLOAD_FAULT = """
    INSERT INTO device_fault (inbox_event_id, device_id, error_code, occurred_at, message, critical, case_id,
                              recorded_at)
    SELECT e.id, e.payload->>'device_id', (e.payload->>'error_code')::integer,
           (e.payload->>'occurred_at')::timestamptz, e.payload->>'message', {critical}, {case_id}, :now
    """
_COPY_FAULTS = text(
    _PAYLOAD_FAULT.format(critical="v.critical", case_id="v.case_id")
    + """
    FROM unnest(CAST(:ids AS integer[]), CAST(:critical AS boolean[]), CAST(:case_ids AS integer[]))
         AS v(id, critical, case_id)
    JOIN inbox_event e ON e.id = v.id
    """
)
# Routine faults: a plain list of ids, which the planner looks up one by one by primary key.
_COPY_ROUTINE_FAULTS = text(
    _PAYLOAD_FAULT.format(critical="false", case_id="NULL")
    + "FROM inbox_event e WHERE e.id = ANY(CAST(:ids AS integer[]))"
)


def record_routine_faults(*, session: Session, inbox_ids: list[int]) -> None:
    """Copy routine faults (canonical, non-critical, of registered devices) from the inbox as they are."""
    if inbox_ids:
        session.execute(_COPY_ROUTINE_FAULTS, {"now": utcnow(), "ids": pg_array_literal(inbox_ids)})


def record_faults(
    *,
    session: Session,
    plans: list[DevicePlan],
    case_ids: dict[str, int],
    routine: list[Fault] = (),
    canonical: set[int] = frozenset(),
) -> None:
    """Keep every fault, critical or not, linked to the case it attached to.

    `plans` are the devices that reported a critical fault; `routine` are the faults of devices that did
    not (recorded as they are, on no case). On PostgreSQL, faults whose inbox payload is canonical are
    copied from the inbox server-side (only ids, flags and case ids travel); the others are inserted from
    their validated values.
    """
    now = utcnow()
    # (fault, critical, case id) for every fault of the batch.
    entries = [(f, False, None) for f in routine]
    for plan in plans:
        case_id = case_ids.get(plan.device_id)
        entries.extend(
            (d.fault, d.critical, case_id if d.action is not FaultAction.RECORD else None)
            for d in plan.decisions
        )
    if canonical and is_postgres(session):
        copied = [e for e in entries if e[0].ref in canonical]
        if copied:
            session.execute(
                _COPY_FAULTS,
                {
                    "now": now,
                    "ids": pg_array_literal(f.ref for f, _, _ in copied),
                    "critical": pg_array_literal(critical for _, critical, _ in copied),
                    "case_ids": pg_array_literal(case_id for _, _, case_id in copied),
                },
            )
        entries = [e for e in entries if e[0].ref not in canonical]
    rows = [
        {
            "inbox_event_id": f.ref,
            "device_id": f.device_id,
            "error_code": f.error_code,
            "occurred_at": f.occurred_at,
            "message": f.message,
            "critical": critical,
            "case_id": case_id,
            "recorded_at": now,
        }
        for f, critical, case_id in entries
    ]
    if rows:
        bulk_insert(session, DeviceFault.__table__, rows)


def drain_fault_batch(
    *, session: Session, rules: FaultRules, limit: int, tracking_url, sms_status_callback: str | None
) -> DrainSummary:
    """Claim up to `limit` faults → keep the critical ones → open or reuse cases → queue the SMS → mark done."""
    not_after = gate_horizon()
    claim = claim_faults(session=session, limit=limit, threshold=rules.threshold, not_after=not_after)
    gate = gate_claimed_faults(session=session, claim=claim, threshold=rules.threshold, not_after=not_after)
    faults, errors = claim.faults, claim.errors
    summary = DrainSummary(claimed=claim.count, gate=gate)
    if not claim.count:
        return summary
    # Routine faults first: they lock nothing another drain waits for, so they are done before this batch
    # opens cases and attaches faults (from then on a drain on the same devices waits for this commit).
    record_routine_faults(session=session, inbox_ids=claim.routine)
    registered = claim.registered | load_known_devices(
        session=session,
        device_ids={f.device_id for f in faults if f.ref not in claim.canonical} - claim.registered,
    )
    known: dict[str, list[Fault]] = defaultdict(list)
    for f in faults:
        if f.device_id in registered:
            known[f.device_id].append(f)
        else:
            errors[f.ref] = (
                f"unknown device {f.device_id!r}: no such device is registered (replay once it is)"
            )

    # Only devices that reported a critical fault need a plan; the rest are recorded as they are.
    threshold = rules.threshold
    critical_devices = {
        f.device_id for fs in known.values() for f in fs if is_critical(f.error_code, threshold)
    }
    routine = [f for d, fs in known.items() if d not in critical_devices for f in fs]
    batch_times = [f.occurred_at for d in critical_devices for f in known[d]]
    earlier = (
        load_recent_fault_times(
            session=session,
            device_ids=critical_devices,
            since=min(batch_times) - rules.window,
            until=max(batch_times),
        )
        if batch_times
        else {}
    )
    open_cases = find_open_cases(session=session, device_ids=critical_devices)
    plans = [
        plan_device(
            d, known[d], earlier_fault_times=earlier.get(d, ()), has_open_case=d in open_cases, rules=rules
        )
        for d in sorted(critical_devices)
    ]

    # Faults on no case or on a case already open are recorded now, before this batch opens cases: from
    # then on a drain opening a case for one of the same devices waits for this batch to commit.
    to_open = [p for p in plans if p.opens_case]
    record_faults(
        session=session,
        plans=[p for p in plans if not p.opens_case],
        case_ids=open_cases,
        routine=routine,
        canonical=claim.canonical,
    )
    owners = load_device_owners(session=session, device_ids={p.device_id for p in to_open})
    opened, raced, refused = open_iot_cases(
        session=session,
        cases=[NewIotCase.from_plan(p, owners[p.device_id]) for p in to_open],
        journey=JOURNEY,
    )
    if refused:  # a spent entitlement restricts case creation: the faults wait in the inbox, reason given
        for p in plans:
            if p.device_id in refused:
                errors.update(
                    (d.fault.ref, f"no case opened: {refused[p.device_id]} (replay once terms are added)")
                    for d in p.decisions
                )
        plans = [p for p in plans if p.device_id not in refused]
    start_kpis_for_cases(session=session, case_ids=[c.id for c in opened.values()])
    open_cases.update(raced)  # another worker opened these first: attach instead
    attached = [p for p in plans if p.attached and p.device_id not in opened]
    attach_faults_to_open_cases(session=session, plans=attached, case_ids=open_cases)
    case_ids = {**open_cases, **{d: c.id for d, c in opened.items()}}
    record_faults(
        session=session,
        plans=[p for p in plans if p.opens_case],  # on the case opened now (or the one a drain raced to)
        case_ids=case_ids,
        canonical=claim.canonical,
    )

    queued, blocked = queue_fault_sms(
        session=session,
        cases=list(opened.values()),
        owners=owners,
        tracking_url=tracking_url,
        status_callback=sms_status_callback,
    )
    # Last: routing locks every active agent's row (assignment counts their loads), and holds the locks
    # until this batch commits; a concurrent drain waits for them.
    route_and_assign(session=session, case_ids=[c.id for c in opened.values()])
    mark_failed(session=session, errors=errors)

    summary.failed, summary.errors = len(errors), errors
    summary.processed = summary.claimed - summary.failed
    summary.critical = sum(d.critical for p in plans for d in p.decisions)
    summary.cases_opened = len(opened)
    summary.faults_attached = sum(len(p.attached) for p in plans)
    summary.sms_queued, summary.sms_blocked = queued, blocked
    return summary


def drain_one_batch(*, rules: FaultRules, batch_size: int, settings: Settings) -> DrainSummary:
    """One batch in its own transaction, redone whole when it lost a race it can safely retry.

    Retried: a ticket-number collision (random numbers, rare) and a deadlock or serialization failure
    between concurrent drains. The batch rolled back whole, so nothing is half-done or doubled.
    """
    for attempt in range(1, 6):
        try:
            with unit_of_work() as session:
                return drain_fault_batch(
                    session=session,
                    rules=rules,
                    limit=batch_size,
                    tracking_url=settings.tracking_url,
                    sms_status_callback=settings.sms_status_callback_url,
                )
        except (IntegrityError, OperationalError) as exc:
            if attempt == 5 or not _retryable(exc):
                raise
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def _retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return "ticket_number" in str(exc.orig)
    code = getattr(exc.orig, "pgcode", None)
    return code in ("40P01", "40001")  # deadlock detected, serialization failure


@task(name="drain-fault-batch", cache_policy=NO_CACHE)
def drain_faults(batch_size: int, rules: FaultRules) -> DrainSummary:
    """Turn one batch of pending faults into cases and queued SMS, in one transaction."""
    return drain_one_batch(rules=rules, batch_size=batch_size, settings=get_settings())
