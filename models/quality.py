"""What the data-quality gates keep: the rows they refused (quarantine) and the keys an import run has seen."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class QuarantinedRow(Base):
    """A row a gate refused: where it came from, its values as they arrived, and the expectations it failed.

    A file's row is known by (kind, the file's sha256, row number) and an inbox event by its id, so importing
    the same file again, or replaying an event that fails again, updates the row instead of adding one.
    """

    __tablename__ = "quarantined_row"
    _repr_label = "kind"
    __table_args__ = (
        UniqueConstraint("kind", "file_sha256", "row_number"),
        # Like device_fault's lineage pointer, not a foreign key: the row outlives inbox retention.
        UniqueConstraint("inbox_event_id"),
        Index("ix_quarantined_row_quarantined_at", "quarantined_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # contacts, accounts, faults, inbox_faults
    source: Mapped[str] = mapped_column(String(255))  # the file's name, or "inbox"
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    row_number: Mapped[int | None]  # CSV: as a spreadsheet numbers it (header = 1); Parquet: from 1
    inbox_event_id: Mapped[int | None]
    raw: Mapped[dict[str, Any]]  # the row's values as they arrived (text, or the event's payload)
    failed_expectations: Mapped[list[str]]  # the suite's expectation names
    quarantined_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImportKey(Base):
    """A natural key (email, account number, event id) an import run has met: a later row of the same file with
    the same key is a duplicate. The run deletes its keys when it ends."""

    __tablename__ = "import_key"
    _repr_label = "key"

    run_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # the key's sha256 (hex)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
