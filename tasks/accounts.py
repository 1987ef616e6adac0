"""Which account a domain or an address belongs to, by the indexed account_domain table."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from carepath.rules.domains import email_domain, normalise_domain
from models import AccountDomain


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
