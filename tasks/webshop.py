"""Web-shop orders: a lead qualified at once into an account and a contact with portal access, the products
recorded on the account, and the entitlement a product's support plan grants.

An order is qualified once: the lead's order id is unique, so a resent order (or two racing copies) finds the
lead the first one made and creates nothing. The account and contact are found before they are made: the
contact by email, the account by the contact or by the email's domain (never a free-mail domain).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from carepath.db import dialect_insert, unit_of_work
from carepath.rules.domains import email_domain, normalise_email
from carepath.rules.public_domains import is_public_domain
from carepath.rules.webshop import account_name, plan_terms, split_products
from carepath.schemas import WebshopOrderIn
from models import (
    Account,
    AccountProduct,
    Contact,
    Entitlement,
    EntitlementState,
    Lead,
    LeadState,
    Product,
    Tier,
)
from models.base import utcnow
from tasks.accounts import account_for_domain
from tasks.inbox import claim_pending, mark_failed, mark_processed

logger = logging.getLogger("carepath.webshop")

SOURCE, KIND = "webshop", "order"
_ATTEMPTS = 3  # a concurrent order for the same new company or person: the loser looks again and reuses


@dataclass
class OrderOutcome:
    """What an order became: lead id, account number, contact id, and what was new."""

    order_id: str
    lead: int
    account: str
    contact: int
    account_created: bool = False
    contact_created: bool = False
    replayed: bool = False
    products: dict[str, int] = field(default_factory=dict)
    unknown_products: dict[str, str] = field(default_factory=dict)
    entitlements: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "lead": self.lead,
            "account": self.account,
            "contact": self.contact,
            "account_created": self.account_created,
            "contact_created": self.contact_created,
            "order_id": self.order_id,
            "replayed": self.replayed,
            "products": self.products,
            "unknown_products": self.unknown_products,
            "entitlements": self.entitlements,
        }


def parse_order(raw: Any) -> WebshopOrderIn:
    """A validated order; ValueError with one line naming each bad field."""
    try:
        return WebshopOrderIn.model_validate(raw)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'order'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"invalid order: {fields}") from None


def qualify_order(*, session: Session, order: WebshopOrderIn, today: date | None = None) -> OrderOutcome:
    """Record the order as a lead and qualify it: account and contact reused or created, products recorded,
    support plans granted. The same order again returns what the first made."""
    lead_id = _insert_lead(session, order)
    if lead_id is None:
        return _replay(session, order.order_id)
    lead = session.get(Lead, lead_id)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with session.begin_nested():
                outcome = _qualify(session, lead, order, today or datetime.now(UTC).date())
            return outcome
        except IntegrityError:
            # Another order made this account (domain) or contact (portal login) since we looked: look again.
            if attempt == _ATTEMPTS:
                raise
            logger.info("order %s raced another for its account or contact; looking again", order.order_id)
    raise AssertionError("unreachable")


def _insert_lead(session: Session, order: WebshopOrderIn) -> int | None:
    """The new lead's id, or None when a lead for this order id exists (the unique order_ref decides, also
    between two concurrent copies: the second waits for the first and then finds it)."""
    stmt = (
        dialect_insert(session, Lead)
        .values(
            first_name=order.first_name,
            last_name=order.last_name,
            email=normalise_email(order.email),
            phone=order.phone,
            company=order.company,
            source="webshop",
            order_ref=order.order_id,
            products=list(order.products),
            state=LeadState.NEW,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["order_ref"])
        .returning(Lead.id)
    )
    return session.scalar(stmt)


def _replay(session: Session, order_id: str) -> OrderOutcome:
    lead = session.scalars(select(Lead).where(Lead.order_ref == order_id)).one()
    number = session.scalar(select(Account.account_number).where(Account.id == lead.account_id))
    bought = session.execute(
        select(Product.sku, AccountProduct.quantity, AccountProduct.entitlement_id)
        .join(Product, Product.id == AccountProduct.product_id)
        .where(AccountProduct.order_ref == order_id)
        .order_by(AccountProduct.id)
    ).all()
    return OrderOutcome(
        order_id=order_id,
        lead=lead.id,
        account=number,
        contact=lead.contact_id,
        replayed=True,
        products={sku: qty for sku, qty, _ in bought},
        unknown_products=dict(lead.quarantined_products or {}),
        entitlements=[e for _, _, e in bought if e is not None],
    )


def _qualify(session: Session, lead: Lead, order: WebshopOrderIn, today: date) -> OrderOutcome:
    email = normalise_email(order.email)
    domain = email_domain(email)
    public = is_public_domain(domain)
    contact = contact_for_email(session=session, email=email)
    account_id = contact.account_id if contact else None
    if account_id is None and not public:
        account_id = account_for_domain(session=session, domain=domain)
    account_created = account_id is None
    if account_created:
        account = Account(
            name=account_name(company=order.company, first_name=order.first_name, last_name=order.last_name),
            account_number=f"ACC-W{lead.id:06d}",  # from the unique lead: no second sequence to race on
            tier=Tier.STANDARD,
            email_domains=[] if public else [domain],
        )
        session.add(account)
        session.flush()
    else:
        account = session.get(Account, account_id)
    contact_created = contact is None
    if contact is None:
        contact = Contact(
            first_name=order.first_name,
            last_name=order.last_name,
            email=email,
            phone=order.phone,
            account_id=account.id,
        )
        session.add(contact)
    elif contact.account_id is None:
        contact.account_id = account.id
    if contact.portal_login is None and not _login_taken(session, email):
        contact.portal_login = email  # portal access: the buyer signs in with the address they ordered with
    session.flush()

    known = session.scalars(select(Product).where(func.upper(Product.sku).in_(_upper(order.products)))).all()
    quantities, unknown = split_products(order.products, [p.sku for p in known])
    by_sku = {p.sku: p for p in known}
    entitlements = []
    for sku, quantity in quantities.items():
        product = by_sku[sku]
        entitlement = _grant_plan(session, product, quantity, account, order.order_id, today)
        if entitlement is not None:
            entitlements.append(entitlement.id)
        session.add(
            AccountProduct(
                account_id=account.id,
                product_id=product.id,
                lead_id=lead.id,
                order_ref=order.order_id,
                quantity=quantity,
                entitlement_id=entitlement.id if entitlement else None,
            )
        )
    if unknown:
        logger.warning("order %s: unknown product codes set aside: %s", order.order_id, ", ".join(unknown))
    lead.account_id, lead.contact_id = account.id, contact.id
    lead.state, lead.qualified_at = LeadState.QUALIFIED, utcnow()
    lead.quarantined_products = unknown or None
    session.flush()
    return OrderOutcome(
        order_id=order.order_id,
        lead=lead.id,
        account=account.account_number,
        contact=contact.id,
        account_created=account_created,
        contact_created=contact_created,
        products=quantities,
        unknown_products=unknown,
        entitlements=entitlements,
    )


def contact_for_email(*, session: Session, email: str) -> Contact | None:
    """The contact with this (normalised) email: an active one first, never one merged into another."""
    return session.scalars(
        select(Contact)
        .where(func.lower(Contact.email) == normalise_email(email), Contact.merged_into_id.is_(None))
        .order_by(Contact.active.desc(), Contact.id)
        .limit(1)
    ).first()


def _login_taken(session: Session, login: str) -> bool:
    return session.scalar(select(Contact.id).where(Contact.portal_login == login)) is not None


def _upper(codes: list[str]) -> list[str]:
    return [c.strip().upper() for c in codes]


def _grant_plan(
    session: Session, product: Product, quantity: int, account: Account, order_id: str, today: date
) -> Entitlement | None:
    terms = plan_terms(product.support_plan, product_name=product.name, quantity=quantity, today=today)
    if terms is None:
        return None
    entitlement = Entitlement(
        name=f"{terms.name} (order {order_id})",
        account_id=account.id,
        starts_on=terms.starts_on,
        ends_on=terms.ends_on,
        allocation=terms.allocation,
        remaining=terms.allocation,
        channels=terms.channels,
        product_ids=[product.sku],
        restrict_case_creation=False,
        state=EntitlementState.ACTIVE,
    )
    session.add(entitlement)
    session.flush()
    return entitlement


@dataclass
class OrderBatch:
    claimed: int = 0
    qualified: int = 0
    accounts_created: int = 0
    contacts_created: int = 0
    unknown_products: int = 0
    failed: int = 0
    errors: dict[int, str] = field(default_factory=dict)


def drain_webshop_orders_batch(*, session: Session, limit: int) -> OrderBatch:
    """Claim pending orders → qualify each (a bad one fails alone, with its reason) → mark them."""
    batch = OrderBatch()
    done = []
    events = claim_pending(session=session, source=SOURCE, kind=KIND, limit=limit)
    for event in events:
        try:
            with session.begin_nested():
                outcome = qualify_order(session=session, order=parse_order(event.payload))
        except (ValueError, IntegrityError) as exc:
            batch.errors[event.id] = str(exc)[:2000]
            continue
        done.append(event.id)
        batch.qualified += 1
        batch.accounts_created += outcome.account_created
        batch.contacts_created += outcome.contact_created
        batch.unknown_products += len(outcome.unknown_products)
    batch.claimed = len(events)
    mark_failed(session=session, errors=batch.errors)
    mark_processed(session=session, ids=done)
    batch.failed = len(batch.errors)
    return batch


@task(name="qualify-webshop-orders", cache_policy=NO_CACHE)
def drain_webshop_orders(batch_size: int) -> OrderBatch:
    """Qualify one batch of web-shop orders from the inbox, in one transaction."""
    with unit_of_work() as session:
        return drain_webshop_orders_batch(session=session, limit=batch_size)
