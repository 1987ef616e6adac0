"""Customers: accounts (companies), contacts (people), leads from the web shop, and consent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, event, func, text
from sqlalchemy.ext.associationproxy import AssociationProxy, association_proxy
from sqlalchemy.orm import Mapped, mapped_column, relationship

from carepath.rules.domains import email_domain, normalise_domain
from carepath.rules.messaging import is_e164
from models.base import Base, str_enum, utcnow
from models.enums import ConsentStatus, LeadState, MessageChannel, Tier


class Account(Base):
    __tablename__ = "account"
    _repr_label = "name"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    account_number: Mapped[str] = mapped_column(String(32), unique=True)
    tier: Mapped[Tier] = mapped_column(str_enum(Tier, "tier"), default=Tier.STANDARD)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    contacts: Mapped[list[Contact]] = relationship(
        back_populates="account", foreign_keys="Contact.account_id"
    )
    domains: Mapped[list[AccountDomain]] = relationship(
        back_populates="account", cascade="all, delete-orphan", order_by="AccountDomain.id"
    )
    # Domains the company's people write from (normalised: lower case, punycode), one row each in
    # account_domain, where a unique index finds a domain's account: unknown senders and portal registrations
    # are linked by it. `Account(email_domains=["helios-energy.gr"])` still reads and writes them as a list.
    email_domains: AssociationProxy[list[str]] = association_proxy(
        "domains", "domain", creator=lambda d: AccountDomain(domain=normalise_domain(d))
    )


class AccountDomain(Base):
    """One email domain of an account; a domain belongs to one account at most."""

    __tablename__ = "account_domain"
    _repr_label = "domain"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    domain: Mapped[str] = mapped_column(String(253), unique=True)

    account: Mapped[Account] = relationship(back_populates="domains")


class Contact(Base):
    __tablename__ = "contact"
    _repr_label = "email"
    __table_args__ = (
        # Flows look contacts up by email without regard to case.
        Index("ix_contact_email_lower", func.lower("email")),
        Index("ix_contact_merged_into_id", "merged_into_id"),
        # One portal login per email, however it is spelled: two registrations racing for one address
        # cannot both win (logins are stored normalised; this also holds for a writer that forgets to).
        Index("uq_contact_portal_login_lower", func.lower("portal_login"), unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))  # E.164
    # The phone as last checked with libphonenumber, and whether it was a valid E.164 number: checked when
    # the contact is written, so a drain opening thousands of cases does not parse every number again.
    # Trusted only while `phone_checked` equals `phone` (a writer that bypasses the ORM leaves it stale).
    phone_checked: Mapped[str | None] = mapped_column(String(32))
    phone_valid: Mapped[bool | None]
    language: Mapped[str] = mapped_column(String(8), default="en")
    # IANA name ("Europe/Athens") for showing the customer times; None: guessed from the phone, else UTC.
    time_zone: Mapped[str | None] = mapped_column(String(64))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"), index=True)
    # The domain of `email`, normalised (lower case, punycode): an account is also known by its contacts'
    # domains, found by this index. Kept by the ORM when the contact is written, like phone_checked.
    email_domain: Mapped[str | None] = mapped_column(String(253), index=True)
    portal_login: Mapped[str | None] = mapped_column(String(254), unique=True)  # the normalised email
    portal_password_hash: Mapped[str | None] = mapped_column(
        String(255)
    )  # Argon2id (PHC string); None: unset
    active: Mapped[bool] = mapped_column(default=True)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    merged_at: Mapped[datetime | None]  # when it was merged into `merged_into_id` (the weekly delete's clock)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    account: Mapped[Account | None] = relationship(back_populates="contacts", foreign_keys=[account_id])
    consents: Mapped[list[Consent]] = relationship(back_populates="contact")

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@event.listens_for(Contact, "before_insert")
@event.listens_for(Contact, "before_update")
def _check_phone_and_domain(mapper, connection, contact: Contact) -> None:
    if contact.phone != contact.phone_checked or contact.phone_valid is None:
        contact.phone_checked = contact.phone
        contact.phone_valid = is_e164(contact.phone) if contact.phone else None
    contact.email_domain = email_domain_or_none(contact.email)


def email_domain_or_none(address: str | None) -> str | None:
    """The normalised domain of an address, or None when there is none (or it is not an address)."""
    if not address:
        return None
    try:
        return email_domain(address)
    except ValueError:
        return None


class Consent(Base):
    """A contact's current consent per channel; absence means no consent (opt-in is required)."""

    __tablename__ = "consent"
    __table_args__ = (UniqueConstraint("contact_id", "channel"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    channel: Mapped[MessageChannel] = mapped_column(str_enum(MessageChannel, "consent_channel"))
    status: Mapped[ConsentStatus] = mapped_column(str_enum(ConsentStatus, "consent_status"))
    source: Mapped[str] = mapped_column(String(64))  # e.g. "portal", "sms:STOP", "twilio:21610"
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)

    contact: Mapped[Contact] = relationship(back_populates="consents")


class Lead(Base):
    __tablename__ = "lead"
    _repr_label = "email"

    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254), index=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    company: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(64), default="webshop")
    order_ref: Mapped[str | None] = mapped_column(String(64), unique=True)  # the web shop's order id
    products: Mapped[list[str]] = mapped_column(default=list, server_default=text("'[]'"))  # codes as ordered
    # Codes of the order that could not be recorded, with the reason: {"CP-NOPE": "unknown product code"}.
    quarantined_products: Mapped[dict[str, Any] | None]
    state: Mapped[LeadState] = mapped_column(str_enum(LeadState, "lead_state"), default=LeadState.NEW)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    # Indexed: the weekly delete asks, for every merged contact, whether a lead still names it.
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    qualified_at: Mapped[datetime | None]


class AccountProduct(Base):
    """A product an account bought: one row per order and product (a replayed order adds nothing)."""

    __tablename__ = "account_product"
    __table_args__ = (UniqueConstraint("order_ref", "product_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("lead.id"))
    order_ref: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(default=1)
    purchased_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The entitlement the product's support plan granted with this purchase, if it carries one.
    entitlement_id: Mapped[int | None] = mapped_column(ForeignKey("entitlement.id"))
