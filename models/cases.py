"""Cases, their status history, activities and resolutions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, false, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, str_enum, utcnow
from models.enums import ActivityDirection, ActivityState, ActivityType, CaseStatus, Channel, Priority


class Case(Base):
    # "case" is an SQL keyword; the table is named so raw SQL never needs quoting.
    __tablename__ = "support_case"
    _repr_label = "ticket_number"
    __table_args__ = (
        # At most one open case per device: concurrent drains cannot open two for the same fault burst.
        Index(
            "uq_support_case_open_device",
            "device_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_support_case_customer_status", "account_id", "status"),
        Index("ix_support_case_owner_status", "owner_agent_id", "status"),  # an agent's load
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_number: Mapped[str] = mapped_column(String(20), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"), index=True)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("product.id"))
    device_id: Mapped[str | None] = mapped_column(ForeignKey("device.device_id"))
    error_code: Mapped[int | None]
    priority: Mapped[Priority] = mapped_column(str_enum(Priority, "priority"), default=Priority.NORMAL)
    origin: Mapped[Channel] = mapped_column(str_enum(Channel, "case_origin"))
    status: Mapped[CaseStatus] = mapped_column(str_enum(CaseStatus, "case_status"), default=CaseStatus.ACTIVE)
    status_reason: Mapped[str] = mapped_column(String(64), default="in_progress")
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("queue.id"))
    owner_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id"))
    entitlement_id: Mapped[int | None] = mapped_column(ForeignKey("entitlement.id"))
    # Set by an operator: this case uses no term of its entitlement (a goodwill case, a duplicate…).
    entitlement_do_not_decrement: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Fault bookkeeping for IoT cases: how often the fault recurred and how often within the window.
    fault_occurrences: Mapped[int] = mapped_column(default=0)
    fault_frequency: Mapped[int | None]
    first_fault_at: Mapped[datetime | None]
    last_fault_at: Mapped[datetime | None]
    tracking_token: Mapped[str] = mapped_column(String(43), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    first_response_at: Mapped[datetime | None]
    resolve_by: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]

    history: Mapped[list[CaseStatusChange]] = relationship(
        back_populates="case", order_by="CaseStatusChange.id"
    )
    contact = relationship("Contact")
    account = relationship("Account")


class CaseStatusChange(Base):
    """Every status change of a case, in order; the first row records creation."""

    __tablename__ = "case_status_change"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("support_case.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[CaseStatus | None] = mapped_column(str_enum(CaseStatus, "case_status_from"))
    to_status: Mapped[CaseStatus] = mapped_column(str_enum(CaseStatus, "case_status_to"))
    status_reason: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))  # "iot_fault_journey", "agent", "webhook:…"
    note: Mapped[str | None] = mapped_column(String(500))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)

    case: Mapped[Case] = relationship(back_populates="history")


class Activity(Base):
    """Email, phone call, task, SMS or note regarding a case: open, completed or cancelled; inbound or outbound;
    done by an agent or automatically (an acknowledgement, a journey's notification)."""

    __tablename__ = "activity"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("support_case.id", ondelete="CASCADE"), index=True)
    type: Mapped[ActivityType] = mapped_column(str_enum(ActivityType, "activity_type"))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str | None] = mapped_column(Text)
    state: Mapped[ActivityState] = mapped_column(
        str_enum(ActivityState, "activity_state"), default=ActivityState.OPEN, server_default="open"
    )
    direction: Mapped[ActivityDirection | None] = mapped_column(
        str_enum(ActivityDirection, "activity_direction")
    )
    due_at: Mapped[datetime | None]
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id"))
    automatic: Mapped[bool] = mapped_column(default=False, server_default=false())
    message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id"))
    # An inbound email's Message-ID: replies name it in In-Reply-To/References; a re-delivery is recognised.
    rfc_message_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]  # completed or cancelled


class ResolutionActivity(Base):
    """How a case was resolved and how long the work took."""

    __tablename__ = "resolution_activity"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("support_case.id", ondelete="CASCADE"), unique=True)
    resolution: Mapped[str] = mapped_column(Text)
    time_spent_minutes: Mapped[int] = mapped_column(default=0)
    resolved_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
