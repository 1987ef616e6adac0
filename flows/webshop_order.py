"""Web-shop order journey: an order → a lead → qualified into an account and a contact with portal access,
the products on the account, and the entitlement a support plan grants."""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from pydantic import Field

from carepath.sources import journey_batch_size
from tasks.webshop import OrderBatch, drain_webshop_orders


@flow(name="webshop-order")
def webshop_order(
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = journey_batch_size("webshop-order"),
) -> dict:
    """Qualify every pending web-shop order: reuse the buyer's contact and account (by email, then by company
    domain) or create them, record the products and grant support plans.

    Args:
        batch_size: Orders qualified per transaction.
    """
    total = OrderBatch()
    while True:
        batch = drain_webshop_orders(batch_size)  # claim orders → lead → account + contact → products
        for name in (
            "claimed",
            "qualified",
            "accounts_created",
            "contacts_created",
            "unknown_products",
            "failed",
        ):
            setattr(total, name, getattr(total, name) + getattr(batch, name))
        if batch.claimed == 0:
            break
    figures = {
        "orders_claimed": total.claimed,
        "orders_qualified": total.qualified,
        "accounts_created": total.accounts_created,
        "contacts_created": total.contacts_created,
        "unknown_product_codes": total.unknown_products,
        "failed": total.failed,
    }
    get_run_logger().info("web-shop orders: %s", figures)
    return figures
