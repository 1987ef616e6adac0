"""A likely duplicate in the demo: one customer recorded twice (by phone, without the dot in their address), so
`carepath duplicates` and the `find-duplicate-contacts` flow have a pair to show."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from data.customers import STORY, account_number
from models import Account, Contact


def seed_likely_duplicate(session: Session) -> Contact | None:
    """A second record of the first person of the first generated account: same name, account and phone, the
    address without its dot (maria.rossi@ → mariarossi@), no portal login. Flushes, never commits."""
    original = session.scalars(
        select(Contact)
        .join(Account, Account.id == Contact.account_id)
        .where(Account.account_number == account_number(len(STORY) + 1))
        .order_by(Contact.id)
        .limit(1)
    ).first()
    if original is None or not original.email:
        return None
    local, _, domain = original.email.partition("@")
    twin = Contact(
        first_name=original.first_name,
        last_name=original.last_name,
        email=f"{local.replace('.', '')}@{domain}",
        phone=original.phone,
        language=original.language,
        time_zone=original.time_zone,
        account_id=original.account_id,
        created_at=original.created_at + timedelta(days=30),  # typed in by an agent after a phone call
    )
    session.add(twin)
    session.flush()
    return twin
