"""Nightly entitlement reconciliation: what remains is recomputed from the cases holding terms (overall and per
channel), drift is corrected with a ledger row saying why, states follow the dates, and customers with open
cases but no entitlement in force are flagged.

Set-based and in bounded batches: the entitlements are split into id ranges of a fixed number of entitlements
(`entitlement_ranges`); each range is one transaction of a handful of statements (`reconcile_range`), so a
run's memory and lock time are those of one range whatever the table sizes, and ranges can run side by side
(threads, or Dask workers). The uncovered customers are read last, streamed (`uncovered_accounts`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple

from sqlalchemy import and_, bindparam, case, exists, func, select, text
from sqlalchemy.orm import Session

from carepath.bulk import bulk_insert, in_list, pg_array_literal
from carepath.db import is_postgres
from models import (
    Account,
    Case,
    CaseStatus,
    Entitlement,
    EntitlementChannel,
    EntitlementLedger,
    EntitlementState,
    EntitlementUse,
)
from models.base import utcnow
from tasks.entitlement_terms import _date_transitions, refresh_entitlement_states


@dataclass
class Drift:
    entitlement_id: int
    name: str
    channel: str | None  # None: the total
    stored: int
    expected: int
    held: int  # cases holding a term
    allocation: int


class EntitlementRange(NamedTuple):
    """The entitlements with ids in (after_id, last_id]: `count` of them when the run was planned."""

    after_id: int
    last_id: int
    count: int


@dataclass
class RangeResult:
    """One range reconciled: its figures and its drift rows (at most one per entitlement and channel)."""

    checked: int = 0
    activated: int = 0
    expired: int = 0
    drifts: list[Drift] = field(default_factory=list)


@dataclass
class ReconciliationSummary:
    """A run's figures, added up range by range (the drift rows themselves go to the report as they come)."""

    checked: int = 0
    corrected: int = 0
    activated: int = 0
    expired: int = 0
    flagged: int = 0

    def add(self, part: RangeResult) -> None:
        self.checked += part.checked
        self.corrected += len(part.drifts)
        self.activated += part.activated
        self.expired += part.expired

    def as_json(self) -> dict[str, int]:
        return {
            "checked": self.checked,
            "corrected": self.corrected,
            "activated": self.activated,
            "expired": self.expired,
            "flagged": self.flagged,
        }


def _expected(allocation, held):
    return case((allocation - held > 0, allocation - held), else_=0)


def entitlement_ranges(*, session: Session, chunk_size: int) -> list[EntitlementRange]:
    """Every entitlement, cut in id order into ranges of `chunk_size` entitlements (one indexed read each)."""
    e = Entitlement
    first = session.scalar(select(func.min(e.id)))
    if first is None:
        return []
    window = select(e.id).where(e.id > bindparam("after")).order_by(e.id).limit(chunk_size).subquery()
    next_range = select(func.max(window.c.id), func.count()).select_from(window)
    ranges, after = [], first - 1
    while True:
        last, n = session.execute(next_range, {"after": after}).one()
        if not n:
            return ranges
        ranges.append(EntitlementRange(after, last, n))
        after = last


