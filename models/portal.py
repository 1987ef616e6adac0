"""The customer portal: registrations as they were decided, merge conflicts kept for people, sign-in attempts."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utcnow

if TYPE_CHECKING:
    from models.customers import Contact


class PortalRegistration(Base):
    """One portal registration and what became of it (answered again, unchanged, for a resend)."""

    __tablename__ = "portal_registration"
    _repr_label = "email"

    id: Mapped[int] = mapped_column(primary_key=True)
    inbox_event_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbox_event.id", ondelete="SET NULL"), unique=True
    )
    email: Mapped[str] = mapped_column(String(254), index=True)  # normalised
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    # already_registered | merged | linked_to_account | refused_public_domain | review_unknown_domain
    outcome: Mapped[str] = mapped_column(String(32))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="SET NULL"))
    # The contact the portal made for the registration, merged into `contact_id` (the weekly delete's work).
    temporary_contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="SET NULL"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    temporary_contact: Mapped[Contact | None] = relationship(foreign_keys=[temporary_contact_id])


class ContactMergeConflict(Base):
    """A value a registration offered that differs from the contact's: the contact's is kept, this is logged."""

    __tablename__ = "contact_merge_conflict"
    _repr_label = "field"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    registration_id: Mapped[int] = mapped_column(ForeignKey("portal_registration.id", ondelete="CASCADE"))
    field: Mapped[str] = mapped_column(String(32))
    kept_value: Mapped[str] = mapped_column(String(254))
    offered_value: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SignInAttempt(Base):
    """A portal sign-in attempt: failures in a window are counted per email and per client address."""

    __tablename__ = "sign_in_attempt"
    __table_args__ = (
        Index("ix_sign_in_attempt_email", "email", "attempted_at"),
        Index("ix_sign_in_attempt_address", "client_address", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))  # normalised
    client_address: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # ok | not_registered | wrong_password | rate_limited
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
