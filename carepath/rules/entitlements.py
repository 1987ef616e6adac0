"""Which entitlement covers a new case."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class EntitlementTerms:
    id: int
    starts_on: date
    ends_on: date
    remaining: int
    channels: tuple[str, ...]  # empty: every channel
    product_skus: tuple[str, ...]  # empty: every product
    active: bool = True


def covers(terms: EntitlementTerms, *, channel: str, product_sku: str | None, on: date) -> bool:
    """Whether the entitlement applies to a case on this channel and product, on this day, with cases left."""
    return (
        terms.active
        and terms.starts_on <= on <= terms.ends_on
        and terms.remaining > 0
        and (not terms.channels or channel in terms.channels)
        and (not terms.product_skus or (product_sku is not None and product_sku in terms.product_skus))
    )


def choose_entitlement(
    candidates: Iterable[EntitlementTerms], *, channel: str, product_sku: str | None, on: date
) -> EntitlementTerms | None:
    """The covering entitlement that ends soonest (use it before it lapses); product-specific ones first."""
    covering = [t for t in candidates if covers(t, channel=channel, product_sku=product_sku, on=on)]
    if not covering:
        return None
    return min(covering, key=lambda t: (not t.product_skus, t.ends_on, t.id))