def find_drift(*, session: Session, ids: tuple[int, int]) -> list[Drift]:
    """Entitlements with ids in (after, last] (and their channels with their own allocation) whose stored
    remaining differs from their allocation less the cases that hold a term now (never below zero)."""
    after, last = ids
    use = EntitlementUse
    held = (
        select(use.entitlement_id, func.count().label("n"))
        .where(use.returned_at.is_(None), use.entitlement_id > after, use.entitlement_id <= last)
        .group_by(use.entitlement_id)
        .subquery()
    )
    n = func.coalesce(held.c.n, 0)
    e = Entitlement
    totals = session.execute(
        select(e.id, e.name, e.remaining, _expected(e.allocation, n), n, e.allocation)
        .outerjoin(held, held.c.entitlement_id == e.id)
        .where(e.id > after, e.id <= last, e.remaining != _expected(e.allocation, n))
        .order_by(e.id)
    ).all()
    held_ch = (
        select(use.entitlement_id, use.channel, func.count().label("n"))
        .where(
            use.returned_at.is_(None),
            use.channel.is_not(None),
            use.entitlement_id > after,
            use.entitlement_id <= last,
        )
        .group_by(use.entitlement_id, use.channel)
        .subquery()
    )
    m = func.coalesce(held_ch.c.n, 0)
    ch = EntitlementChannel
    channels = session.execute(
        select(
            ch.entitlement_id, e.name, ch.channel, ch.remaining, _expected(ch.allocation, m), m, ch.allocation
        )
        .join(e, e.id == ch.entitlement_id)
        .outerjoin(
            held_ch, and_(held_ch.c.entitlement_id == ch.entitlement_id, held_ch.c.channel == ch.channel)
        )
        .where(
            ch.entitlement_id > after,
            ch.entitlement_id <= last,
            ch.remaining != _expected(ch.allocation, m),
        )
        .order_by(ch.entitlement_id, ch.channel)
    ).all()
    return [Drift(r[0], r[1], None, r[2], r[3], r[4], r[5]) for r in totals] + [Drift(*r) for r in channels]


def reconcile_range(
    *, session: Session, after_id: int, last_id: int, on: date, dry_run: bool = False
) -> RangeResult:
    """The entitlements with ids in (after_id, last_id]: states by date, drift found and (unless a dry run)
    corrected with a ledger row saying why."""
    ids = (after_id, last_id)
    e = Entitlement.__table__
    in_range = and_(e.c.id > after_id, e.c.id <= last_id)
    result = RangeResult(checked=session.scalar(select(func.count()).select_from(e).where(in_range)) or 0)
    if dry_run:
        for leaving, entering, when in _date_transitions(on):
            n = session.scalar(
                select(func.count()).select_from(e).where(e.c.state.in_(leaving), when, in_range)
            )
            result.activated += n if entering == EntitlementState.ACTIVE else 0
            result.expired += n if entering == EntitlementState.EXPIRED else 0
    else:
        for change, n in refresh_entitlement_states(session=session, on=on, ids=ids).items():
            result.activated += n if change.endswith(f"→{EntitlementState.ACTIVE}") else 0
            result.expired += n if change.endswith(f"→{EntitlementState.EXPIRED}") else 0
    result.drifts = find_drift(session=session, ids=ids)
    if not dry_run:
        result.drifts = correct_drift(session=session, drifts=result.drifts)
    return result


def correct_drift(*, session: Session, drifts: list[Drift]) -> list[Drift]:
    """Set each drifted remaining to its expected value where it still holds the value read (one that a case
    moved meanwhile is left to the next run), with a ledger row saying why. Returns the drifts corrected."""
    if not drifts:
        return []
    if is_postgres(session):
        # The entitlements first, in id order, as the case paths lock them: a use or return of a term on one of
        # them meanwhile waits for this range's commit instead of deadlocking with it.
        ids = sorted({d.entitlement_id for d in drifts})
        session.execute(
            select(Entitlement.id)
            .where(in_list(Entitlement.id, ids, session))
            .order_by(Entitlement.id)
            .with_for_update()
        )
    totals = [d for d in drifts if d.channel is None]
    channels = [d for d in drifts if d.channel is not None]
    done = _set_remaining(session, "entitlement", ["id"], totals)
    done |= _set_remaining(session, "entitlement_channel", ["entitlement_id", "channel"], channels)
    corrected = [d for d in drifts if _key(d) in done]
    # A channel's ledger row carries the entitlement's total as it stands after this range's corrections.
    totals_after = dict(
        session.execute(
            select(Entitlement.id, Entitlement.remaining).where(
                in_list(Entitlement.id, {d.entitlement_id for d in corrected if d.channel}, session)
            )
        ).all()
    )
    now = utcnow()
    bulk_insert(
        session,
        EntitlementLedger.__table__,
        [
            {
                "entitlement_id": d.entitlement_id,
                "case_id": None,
                "channel": None if d.channel is None else str(d.channel),
                "change": d.expected - d.stored,
                "remaining_after": d.expected if d.channel is None else totals_after[d.entitlement_id],
                "channel_remaining_after": None if d.channel is None else d.expected,
                "reason": (
                    f"reconciliation: stored {d.stored}, expected {d.expected} "
                    f"({d.held} case(s) hold terms of {d.allocation})"
                )[:200],
                "at": now,
            }
            for d in corrected
        ],
    )
    return corrected


