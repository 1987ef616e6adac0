"""Entitlements as an operator sees them: terms remaining, overall and per channel, and the ledger that explains
every change of the remaining terms."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Account, Case, Entitlement, EntitlementUse


class UnknownAccount(Exception):
    """No account has that number."""


def entitlement_report(*, session: Session, account_number: str) -> dict:
    """The account's entitlements with their remaining terms and ledger (oldest change first)."""
    account = session.scalars(select(Account).where(Account.account_number == account_number)).one_or_none()
    if account is None:
        raise UnknownAccount(f"no account {account_number}")
    report = []
    for ent in session.scalars(
        select(Entitlement).where(Entitlement.account_id == account.id).order_by(Entitlement.id)
    ):
        uses = session.execute(
            select(EntitlementUse.used_at, EntitlementUse.returned_at, Case.ticket_number, Case.origin)
            .join(Case, Case.id == EntitlementUse.case_id)
            .where(EntitlementUse.entitlement_id == ent.id)
            .order_by(EntitlementUse.id)
        ).all()
        ledger = []
        for u in uses:
            ledger.append(
                {
                    "at": u.used_at.isoformat(),
                    "change": -1,
                    "reason": "case resolved",
                    "case": u.ticket_number,
                }
            )
            if u.returned_at is not None:
                ledger.append(
                    {
                        "at": u.returned_at.isoformat(),
                        "change": +1,
                        "reason": "case reopened or cancelled",
                        "case": u.ticket_number,
                    }
                )
        ledger.sort(key=lambda row: row["at"])
        channels = list(ent.channels or []) or ["every channel"]
        held = [u for u in uses if u.returned_at is None]
        report.append(
            {
                "name": ent.name,
                "state": ent.state.value,
                "starts_on": ent.starts_on.isoformat(),
                "ends_on": ent.ends_on.isoformat(),
                "allocation": ent.allocation,
                "remaining": ent.remaining,
                # One pool shared by the entitlement's channels: each channel can use what remains.
                "per_channel": {
                    c: {"remaining": ent.remaining, "used": sum(u.origin.value == c for u in held)}
                    for c in channels
                },
                "restrict_case_creation": ent.restrict_case_creation,
                "ledger": ledger,
            }
        )
    return {"account": account.account_number, "name": account.name, "entitlements": report}
