"""The registration (merge plugin) and sign-in rules, table-driven."""

from __future__ import annotations

import pytest

from carepath.rules.public_domains import load_public_domains
from carepath.rules.registration import (
    ExistingContact,
    FieldConflict,
    SignInLimits,
    decide_registration,
    is_public_domain,
    merge_fields,
    sign_in_reason,
)
from carepath.settings import get_settings

PUBLIC = frozenset({"gmail.com", "yahoo.co.uk", "otenet.gr"})
HAS_LOGIN = ExistingContact(7, True, 3)
NO_LOGIN = ExistingContact(8, False, 3)
NO_ACCOUNT = ExistingContact(9, False, None)


@pytest.mark.parametrize(
    ("existing", "domain", "known", "outcome", "contact", "account", "login", "support", "registrant"),
    [
        (HAS_LOGIN, "helios-energy.gr", 3, "already_registered", 7, 3, False, False, False),
        (HAS_LOGIN, "gmail.com", None, "already_registered", 7, 3, False, False, False),
        (NO_LOGIN, "helios-energy.gr", 3, "merged", 8, 3, True, False, False),
        (NO_LOGIN, "gmail.com", None, "merged", 8, 3, True, False, False),  # a known person, even at gmail
        (NO_ACCOUNT, "example.org", None, "merged", 9, None, True, False, False),
        (None, "gmail.com", None, "refused_public_domain", None, None, False, True, True),
        (None, "mail.yahoo.co.uk", None, "refused_public_domain", None, None, False, True, True),
        (None, "gmail.com", 5, "refused_public_domain", None, None, False, True, True),  # never linked
        (None, "helios-energy.gr", 3, "linked_to_account", None, 3, True, False, False),
        (None, "unknown.example", None, "review_unknown_domain", None, None, False, True, False),
    ],
)
def test_decide_registration(existing, domain, known, outcome, contact, account, login, support, registrant):
    d = decide_registration(existing, domain, PUBLIC, known)
    assert (d.outcome, d.contact_id, d.account_id) == (outcome, contact, account)
    assert (d.grants_login, d.notify_support, d.notify_registrant) == (login, support, registrant)
    assert d.creates_contact == (outcome != "already_registered")
    assert d.new_contact_active == (outcome == "linked_to_account")


@pytest.mark.parametrize(
    ("domain", "public"),
    [
        ("gmail.com", True),
        ("mail.yahoo.co.uk", True),
        ("yahoo.co", False),
        ("co.uk", False),
        ("otenet.gr", True),
    ],
)
def test_public_domains_include_subdomains(domain, public):
    assert is_public_domain(domain, PUBLIC) is public


@pytest.mark.parametrize(
    ("existing", "offered", "fill", "conflicts"),
    [
        (
            {"first_name": "Eleni", "phone": None},
            {"first_name": "Eleni", "phone": "+30691"},
            {"phone": "+30691"},
            [],
        ),
        ({"first_name": "Eleni"}, {"first_name": " ELENI "}, {}, []),  # same value, other case: no conflict
        (
            {"first_name": "Eleni", "last_name": "Papa"},
            {"first_name": "Helen", "last_name": ""},
            {},
            [FieldConflict("first_name", "Eleni", "Helen")],
        ),
        ({"language": ""}, {"language": "el"}, {"language": "el"}, []),
        ({"phone": "+1"}, {"phone": None}, {}, []),
    ],
)
def test_merge_fills_what_is_missing_and_logs_what_differs(existing, offered, fill, conflicts):
    assert merge_fields(existing, offered) == (fill, conflicts)


LIMITS = SignInLimits(per_email=5, per_address=20, window_minutes=15)


@pytest.mark.parametrize(
    ("registered", "password_ok", "email_failures", "address_failures", "reason"),
    [
        (True, True, 0, 0, None),
        (True, False, 0, 0, "wrong_password"),
        (False, False, 0, 0, "not_registered"),
        (True, True, 4, 19, None),
        (True, True, 5, 0, "rate_limited"),  # the right password too, once over
        (False, False, 0, 20, "rate_limited"),
        (True, False, 5, 0, "rate_limited"),
    ],
)
def test_sign_in_reason(registered, password_ok, email_failures, address_failures, reason):
    assert (
        sign_in_reason(
            registered=registered,
            password_ok=password_ok,
            email_failures=email_failures,
            address_failures=address_failures,
            limits=LIMITS,
        )
        == reason
    )


def test_the_maintained_public_domain_list_covers_the_customers_countries():
    domains = load_public_domains(get_settings().public_email_domains_file)
    assert len(domains) >= 300
    # the big ones, then GR, PL, PT, IT, GB, IE, US's own providers (data/people.json's countries)
    for d in (
        "gmail.com",
        "outlook.com",
        "yahoo.com",
        "icloud.com",
        "otenet.gr",
        "wp.pl",
        "onet.pl",
        "sapo.pt",
        "libero.it",
        "virgilio.it",
        "btinternet.com",
        "eircom.net",
        "comcast.net",
    ):
        assert d in domains
    assert all(d == d.strip().lower() and d.isascii() and "@" not in d for d in domains)
