"""Products, the devices customers own, and the faults devices report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utcnow


class Product(Base):
    __tablename__ = "product"
    _repr_label = "name"

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    unit_cost: Mapped[float | None]
    skill: Mapped[str | None] = mapped_column(String(32))  # the skill area agents need (routing)
    # A product that carries a support plan grants its buyer an entitlement:
    # {"name": str, "cases": int, "months": int, "channels": [Channel values]} (carepath/rules/webshop.py).
    support_plan: Mapped[dict[str, Any] | None]


class Device(Base):
    __tablename__ = "device"
    _repr_label = "device_id"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), unique=True)  # the id the device reports
    product_id: Mapped[int | None] = mapped_column(ForeignKey("product.id"))
    owner_contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"), index=True)
    installed_at: Mapped[datetime | None]

    product = relationship("Product")
    owner = relationship("Contact")


class DeviceFault(Base):
    """Every fault a device reported, critical or not; the frequency rule counts these.

    An append-only log written at the drain's full rate, so it carries no foreign keys to the inbox or the
    device register (each would cost a look-up and a row lock per fault): the drain records only faults of
    registered devices, `inbox_event_id` is a unique lineage pointer that survives inbox retention, and a
    device's history outlives the device record. Its link to a case is a real foreign key.
    """

    __tablename__ = "device_fault"
    __table_args__ = (
        Index("ix_device_fault_device_time", "device_id", "occurred_at"),
        # Most faults attach to no case: index only those that do.
        Index(
            "ix_device_fault_case_id",
            "case_id",
            sqlite_where=text("case_id IS NOT NULL"),
            postgresql_where=text("case_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    inbox_event_id: Mapped[int] = mapped_column(unique=True)
    device_id: Mapped[str] = mapped_column(String(64))
    error_code: Mapped[int]
    occurred_at: Mapped[datetime]
    message: Mapped[str | None] = mapped_column(String(500))
    critical: Mapped[bool]
    case_id: Mapped[int | None] = mapped_column(ForeignKey("support_case.id"))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
