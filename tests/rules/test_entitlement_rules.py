"""Entitlement rules: which one covers a new case, refusals, terms held, states by date, batch allocation."""

from datetime import date

import pytest

from carepath.rules.entitlements import (
    EntitlementTerms,
    NewCase,
    allocate_new_cases,
    choose_entitlement,
    decide_entitlement,
    holds_term,
    in_force,
    state_on,
)

ON = date(2026, 11, 25)


def terms(
    id: int, *, remaining: int = 5, channels=(), skus=(), ends=date(2026, 12, 31), starts=date(2026, 1, 1)
):
    return EntitlementTerms(id, starts, ends, remaining, tuple(channels), tuple(skus))


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        ([], None),
        ([terms(1)], 1),
        ([terms(1, remaining=0)], None),  # used up
        ([terms(1, channels=["email", "web"])], None),  # does not cover IoT
        ([terms(1, channels=["iot", "email"])], 1),
        ([terms(1, ends=date(2026, 11, 1))], None),  # expired
        ([terms(1, starts=date(2026, 12, 1))], None),  # not yet in force
        ([terms(1, ends=date(2027, 6, 30)), terms(2, ends=date(2026, 12, 31))], 2),  # ends soonest first
        ([terms(1), terms(2, skus=["THERMO-X"])], 2),  # product-specific first
        ([terms(1, skus=["OTHER"])], None),
    ],
)
def test_choose_entitlement(candidates: list[EntitlementTerms], expected: int | None) -> None:
    chosen = choose_entitlement(candidates, channel="iot", product_sku="THERMO-X", on=ON)
    assert (chosen.id if chosen else None) == expected


# --- the rest of Dynamics' entitlement rules ---------------------------------------------------------------


def full(id: int, **kw) -> EntitlementTerms:
    base = dict(
        id=id,
        starts_on=date(2026, 1, 1),
        ends_on=date(2026, 12, 31),
        remaining=5,
        channels=(),
        product_skus=(),
        name=f"E{id}",
        allocation=15,
    )
    return EntitlementTerms(**{**base, **kw})


@pytest.mark.parametrize(
    ("state", "starts", "ends", "expected"),
    [
        ("waiting", date(2026, 12, 1), date(2026, 12, 31), "waiting"),  # start still to come
        ("waiting", ON, date(2026, 12, 31), "active"),  # the start date itself
        ("active", date(2026, 1, 1), ON, "active"),  # the end date itself
        ("active", date(2026, 1, 1), date(2026, 11, 24), "expired"),  # the day after the end
        ("waiting", date(2026, 1, 1), date(2026, 11, 24), "expired"),  # never used, lapsed
        ("active", date(2026, 12, 1), date(2026, 12, 31), "waiting"),
        ("draft", date(2026, 1, 1), date(2026, 12, 31), "draft"),  # an operator's choice stays
        ("cancelled", date(2026, 1, 1), date(2026, 11, 1), "cancelled"),
    ],
)
def test_state_follows_the_dates(state, starts, ends, expected) -> None:
    assert state_on(state, starts, ends, ON) == expected


@pytest.mark.parametrize(
    ("state", "starts", "ends", "expected"),
    [
        ("active", date(2026, 1, 1), ON, True),
        ("waiting", ON, date(2026, 12, 31), True),  # start reached before the state refresh ran
        ("waiting", date(2026, 11, 26), date(2026, 12, 31), False),
        ("active", date(2026, 1, 1), date(2026, 11, 24), False),
        ("draft", date(2026, 1, 1), date(2026, 12, 31), False),
        ("cancelled", date(2026, 1, 1), date(2026, 12, 31), False),
        ("expired", date(2026, 1, 1), date(2026, 12, 31), False),
    ],
)
def test_only_entitlements_in_force_are_used(state, starts, ends, expected) -> None:
    assert in_force(state, starts, ends, ON) is expected