def _key(d: Drift) -> tuple:
    return (d.entitlement_id,) if d.channel is None else (d.entitlement_id, str(d.channel))


def _set_remaining(session: Session, table: str, keys: list[str], drifts: list[Drift]) -> set[tuple]:
    """`remaining = expected` where it is still `stored`, for the rows these drifts name; the keys updated."""
    if not drifts:
        return set()
    if is_postgres(session):
        # One statement: the drifts travel as arrays (one parameter per column).
        cols = {"id": "integer", "entitlement_id": "integer", "channel": "text"}
        values = {
            "id": [d.entitlement_id for d in drifts],
            "entitlement_id": [d.entitlement_id for d in drifts],
            "channel": [str(d.channel) for d in drifts],
        }
        params = {k: pg_array_literal(values[k]) for k in keys}
        params["stored"] = pg_array_literal([d.stored for d in drifts])
        params["expected"] = pg_array_literal([d.expected for d in drifts])
        arrays = ", ".join(f"CAST(:{k} AS {cols[k]}[])" for k in keys)
        rows = session.execute(
            text(
                f"UPDATE {table} AS t SET remaining = v.expected"
                f" FROM unnest({arrays}, CAST(:stored AS integer[]), CAST(:expected AS integer[]))"
                f" AS v({', '.join(keys)}, stored, expected)"
                f" WHERE {' AND '.join(f't.{k} = v.{k}' for k in keys)} AND t.remaining = v.stored"
                f" RETURNING {', '.join(f't.{k}' for k in keys)}"
            ),
            params,
        ).all()
        return {tuple(r) for r in rows}
    # SQLite: its single writer holds the lock since the drift was read; a statement per row is in-process.
    stmt = text(
        f"UPDATE {table} SET remaining = :expected"
        f" WHERE {' AND '.join(f'{k} = :{k}' for k in keys)} AND remaining = :stored"
    )
    done = set()
    for d in drifts:
        key = _key(d)
        params = dict(zip(keys, key, strict=True)) | {"stored": d.stored, "expected": d.expected}
        if session.execute(stmt, params).rowcount:
            done.add(key)
    return done


def uncovered_accounts(*, session: Session, on: date) -> Iterator[str]:
    """Account numbers with open cases and no active entitlement in force on `on`, in order, streamed (a
    server-side cursor on PostgreSQL): however many there are, a thousand at a time are in memory."""
    if is_postgres(session):
        # A cursor is planned for its first rows (cursor_tuple_fraction 0.1: nested loops, 7× slower here);
        # this one is read to the end.
        session.execute(text("SET LOCAL cursor_tuple_fraction = 1.0"))
    e = Entitlement
    covered = exists().where(
        e.account_id == Case.account_id,
        e.state == EntitlementState.ACTIVE,
        e.starts_on <= on,
        e.ends_on >= on,
    )
    yield from session.scalars(
        select(Account.account_number)
        .join(Case, Case.account_id == Account.id)
        .where(Case.status == CaseStatus.ACTIVE, ~covered)
        .group_by(Account.account_number)
        .order_by(Account.account_number),
        execution_options={"yield_per": 1000},
    )
