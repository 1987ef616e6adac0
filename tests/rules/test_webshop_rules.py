"""Web-shop order rules: the account's name, products split into known and set aside, support-plan terms."""

from __future__ import annotations

from datetime import date

import pytest

from carepath.rules.public_domains import is_public_domain
from carepath.rules.webshop import UNKNOWN_PRODUCT, account_name, add_months, plan_terms, split_products


@pytest.mark.parametrize(
    ("company", "first", "last", "expected"),
    [
        ("Helios Energy S.A.", "Eleni", "P", "Helios Energy S.A."),
        ("  Tejo Lda. ", "Ana", "Costa", "Tejo Lda."),
        (None, "Zoë", "Λάμπρου", "Zoë Λάμπρου"),
        ("   ", " Ana ", " Costa ", "Ana Costa"),
    ],
)
def test_account_name_is_the_company_else_the_buyer(company, first, last, expected) -> None:
    assert account_name(company=company, first_name=first, last_name=last) == expected


KNOWN = ["CP-HP-400", "CP-SMK-500"]


@pytest.mark.parametrize(
    ("codes", "quantities", "unknown"),
    [
        ([], {}, {}),
        (["CP-HP-400"], {"CP-HP-400": 1}, {}),
        (["CP-SMK-500", " cp-smk-500 ", "CP-HP-400"], {"CP-SMK-500": 2, "CP-HP-400": 1}, {}),
        (["CP-HP-400", "NOPE"], {"CP-HP-400": 1}, {"NOPE": UNKNOWN_PRODUCT}),
        (["NOPE", "NOPE"], {}, {"NOPE": UNKNOWN_PRODUCT}),
    ],
)
def test_products_split_into_known_quantities_and_set_aside_codes(codes, quantities, unknown) -> None:
    assert split_products(codes, KNOWN) == (quantities, unknown)


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2026, 3, 5), 12, date(2027, 3, 5)),
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2027, 12, 15), 24, date(2029, 12, 15)),
        (date(2028, 1, 31), 1, date(2028, 2, 29)),
    ],
)
def test_add_months(day, months, expected) -> None:
    assert add_months(day, months) == expected


PLAN = {"name": "Care", "cases": 6, "months": 24, "channels": ["phone", "web"]}


@pytest.mark.parametrize(
    ("plan", "quantity", "allocation", "ends_on"),
    [
        (PLAN, 1, 6, date(2028, 3, 4)),
        (PLAN, 2, 12, date(2028, 3, 4)),
        ({"cases": 1, "months": 1}, 1, 1, date(2026, 4, 4)),
    ],
)
def test_a_support_plan_grants_cases_per_unit_over_its_months(plan, quantity, allocation, ends_on) -> None:
    terms = plan_terms(plan, product_name="Pump", quantity=quantity, today=date(2026, 3, 5))
    assert (terms.allocation, terms.starts_on, terms.ends_on) == (allocation, date(2026, 3, 5), ends_on)
    assert terms.name == plan.get("name", "Pump support")


@pytest.mark.parametrize("plan", [None, {}])
def test_no_plan_no_terms(plan) -> None:
    assert plan_terms(plan, product_name="X", quantity=1, today=date(2026, 1, 1)) is None


@pytest.mark.parametrize(
    "plan",
    [{"cases": 0, "months": 12}, {"cases": 3, "months": 0}, {"cases": 3, "months": 1, "channels": ["fax"]}],
)
def test_a_malformed_plan_is_refused(plan) -> None:
    with pytest.raises(ValueError):
        plan_terms(plan, product_name="X", quantity=1, today=date(2026, 1, 1))


@pytest.mark.parametrize(
    ("domain", "public"),
    [
        ("gmail.com", True),
        (" GMail.COM ", True),
        ("otenet.gr", True),
        ("helios-energy.gr", False),
        ("", False),
    ],
)
def test_public_domains(domain, public) -> None:
    assert is_public_domain(domain) is public