@pytest.mark.parametrize(
    ("candidates", "contact_id", "expected_id", "refusal"),
    [
        ([full(1, contact_id=7)], 7, 1, None),  # the contact it names
        ([full(1, contact_id=7)], 8, None, None),  # another contact of the account
        ([full(1, remaining=0)], 7, 1, None),  # spent, not restricting: opens on it (no term left)
        ([full(1, remaining=0, restrict_case_creation=True)], 7, None, "0 of 15 cases left"),
        ([full(1, remaining=0, restrict_case_creation=True), full(2)], 7, 2, None),  # another has terms
        (
            [full(1, remaining=4, restrict_case_creation=True, channel_terms={"iot": (0, 3)})],
            7,
            None,
            "0 of 3 cases left on the iot channel (4 of 15 overall)",
        ),
        ([full(1, channel_terms={"email": (0, 3)})], 7, 1, None),  # another channel's allocation
        ([full(1, product_skus=("OTHER",), restrict_case_creation=True, remaining=0)], 7, None, None),
    ],
)
def test_decide_entitlement(candidates, contact_id, expected_id, refusal) -> None:
    d = decide_entitlement(candidates, channel="iot", product_sku="THERMO-X", contact_id=contact_id, on=ON)
    assert (d.entitlement.id if d.entitlement else None) == expected_id
    if refusal is None:
        assert d.refusal is None
    else:
        assert refusal in d.refusal and "«E1»" in d.refusal and "iot channel" in d.refusal


@pytest.mark.parametrize(
    ("decrease_on", "status", "dnd", "expected"),
    [
        ("case_resolution", "active", False, False),
        ("case_resolution", "resolved", False, True),
        ("case_resolution", "cancelled", False, False),
        ("case_creation", "active", False, True),
        ("case_creation", "resolved", False, True),
        ("case_creation", "cancelled", False, False),
        ("case_creation", "active", True, False),
        ("case_resolution", "resolved", True, False),
    ],
)
def test_when_a_case_holds_a_term(decrease_on, status, dnd, expected) -> None:
    assert holds_term(decrease_on=decrease_on, status=status, do_not_decrement=dnd) is expected


def new(key: str, *candidates: int) -> NewCase:
    return NewCase(key, "iot", None, 7, candidates)


@pytest.mark.parametrize(
    ("terms", "expected"),
    [
        # On creation, two terms left, three cases: the third finds none (restriction off).
        (
            {1: full(1, remaining=2, decrease_on="case_creation")},
            {"a": (1, True, False, None), "b": (1, True, False, None), "c": (1, False, True, None)},
        ),
        # The same with restriction on: the third is refused.
        (
            {1: full(1, remaining=2, decrease_on="case_creation", restrict_case_creation=True)},
            {"a": (1, True, False, None), "b": (1, True, False, None), "c": (None, False, False, "0 of 15")},
        ),
        # The IoT channel's own allocation runs out while the total remains.
        (
            {1: full(1, remaining=9, decrease_on="case_creation", channel_terms={"iot": (1, 1)})},
            {"a": (1, True, False, None), "b": (1, False, True, None), "c": (1, False, True, None)},
        ),
        # On resolution: creation uses nothing.
        (
            {1: full(1, remaining=1)},
            {"a": (1, False, False, None), "b": (1, False, False, None), "c": (1, False, False, None)},
        ),
    ],
)
def test_a_batch_never_hands_out_more_terms_than_are_left(terms, expected) -> None:
    out = allocate_new_cases([new("a", 1), new("b", 1), new("c", 1)], terms, on=ON)
    got = {k: (v.entitlement_id, v.takes_term, v.no_term_left, v.refusal) for k, v in out.items()}
    for key, (ent, takes, none_left, refusal) in expected.items():
        assert got[key][:3] == (ent, takes, none_left), key
        assert (got[key][3] is None) if refusal is None else (refusal in got[key][3])
