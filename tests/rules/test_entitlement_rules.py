"""Which entitlement covers a new case."""

from datetime import date

import pytest

from carepath.rules.entitlements import EntitlementTerms, choose_entitlement

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
