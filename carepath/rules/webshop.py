"""Web-shop orders: what an order asks for, in plain rules (no session, no Prefect)."""

from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

UNKNOWN_PRODUCT = "unknown product code"
CHANNELS = frozenset({"phone", "email", "web", "facebook", "twitter", "iot"})


def account_name(*, company: str | None, first_name: str, last_name: str) -> str:
    """The name of the account an order creates: the company, or the buyer when they bought for themselves."""
    if company and company.strip():
        return company.strip()
    return f"{first_name.strip()} {last_name.strip()}".strip() or "Web-shop customer"


def split_products(codes: Iterable[str], known: Iterable[str]) -> tuple[dict[str, int], dict[str, str]]:
    """The order's codes → (known code → quantity, in order; unknown code → why it was set aside).
    A code listed twice was bought twice; codes are compared trimmed and case-insensitively."""
    by_upper = {k.upper(): k for k in known}
    quantities: Counter[str] = Counter()
    unknown: dict[str, str] = {}
    for code in codes:
        c = code.strip()
        if c.upper() in by_upper:
            quantities[by_upper[c.upper()]] += 1
        else:
            unknown[c or repr(code)] = UNKNOWN_PRODUCT
    return dict(quantities), unknown


@dataclass(frozen=True)
class PlanTerms:
    """The entitlement a support plan grants for one purchase."""

    name: str
    allocation: int
    starts_on: date
    ends_on: date
    channels: list[str]


def add_months(day: date, months: int) -> date:
    """The same day `months` later (the month's last day when it is shorter: 31 Jan + 1 → 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def plan_terms(
    plan: Mapping[str, Any] | None, *, product_name: str, quantity: int, today: date
) -> PlanTerms | None:
    """The entitlement terms of a product's support plan (`{"cases", "months", "channels", "name"?}`), or None
    when the product carries none. Several units grant several times the cases, over the same period."""
    if not plan:
        return None
    cases, months = int(plan.get("cases", 0)), int(plan.get("months", 0))
    if cases <= 0 or months <= 0:
        raise ValueError(f"support plan of {product_name} needs positive cases and months: {dict(plan)}")
    channels = [str(c) for c in plan.get("channels") or []]
    if not set(channels) <= CHANNELS:
        raise ValueError(
            f"support plan of {product_name} names unknown channels: {sorted(set(channels) - CHANNELS)}"
        )
    return PlanTerms(
        name=str(plan.get("name") or f"{product_name} support"),
        allocation=cases * quantity,
        starts_on=today,
        ends_on=add_months(today, months) - timedelta(days=1),  # inclusive, as contracts are written
        channels=channels,
    )
