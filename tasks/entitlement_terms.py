"""Entitlement terms: load the ones in force, decide new cases (set-based for a batch), use and give back
terms, follow the dates with the states, and write a ledger row for every change of the remaining terms.

The functions take the session and never commit: the caller's transaction holds the case, the term and
its ledger row together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, delete, literal, or_, select, true, update
from sqlalchemy.orm import Session

from carepath.bulk import bulk_insert, in_list
from carepath.db import dialect_insert
from carepath.rules.entitlements import (
    ACTIVE,
    EXPIRED,
    WAITING,
    EntitlementTerms,
    NewCase,
    NewCaseTerms,
    allocate_new_cases,
    holds_term,
)
from models import (
    Case,
    CaseStatus,
    DecreaseRemainingOn,
    Entitlement,
    EntitlementChannel,
    EntitlementLedger,
    EntitlementState,
    EntitlementUse,
)
from models.base import utcnow

NO_TERM_LEFT = "no term left"


@dataclass(frozen=True)
class TermsInForce:
    """The entitlements in force for some accounts and contacts, and which belongs to whom."""

    terms: dict[int, EntitlementTerms]
    by_account: dict[int, list[int]]
    by_contact: dict[int, list[int]]

    def candidates(self, account_id: int | None, contact_id: int | None) -> tuple[int, ...]:
        ids = self.by_account.get(account_id, []) + self.by_contact.get(contact_id, [])
        return tuple(dict.fromkeys(ids))


def load_terms_in_force(
    *, session: Session, account_ids: Iterable[int], contact_ids: Iterable[int], on: date
) -> TermsInForce:
    """Entitlements usable on `on` (waiting or active, the day within their period) of these accounts or
    contacts, with their channels' own allocations. Those that decrease on creation are read again under a
    row lock (in id order), so concurrent creators count the same terms one after the other."""
    account_ids, contact_ids = set(account_ids) - {None}, set(contact_ids) - {None}
    found = TermsInForce({}, {}, {})
    if not account_ids and not contact_ids:
        return found
    e = Entitlement
    rows = session.execute(
        select(
            e.id,
            e.name,
            e.account_id,
            e.contact_id,
            e.starts_on,
            e.ends_on,
            e.allocation,
            e.remaining,
            e.channels,
            e.product_ids,
            e.restrict_case_creation,
            e.decrease_remaining_on,
        ).where(
            e.state.in_([EntitlementState.WAITING, EntitlementState.ACTIVE]),
            e.starts_on <= on,
            e.ends_on >= on,
            or_(in_list(e.account_id, account_ids, session), in_list(e.contact_id, contact_ids, session)),
        )
    ).all()
    if not rows:
        return found
    ids = [r.id for r in rows]
    locked = sorted(r.id for r in rows if r.decrease_remaining_on is DecreaseRemainingOn.CASE_CREATION)
    fresh = {}
    if locked:
        fresh = dict(
            session.execute(
                select(e.id, e.remaining)
                .where(in_list(e.id, locked, session))
                .order_by(e.id)
                .with_for_update()
            ).all()
        )
    ch = EntitlementChannel
    own: dict[int, dict[str, tuple[int, int]]] = {}
    channel_rows = select(ch.entitlement_id, ch.channel, ch.remaining, ch.allocation).where(
        in_list(ch.entitlement_id, ids, session)
    )
    if locked:
        channel_rows = channel_rows.order_by(ch.entitlement_id, ch.channel).with_for_update()
    for ent_id, channel, remaining, allocation in session.execute(channel_rows):
        own.setdefault(ent_id, {})[channel.value] = (remaining, allocation)
    for r in rows:
        found.terms[r.id] = EntitlementTerms(
            r.id,
            r.starts_on,
            r.ends_on,
            fresh.get(r.id, r.remaining),
            tuple(r.channels or ()),
            tuple(r.product_ids or ()),
            name=r.name,
            allocation=r.allocation,
            contact_id=r.contact_id,
            restrict_case_creation=r.restrict_case_creation,
            decrease_on=r.decrease_remaining_on.value,
            channel_terms=own.get(r.id, {}),
        )
        if r.account_id is not None:
            found.by_account.setdefault(r.account_id, []).append(r.id)
        if r.contact_id is not None:
            found.by_contact.setdefault(r.contact_id, []).append(r.id)
    return found


def decide_new_cases(
    *, session: Session, cases: Sequence[tuple[str, str, str | None, int | None, int | None]], on: date
) -> tuple[TermsInForce, dict[str, NewCaseTerms]]:
    """(key, channel, product SKU, account id, contact id) of each new case, in the order they are opened →
    what each gets (see `allocate_new_cases`)."""
    in_force = load_terms_in_force(
        session=session, account_ids={c[3] for c in cases}, contact_ids={c[4] for c in cases}, on=on
    )
    new = [
        NewCase(k, ch, sku, contact, in_force.candidates(acc, contact)) for k, ch, sku, acc, contact in cases
    ]
    return in_force, allocate_new_cases(new, in_force.terms, on=on)


def record_new_case_terms(
    *,
    session: Session,
    opened: Sequence[tuple[int, str, NewCaseTerms]],
    in_force: TermsInForce,
    at: datetime,
) -> None:
    """For the cases opened (case id, channel, decision), in the order decided: the terms they use on
    creation, set-based — one use row and one ledger row each, one update per entitlement and channel —
    and a "no term left" ledger row for those that found none."""
    left = {i: (t.remaining, dict(t.channel_terms)) for i, t in in_force.terms.items()}
    uses, ledger = [], []
    totals: Counter[int] = Counter()
    channels: Counter[tuple[int, str]] = Counter()
    for case_id, channel, d in opened:
        if d.entitlement_id is None or not (d.takes_term or d.no_term_left):
            continue
        remaining, own = left[d.entitlement_id]
        own_left = own[channel][0] if d.own_channel else None
        if d.takes_term:
            remaining -= 1
            totals[d.entitlement_id] += 1
            if d.own_channel:
                own_left -= 1
                own[channel] = (own_left, own[channel][1])
                channels[(d.entitlement_id, channel)] += 1
            left[d.entitlement_id] = (remaining, own)
            uses.append(
                {
                    "entitlement_id": d.entitlement_id,
                    "case_id": case_id,
                    "used_at": at,
                    "channel": channel if d.own_channel else None,
                }
            )
        ledger.append(
            {
                "entitlement_id": d.entitlement_id,
                "case_id": case_id,
                "channel": channel if d.own_channel else None,
                "change": -1 if d.takes_term else 0,
                "remaining_after": remaining,
                "channel_remaining_after": own_left,
                "reason": "case created" if d.takes_term else f"{NO_TERM_LEFT}: case created",
                "at": at,
            }
        )
    bulk_insert(session, EntitlementUse.__table__, uses)
    t, ch = Entitlement.__table__, EntitlementChannel.__table__
    for ent_id, n in sorted(totals.items()):  # entitlements already locked, in id order
        session.execute(update(t).where(t.c.id == ent_id).values(remaining=t.c.remaining - n))
    for (ent_id, channel), n in sorted(channels.items()):
        session.execute(
            update(ch)
            .where(ch.c.entitlement_id == ent_id, ch.c.channel == channel)
            .values(remaining=ch.c.remaining - n)
        )
    bulk_insert(session, EntitlementLedger.__table__, ledger)


def _ledger(
    session: Session,
    *,
    entitlement_id: int,
    case_id: int | None,
    change: int,
    reason: str,
    channel: str | None = None,
    channel_remaining_after: int | None = None,
    remaining_after: int | None = None,
) -> None:
    if remaining_after is None:
        remaining_after = session.scalar(
            select(Entitlement.remaining).where(Entitlement.id == entitlement_id)
        )
    session.add(
        EntitlementLedger(
            entitlement_id=entitlement_id,
            case_id=case_id,
            channel=channel,
            change=change,
            remaining_after=remaining_after,
            channel_remaining_after=channel_remaining_after,
            reason=reason,
            at=utcnow(),
        )
    )


def use_entitlement(
    *, session: Session, case: Case, change_id: int | None = None, reason: str = "case resolved"
) -> bool:
    """Take one term of the case's entitlement (and of its channel's own allocation), at most once while
    the case holds it. True when a term was taken.

    The use row comes first: its partial unique index (one open use per case) makes a repeated or raced
    call insert nothing, so `remaining` moves once. With none left the case keeps going without one: the
    ledger says so, and nothing goes below zero."""
    if case.entitlement_id is None:
        return False
    use = EntitlementUse.__table__
    inserted = session.execute(
        dialect_insert(session, use)
        .values(
            entitlement_id=case.entitlement_id, case_id=case.id, used_at=utcnow(), status_change_id=change_id
        )
        .on_conflict_do_nothing(index_elements=["case_id"], index_where=use.c.returned_at.is_(None))
        .returning(use.c.id)
    ).scalar()
    if inserted is None:
        return False
    t, ch = Entitlement.__table__, EntitlementChannel.__table__
    channel = case.origin.value
    own = session.scalar(
        select(ch.c.id).where(ch.c.entitlement_id == case.entitlement_id, ch.c.channel == channel)
    )
    total = session.execute(
        update(t)
        .where(t.c.id == case.entitlement_id, t.c.remaining > 0)
        .values(remaining=t.c.remaining - 1)
        .returning(t.c.remaining)
    ).scalar()
    own_left = None
    if total is not None and own is not None:
        own_left = session.execute(
            update(ch)
            .where(ch.c.id == own, ch.c.remaining > 0)
            .values(remaining=ch.c.remaining - 1)
            .returning(ch.c.remaining)
        ).scalar()
        if own_left is None:  # the channel's own allocation is spent: the total gives its term back
            total = None
            session.execute(
                update(t).where(t.c.id == case.entitlement_id).values(remaining=t.c.remaining + 1)
            )
    if total is None:
        session.execute(delete(use).where(use.c.id == inserted))
        _ledger(
            session,
            entitlement_id=case.entitlement_id,
            case_id=case.id,
            change=0,
            reason=f"{NO_TERM_LEFT}: {reason}",
            channel=channel if own is not None else None,
            channel_remaining_after=session.scalar(select(ch.c.remaining).where(ch.c.id == own))
            if own
            else None,
        )
        return False
    if own is not None:
        session.execute(update(use).where(use.c.id == inserted).values(channel=channel))
    _ledger(
        session,
        entitlement_id=case.entitlement_id,
        case_id=case.id,
        change=-1,
        reason=reason,
        channel=channel if own is not None else None,
        channel_remaining_after=own_left,
        remaining_after=total,
    )
    return True


def return_entitlement(*, session: Session, case_id: int, reason: str = "case reopened") -> bool:
    """Give back the term a case holds (to the total and to the channel it came from). True when one was."""
    use = EntitlementUse.__table__
    held = session.execute(
        update(use)
        .where(use.c.case_id == case_id, use.c.returned_at.is_(None))
        .values(returned_at=utcnow())
        .returning(use.c.entitlement_id, use.c.channel)
    ).first()
    if held is None:
        return False
    entitlement_id, channel = held
    t, ch = Entitlement.__table__, EntitlementChannel.__table__
    total = session.execute(
        update(t)
        .where(t.c.id == entitlement_id, t.c.remaining < t.c.allocation)
        .values(remaining=t.c.remaining + 1)
        .returning(t.c.remaining)
    ).scalar()
    own_left = None
    if channel is not None:
        own_left = session.execute(
            update(ch)
            .where(
                ch.c.entitlement_id == entitlement_id,
                ch.c.channel == channel,
                ch.c.remaining < ch.c.allocation,
            )
            .values(remaining=ch.c.remaining + 1)
            .returning(ch.c.remaining)
        ).scalar()
    _ledger(
        session,
        entitlement_id=entitlement_id,
        case_id=case_id,
        change=1 if total is not None else 0,  # never above the allocation (it was lowered meanwhile)
        reason=reason,
        channel=channel,
        channel_remaining_after=own_left,
        remaining_after=total,
    )
    return True


_STATUS_REASONS = {
    (CaseStatus.ACTIVE, CaseStatus.RESOLVED): "case resolved",
    (CaseStatus.CANCELLED, CaseStatus.RESOLVED): "case resolved",
    (CaseStatus.ACTIVE, CaseStatus.CANCELLED): "case cancelled",
    (CaseStatus.RESOLVED, CaseStatus.CANCELLED): "case cancelled",
    (CaseStatus.RESOLVED, CaseStatus.ACTIVE): "case reopened",
    (CaseStatus.CANCELLED, CaseStatus.ACTIVE): "case reactivated",
}


def follow_status_change(
    *, session: Session, case: Case, from_status: CaseStatus, to_status: CaseStatus, change_id: int | None
) -> None:
    """Use or give back the case's term as its entitlement says: a case holds one from creation until it
    is cancelled, or while it is resolved ("decrease remaining on"); never with "do not decrement"."""
    if case.entitlement_id is None:
        return
    decrease_on = session.scalar(
        select(Entitlement.decrease_remaining_on).where(Entitlement.id == case.entitlement_id)
    ).value
    dnd = case.entitlement_do_not_decrement
    before = holds_term(decrease_on=decrease_on, status=from_status.value, do_not_decrement=dnd)
    after = holds_term(decrease_on=decrease_on, status=to_status.value, do_not_decrement=dnd)
    reason = _STATUS_REASONS.get((from_status, to_status), f"case {to_status.value}")
    if after and not before:
        use_entitlement(session=session, case=case, change_id=change_id, reason=reason)
    elif before and not after:
        return_entitlement(session=session, case_id=case.id, reason=reason)


def set_do_not_decrement(*, session: Session, case: Case, do_not_decrement: bool) -> bool:
    """Set a case's "do not decrement": a term it holds is given back; cleared, the case takes the term its
    status calls for. False when it was already so."""
    session.refresh(case, with_for_update=True)
    if case.entitlement_do_not_decrement == do_not_decrement:
        return False
    case.entitlement_do_not_decrement = do_not_decrement
    if do_not_decrement:
        return_entitlement(session=session, case_id=case.id, reason="do not decrement set")
    elif case.entitlement_id is not None:
        decrease_on = session.scalar(
            select(Entitlement.decrease_remaining_on).where(Entitlement.id == case.entitlement_id)
        ).value
        if holds_term(decrease_on=decrease_on, status=case.status.value, do_not_decrement=False):
            use_entitlement(session=session, case=case, reason="do not decrement cleared")
    return True


# (states it leaves, state it enters, the condition on the dates) — the set-based form of `state_on`.
def _date_transitions(on: date):
    e = Entitlement.__table__
    return [
        ((WAITING, ACTIVE), EXPIRED, e.c.ends_on < on),
        ((WAITING,), ACTIVE, and_(e.c.starts_on <= on, e.c.ends_on >= on)),
        ((ACTIVE,), WAITING, e.c.starts_on > on),
    ]


def refresh_entitlement_states(
    *, session: Session, on: date, ids: tuple[int, int] | None = None
) -> dict[str, int]:
    """Move entitlements to the state their dates call for (waiting → active on the start date, active →
    expired after the end date), set-based, with a ledger row for each. Returns how many moved, by change.
    `ids` (after, last): only the entitlements with ids in that range (a reconciliation chunk)."""
    e, ledger = Entitlement.__table__, EntitlementLedger.__table__
    now, moved = utcnow(), {}
    in_range = true() if ids is None else and_(e.c.id > ids[0], e.c.id <= ids[1])
    for leaving, entering, when in _date_transitions(on):
        for state in leaving:
            which = and_(e.c.state == state, when, in_range)
            session.execute(
                ledger.insert().from_select(
                    ["entitlement_id", "change", "remaining_after", "reason", "at"],
                    select(
                        e.c.id,
                        literal(0),
                        e.c.remaining,
                        literal(f"state {state} → {entering}"),
                        literal(now, ledger.c.at.type),
                    ).where(which),
                )
            )
            n = session.execute(update(e).where(which).values(state=entering)).rowcount
            if n:
                moved[f"{state}→{entering}"] = n
    return moved


def set_allocation(
    *, session: Session, entitlement_id: int, allocation: int, channel: str | None = None
) -> int:
    """Change the allocation of an entitlement (or give a channel its own, or change it): what remains moves
    by the same amount, never below zero, and the ledger says so. Returns the remaining after."""
    if allocation < 0:
        raise ValueError(f"an allocation is zero or more, not {allocation}")
    ent = session.get(Entitlement, entitlement_id, with_for_update=True, populate_existing=True)
    if channel is None:
        old, before = ent.allocation, ent.remaining
        ent.allocation, ent.remaining = allocation, max(0, ent.remaining + allocation - old)
        session.flush()
        _ledger(
            session,
            entitlement_id=ent.id,
            case_id=None,
            change=ent.remaining - before,
            reason=f"allocation changed {old} → {allocation}",
            remaining_after=ent.remaining,
        )
        return ent.remaining
    row = session.scalars(
        select(EntitlementChannel)
        .where(EntitlementChannel.entitlement_id == ent.id, EntitlementChannel.channel == channel)
        .with_for_update()
    ).one_or_none()
    if row is None:
        row = EntitlementChannel(entitlement_id=ent.id, channel=channel, allocation=0, remaining=0)
        session.add(row)
        old, start = 0, allocation
    else:
        old, start = row.allocation, max(0, row.remaining + allocation - row.allocation)
    row.allocation, row.remaining = allocation, start
    session.flush()
    _ledger(
        session,
        entitlement_id=ent.id,
        case_id=None,
        change=0,  # the total is unchanged: the channel's own allocation is a share of it
        reason=f"{channel} allocation changed {old} → {allocation}",
        channel=channel,
        channel_remaining_after=row.remaining,
        remaining_after=ent.remaining,
    )
    return row.remaining


def held_terms_by_channel(*, session: Session, entitlement_id: int) -> dict[str, int]:
    """How many terms the entitlement's cases hold now, by the cases' channel."""
    rows = session.execute(
        select(Case.origin)
        .join(EntitlementUse, EntitlementUse.case_id == Case.id)
        .where(EntitlementUse.entitlement_id == entitlement_id, EntitlementUse.returned_at.is_(None))
    ).scalars()
    return dict(Counter(o.value for o in rows))
