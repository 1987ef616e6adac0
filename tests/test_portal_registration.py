"""Portal registration (the merge plugin) against a real database: every branch, resends, the webhook, the
flow's emails counted at the provider stub, and two registrations racing for one email."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from carepath import db
from carepath.schemas import PortalRegistrationIn
from carepath.settings import get_settings
from flows.portal_registration import portal_registration
from models import Case, Contact, ContactMergeConflict, InboxEvent, Message, PortalRegistration
from tasks.registration import register, submit_registration
from tests.utils.factories import make_account, make_case
from tests.utils.flows import completed
from tests.utils.signing import PORTAL_SECRET, carepath_headers


def registration(email: str, first: str = "Nikos", last: str = "Georgiou", **extra) -> PortalRegistrationIn:
    return PortalRegistrationIn(
        event_id=extra.pop("event_id", str(uuid.uuid4())),
        email=email,
        first_name=first,
        last_name=last,
        **extra,
    )


def decide(session, reg: PortalRegistrationIn):
    result = submit_registration(session=session, registration=reg, settings=get_settings())
    session.commit()
    return result


def contacts(session) -> int:
    return session.scalar(select(func.count()).select_from(Contact))


def person(session, account, email: str, *, login: bool = False, **fields) -> Contact:
    c = Contact(
        first_name=fields.pop("first_name", "Eleni"),
        last_name=fields.pop("last_name", "Papadopoulou"),
        email=email,
        account_id=account.id if account else None,
        portal_login=email.strip().lower() if login else None,
        **fields,
    )
    session.add(c)
    session.commit()
    return c


def test_an_email_that_already_signs_in_is_refused_and_nothing_is_created(session):
    acct = make_account(session, domain="helios-energy.gr")
    eleni = person(session, acct, "eleni@helios-energy.gr", login=True)
    before = contacts(session)

    result = decide(session, registration("Eleni@Helios-Energy.GR"))

    assert result.as_json() == {
        "outcome": "already_registered",
        "contact_id": eleni.id,
        "account": acct.account_number,
    }
    assert result.message == "this email is already registered: sign in or reset your password"
    assert contacts(session) == before


def test_a_known_contact_without_a_login_gains_it_and_keeps_its_id_account_cases_and_values(session):
    acct = make_account(session, domain="helios-energy.gr")
    case = make_case(session)
    eleni = person(session, acct, "mixed.case@helios-energy.gr", phone=None, language="")
    case.contact_id = eleni.id
    session.commit()

    result = decide(
        session,
        registration(
            " Mixed.Case@Helios-Energy.GR ",
            first="Helen",
            last="Papadopoulou",
            phone="+306912345678",
            language="el",
        ),
    )

    assert result.as_json() == {"outcome": "merged", "contact_id": eleni.id, "account": acct.account_number}
    session.expire_all()
    kept = session.get(Contact, eleni.id)
    assert (kept.portal_login, kept.account_id, kept.active) == ("mixed.case@helios-energy.gr", acct.id, True)
    assert (kept.first_name, kept.phone, kept.language) == (
        "Eleni",
        "+306912345678",
        "el",
    )  # kept, filled, filled
    assert session.get(Case, case.id).contact_id == eleni.id
    [conflict] = session.scalars(select(ContactMergeConflict)).all()
    assert (conflict.contact_id, conflict.field, conflict.kept_value, conflict.offered_value) == (
        eleni.id,
        "first_name",
        "Eleni",
        "Helen",
    )
    record = session.scalars(select(PortalRegistration)).one()
    temporary = session.get(Contact, record.temporary_contact_id)
    assert (temporary.active, temporary.merged_into_id, temporary.portal_login) == (False, eleni.id, None)
    assert temporary.merged_at is not None


def test_a_new_person_at_an_accounts_domain_is_linked_with_portal_access(session):
    acct = make_account(session, domain="helios-energy.gr")

    result = decide(session, registration("nikos@HELIOS-energy.gr"))

    assert (result.outcome, result.account) == ("linked_to_account", acct.account_number)
    new = session.get(Contact, result.contact_id)
    assert (new.account_id, new.active, new.portal_login, new.email_domain) == (
        acct.id,
        True,
        "nikos@helios-energy.gr",
        "helios-energy.gr",
    )


def test_an_account_is_also_known_by_its_contacts_email_domains(session):
    acct = make_account(session, domain="tejo-clima.pt")
    person(session, acct, "ana@tejo.example")  # the account does not list tejo.example

    result = decide(session, registration("rui@tejo.example"))

    assert (result.outcome, result.account) == ("linked_to_account", acct.account_number)


def test_an_internationalised_domain_is_the_same_as_its_punycode(session):
    acct = make_account(session, domain="ελλάδα.gr")
    assert acct.email_domains == ["xn--hxakic4aa.gr"]

    result = decide(session, registration("Maria@ΕΛΛΆΔΑ.gr"))

    assert (result.outcome, result.account) == ("linked_to_account", acct.account_number)
    assert session.get(Contact, result.contact_id).portal_login == "maria@xn--hxakic4aa.gr"
    again = decide(session, registration("maria@xn--hxakic4aa.gr"))
    assert (again.outcome, again.contact_id) == ("already_registered", result.contact_id)


@pytest.mark.parametrize(
    ("email", "outcome", "mails"),
    [
        ("someone@gmail.com", "refused_public_domain", 2),
        ("someone@unknown-co.example", "review_unknown_domain", 1),
    ],
)
def test_refused_and_unknown_registrations_are_deactivated_and_told_once(
    session, providers, email, outcome, mails
):
    reg = registration(email)
    decide(session, reg)
    decide(session, reg)  # the portal resends: answered the same, nothing new

    completed(portal_registration)
    completed(portal_registration)

    record = session.scalars(select(PortalRegistration)).one()
    assert record.outcome == outcome
    made = session.get(Contact, record.contact_id)
    assert (made.active, made.portal_login, made.account_id) == (False, None, None)
    sent = providers.sendgrid_mails()
    assert len(sent) == mails
    to = sorted(m.json["personalizations"][0]["to"][0]["email"] for m in sent)
    expected = sorted(["support@carepath.example"] + ([email] if mails == 2 else []))
    assert to == expected


def test_the_signed_webhook_is_the_same_as_the_command(session, providers, receiver):
    acct = make_account(session, domain="helios-energy.gr")
    session.commit()
    body = json.dumps(
        {
            "event_id": "portal-1",
            "email": " New.Person@Helios-Energy.GR ",
            "first_name": "New",
            "last_name": "Person",
        }
    ).encode()
    for _ in range(2):
        answer = receiver.post(
            "/webhooks/portal/registrations", content=body, headers=carepath_headers(PORTAL_SECRET, body)
        )
        assert answer.status_code == 202
    assert receiver.post("/webhooks/portal/registrations", content=body).status_code == 401
    bad = json.dumps(
        {"event_id": "portal-2", "email": "not-an-email", "first_name": "A", "last_name": "B"}
    ).encode()
    assert (
        receiver.post(
            "/webhooks/portal/registrations", content=bad, headers=carepath_headers(PORTAL_SECRET, bad)
        ).status_code
        == 422
    )

    figures = completed(portal_registration)

    assert figures["linked_to_account"] == 1
    session.expire_all()
    record = session.scalars(select(PortalRegistration)).one()
    assert (record.outcome, record.account_id, record.email) == (
        "linked_to_account",
        acct.id,
        "new.person@helios-energy.gr",
    )
    assert session.scalar(select(func.count()).select_from(InboxEvent)) == 1


def test_two_logins_for_one_email_are_refused_by_the_database(session):
    acct = make_account(session)
    person(session, acct, "a@x.example", login=True)
    session.add(Contact(first_name="B", last_name="B", email="A@x.example", portal_login="A@X.example"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


@pytest.mark.parametrize("existing", [False, True], ids=["new-contact", "merge"])
def test_two_registrations_racing_for_one_email_make_one_login(session, existing):
    acct = make_account(session, domain="racing.example")
    if existing:
        person(session, acct, "racer@racing.example")
    session.commit()
    make = db.get_sessionmaker()
    first_decided, outcomes, errors = threading.Event(), {}, []

    def second() -> None:
        try:
            with make() as s, s.begin():  # decides while the first has not committed yet
                first_decided.wait(10)
                outcomes["second"] = register(
                    session=s, registration=registration("RACER@racing.example"), settings=get_settings()
                ).outcome
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with make() as s, s.begin():
        outcomes["first"] = register(
            session=s, registration=registration("racer@racing.example"), settings=get_settings()
        ).outcome
        t = threading.Thread(target=second)
        t.start()
        first_decided.set()
        t.join(1.0)  # the second blocks on the first's row or login (or, on SQLite, on its write lock)
    t.join(20)
    assert not errors, errors
    assert outcomes == {
        "first": "merged" if existing else "linked_to_account",
        "second": "already_registered",
    }
    logins = session.scalar(
        select(func.count())
        .select_from(Contact)
        .where(func.lower(Contact.portal_login) == "racer@racing.example")
    )
    assert logins == 1
    assert session.scalar(select(func.count()).select_from(Message)) == 0
