"""Which account a domain or an address belongs to, by the indexed account_domain table."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from carepath.rules.domains import email_domain, normalise_domain
from models import AccountDomain, Contact


def account_for_domain(*, session: Session, domain: str) -> int | None:
    """The id of the account that lists this domain (compared normalised), or None."""
    try:
        d = normalise_domain(domain)
    except ValueError:
        return None
    return session.scalar(select(AccountDomain.account_id).where(AccountDomain.domain == d))


def account_for_email(*, session: Session, address: str) -> int | None:
    """The id of the account whose domain the address is at, or None."""
    try:
        return account_for_domain(session=session, domain=email_domain(address))
    except ValueError:
        return None


def account_known_by_domain(*, session: Session, domain: str) -> int | None:
    """The account a (normalised) domain belongs to: one that lists it, else the one account whose active
    contacts write from it (several: None, it is not known). Both are index lookups."""
    listed = account_for_domain(session=session, domain=domain)
    if listed is not None:
        return listed
    accounts = session.scalars(
        select(Contact.account_id)
        .where(Contact.email_domain == domain, Contact.account_id.is_not(None), Contact.active.is_(True))
        .group_by(Contact.account_id)
        .limit(2)
    ).all()
    return accounts[0] if len(accounts) == 1 else None
