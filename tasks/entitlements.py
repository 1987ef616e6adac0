"""Entitlements as an operator sees them: terms remaining, overall and per channel, and the ledger that explains
every change of the remaining terms."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Account, Case, Entitlement, EntitlementChannel, EntitlementLedger
from tasks.entitlement_terms import held_terms_by_channel


class UnknownAccount(Exception):
    """No account has that number."""


def entitlement_report(*, session: Session, account_number: str) -> dict:
    """The account's entitlements with their remaining terms, overall and per channel, and the ledger that
    explains every change (oldest first, each with its reason and the case's ticket)."""
    account = session.scalars(select(Account).where(Account.account_number == account_number)).one_or_none()
    if account is None:
        raise UnknownAccount(f"no account {account_number}")
    report = []
    for ent in session.scalars(
        select(Entitlement).where(Entitlement.account_id == account.id).order_by(Entitlement.id)
    ):
        led = EntitlementLedger
        ledger = [
            {
                "at": r.at.isoformat(),
                "change": r.change,
                "remaining_after": r.remaining_after,
                "reason": r.reason,
                "case": r.ticket_number,
                "channel": r.channel,
                "channel_remaining_after": r.channel_remaining_after,
            }
            for r in session.execute(
                select(
                    led.at,
                    led.change,
                    led.remaining_after,
                    led.reason,
                    led.channel,
                    led.channel_remaining_after,
                    Case.ticket_number,
                )
                .outerjoin(Case, Case.id == led.case_id)
                .where(led.entitlement_id == ent.id)
                .order_by(led.id)
            )
        ]
        own = {
            c.channel.value: c
            for c in session.scalars(
                select(EntitlementChannel).where(EntitlementChannel.entitlement_id == ent.id)
            )
        }
        held = held_terms_by_channel(session=session, entitlement_id=ent.id)
        channels = list(dict.fromkeys([*(ent.channels or []), *own])) or ["every channel"]
        held["every channel"] = sum(held.values())
        report.append(
            {
                "id": ent.id,
                "name": ent.name,
                "state": ent.state.value,
                "starts_on": ent.starts_on.isoformat(),
                "ends_on": ent.ends_on.isoformat(),
                "allocation": ent.allocation,
                "remaining": ent.remaining,
                "decrease_remaining_on": ent.decrease_remaining_on.value,
                # A channel with its own allocation counts it down (and the total); the others share the total.
                "per_channel": {
                    c: (
                        {
                            "remaining": own[c].remaining,
                            "used": held.get(c, 0),
                            "allocation": own[c].allocation,
                        }
                        if c in own
                        else {"remaining": ent.remaining, "used": held.get(c, 0)}
                    )
                    for c in channels
                },
                "restrict_case_creation": ent.restrict_case_creation,
                "ledger": ledger,
            }
        )
    return {"account": account.account_number, "name": account.name, "entitlements": report}
