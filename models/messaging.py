"""Outbound messages (the outbox) and every delivery event a provider reported."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, str_enum, utcnow
from models.enums import MessageChannel, MessageStatus


class Message(Base):
    """One SMS or email. The idempotency key (case, journey step) makes every send happen once."""

    __tablename__ = "message"
    _repr_label = "idempotency_key"
    __table_args__ = (
        Index(
            "ix_message_queued",
            "id",
            sqlite_where=text("status = 'queued'"),
            postgresql_where=text("status = 'queued'"),
        ),
        # Only messages a provider accepted have an id to look up delivery callbacks by.
        Index(
            "ix_message_provider_id",
            "provider",
            "provider_message_id",
            sqlite_where=text("provider_message_id IS NOT NULL"),
            postgresql_where=text("provider_message_id IS NOT NULL"),
        ),
        # Leases to expire and unknown outcomes to settle: a handful of rows among millions.
        Index(
            "ix_message_in_flight",
            "lease_expires_at",
            sqlite_where=text("status IN ('sending', 'unknown')"),
            postgresql_where=text("status IN ('sending', 'unknown')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    channel: Mapped[MessageChannel] = mapped_column(str_enum(MessageChannel, "message_channel"))
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("support_case.id", ondelete="SET NULL"), index=True
    )
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="SET NULL"), index=True)
    journey_step: Mapped[str] = mapped_column(String(64))
    to_address: Mapped[str | None] = mapped_column(String(254))
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    template: Mapped[str | None] = mapped_column(String(100))
    provider: Mapped[str | None] = mapped_column(String(16))  # twilio | sendgrid | local
    provider_message_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[MessageStatus] = mapped_column(
        str_enum(MessageStatus, "message_status"), default=MessageStatus.QUEUED
    )
    error_code: Mapped[str | None] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(default=0)
    resends: Mapped[int] = mapped_column(default=0, server_default="0")  # after an unknown outcome: at most 1
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sending_at: Mapped[datetime | None]  # claimed
    lease_expires_at: Mapped[datetime | None]  # the claim's end: past it, the message is given back
    attempted_at: Mapped[datetime | None]  # committed just before the request leaves
    sent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    events: Mapped[list[DeliveryEvent]] = relationship(back_populates="message", order_by="DeliveryEvent.id")


class DeliveryEvent(Base):
    """A status the provider (or Carepath itself) reported for a message, kept as received."""

    __tablename__ = "delivery_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(32))
    error_code: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)

    message: Mapped[Message] = relationship(back_populates="events")
