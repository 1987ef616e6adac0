"""Nightly entitlement reconciliation: what remains is recomputed from the cases holding terms (overall and per
channel), drift is corrected with a ledger row saying why, states follow the dates, and customers with open
cases but no entitlement in force are flagged. Set-based: a handful of statements whatever the table sizes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import and_, case, exists, func, select, update
from sqlalchemy.orm import Session

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


@dataclass
class ReconciliationSummary:
    checked: int = 0
    corrected: int = 0
    activated: int = 0
    expired: int = 0
    flagged: int = 0
    drifts: list[Drift] = field(default_factory=list)
    flagged_accounts: list[str] = field(default_factory=list)

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


def find_drift(*, session: Session) -> list[Drift]:
    """Entitlements (and channels with their own allocation) whose stored remaining differs from their
    allocation less the cases that hold a term now (never below zero)."""
    use = EntitlementUse
    held = (
        select(use.entitlement_id, func.count().label("n"))
        .where(use.returned_at.is_(None))
        .group_by(use.entitlement_id)
        .subquery()
    )
    n = func.coalesce(held.c.n, 0)
    e = Entitlement
    totals = session.execute(
        select(e.id, e.name, e.remaining, _expected(e.allocation, n), n, e.allocation)
        .outerjoin(held, held.c.entitlement_id == e.id)
        .where(e.remaining != _expected(e.allocation, n))
        .order_by(e.id)
    ).all()
    held_ch = (
        select(use.entitlement_id, use.channel, func.count().label("n"))
        .where(use.returned_at.is_(None), use.channel.is_not(None))
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
        .where(ch.remaining != _expected(ch.allocation, m))
        .order_by(ch.entitlement_id, ch.channel)
    ).all()
    return [Drift(r[0], r[1], None, r[2], r[3], r[4], r[5]) for r in totals] + [Drift(*r) for r in channels]


def reconcile_entitlements(*, session: Session, on: date, dry_run: bool = False) -> ReconciliationSummary:
    """One reconciliation: states by date, drift corrected (ledgered), uncovered customers flagged."""
    summary = ReconciliationSummary(
        checked=session.scalar(select(func.count()).select_from(Entitlement)) or 0
    )
    e = Entitlement.__table__
    if dry_run:
        for leaving, entering, when in _date_transitions(on):
            n = session.scalar(select(func.count()).where(e.c.state.in_(leaving), when)) or 0
            summary.activated += n if entering == EntitlementState.ACTIVE else 0
            summary.expired += n if entering == EntitlementState.EXPIRED else 0
    else:
        for change, n in refresh_entitlement_states(session=session, on=on).items():
            summary.activated += n if change.endswith(f"→{EntitlementState.ACTIVE}") else 0
            summary.expired += n if change.endswith(f"→{EntitlementState.EXPIRED}") else 0
    summary.drifts = find_drift(session=session)
    summary.corrected = len(summary.drifts)
    if not dry_run:
        _correct(session=session, drifts=summary.drifts)
    summary.flagged_accounts = uncovered_accounts(session=session, on=on)
    summary.flagged = len(summary.flagged_accounts)
    return summary


def _correct(*, session: Session, drifts: list[Drift]) -> None:
    now = utcnow()
    for d in drifts:
        why = (
            f"reconciliation: stored {d.stored}, expected {d.expected} "
            f"({d.held} case(s) hold terms of {d.allocation})"
        )
        if d.channel is None:
            session.execute(
                update(Entitlement).where(Entitlement.id == d.entitlement_id).values(remaining=d.expected)
            )
            total = d.expected
            channel_after = None
        else:
            session.execute(
                update(EntitlementChannel)
                .where(
                    EntitlementChannel.entitlement_id == d.entitlement_id,
                    EntitlementChannel.channel == d.channel,
                )
                .values(remaining=d.expected)
            )
            total = session.scalar(select(Entitlement.remaining).where(Entitlement.id == d.entitlement_id))
            channel_after = d.expected
        session.add(
            EntitlementLedger(
                entitlement_id=d.entitlement_id,
                channel=d.channel,
                change=d.expected - d.stored,
                remaining_after=total,
                channel_remaining_after=channel_after,
                reason=why[:200],
                at=now,
            )
        )
    session.flush()


def uncovered_accounts(*, session: Session, on: date) -> list[str]:
    """Account numbers with open cases and no active entitlement in force on `on`."""
    e = Entitlement
    covered = exists().where(
        e.account_id == Case.account_id,
        e.state == EntitlementState.ACTIVE,
        e.starts_on <= on,
        e.ends_on >= on,
    )
    return list(
        session.scalars(
            select(Account.account_number)
            .join(Case, Case.account_id == Account.id)
            .where(Case.status == CaseStatus.ACTIVE, ~covered)
            .group_by(Account.account_number)
            .order_by(Account.account_number)
        )
    )
