"""The inbox: every accepted inbound event, stored before anything acts on it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, str_enum, utcnow
from models.enums import InboxState


class InboxEvent(Base):
    __tablename__ = "inbox_event"
    _repr_label = "event_id"
    __table_args__ = (
        # A resend of the same event is a no-op.
        UniqueConstraint("source", "event_id"),
        # Drains look for pending rows of one kind, oldest first.
        Index(
            "ix_inbox_event_pending",
            "kind",
            "id",
            sqlite_where=text("state = 'pending'"),
            postgresql_where=text("state = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))  # iot, twilio, sendgrid, portal, webshop, …
    kind: Mapped[str] = mapped_column(String(32))  # fault, status, inbound, …
    event_id: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]]
    state: Mapped[InboxState] = mapped_column(str_enum(InboxState, "inbox_state"), default=InboxState.PENDING)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    announced_at: Mapped[datetime | None]  # when the Prefect event was emitted


class WebhookRejection(Base):
    """A refused webhook request, for operators: who, why, when. Never a secret or a signature."""

    __tablename__ = "webhook_rejection"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32), index=True)
    status_code: Mapped[int]
    reason: Mapped[str] = mapped_column(String(500))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
