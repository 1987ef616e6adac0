"""A domain's account, found through the indexed account_domain table."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from models import AccountDomain
from tasks.accounts import account_for_domain, account_for_email
from tests.utils.factories import make_account


def test_domains_are_stored_normalised_and_found_however_written(session) -> None:
    helios = make_account(session, domain=" Helios-Energy.GR ")
    greek = make_account(session, domain="Ελλάδα.gr")
    session.commit()

    assert helios.email_domains == ["helios-energy.gr"]
    assert account_for_email(session=session, address=" Mixed.Case@HELIOS-energy.gr ") == helios.id
    assert account_for_email(session=session, address="eleni@xn--hxakic4aa.gr") == greek.id
    assert account_for_domain(session=session, domain="ΕΛΛΆΔΑ.GR") == greek.id
    assert account_for_email(session=session, address="someone@gmail.com") is None
    assert account_for_email(session=session, address="not an address") is None
    session.commit()


def test_a_domain_belongs_to_one_account_at_most(session) -> None:
    make_account(session, domain="shared.example")
    other = make_account(session)
    session.commit()
    session.add(AccountDomain(account_id=other.id, domain="shared.example"))
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()
