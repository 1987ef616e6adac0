"""What the weekly bulk delete removed, kept restorable: one row per run and one per deleted contact."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class BulkDeleteRun(Base):
    """One run of the bulk delete (a dry run too): its archive name, bounds and counts."""

    __tablename__ = "bulk_delete_run"
    _repr_label = "archive"

    id: Mapped[int] = mapped_column(primary_key=True)
    archive: Mapped[str] = mapped_column(String(64), unique=True)  # what `carepath restore` takes
    older_than_days: Mapped[int]
    cutoff: Mapped[datetime]  # merged (or created, if never stamped) before this
    dry_run: Mapped[bool]
    deleted: Mapped[int] = mapped_column(default=0)
    kept: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class ContactArchive(Base):
    """A deleted contact's row as it was (JSON, every column), written in the same transaction as the delete."""

    __tablename__ = "contact_archive"
    __table_args__ = (UniqueConstraint("run_id", "contact_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("bulk_delete_run.id", ondelete="CASCADE"))
    contact_id: Mapped[int]  # no foreign key: the contact is gone
    row: Mapped[dict[str, Any]]
    deleted_at: Mapped[datetime] = mapped_column(default=utcnow)
    restored_at: Mapped[datetime | None]
