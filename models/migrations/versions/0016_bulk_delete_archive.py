"""weekly bulk delete: a run table and a restorable archive of deleted contacts; indexes on lead.contact_id and
entitlement.contact_id (the delete asks of every merged contact whether they still name it, and so do
PostgreSQL's foreign-key checks on each deleted row)

Revision ID: 0016
Revises: 0015

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

import models.base

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_WHEN = models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bulk_delete_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("archive", sa.String(length=64), nullable=False),
        sa.Column("older_than_days", sa.Integer(), nullable=False),
        sa.Column("cutoff", _WHEN, nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("kept", sa.Integer(), nullable=False),
        sa.Column("started_at", _WHEN, nullable=False),
        sa.Column("finished_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_delete_run")),
        sa.UniqueConstraint("archive", name=op.f("uq_bulk_delete_run_archive")),
    )
    op.create_table(
        "contact_archive",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("row", _JSON, nullable=False),
        sa.Column("deleted_at", _WHEN, nullable=False),
        sa.Column("restored_at", _WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["bulk_delete_run.id"],
            name=op.f("fk_contact_archive_run_id_bulk_delete_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_archive")),
        sa.UniqueConstraint("run_id", "contact_id", name=op.f("uq_contact_archive_run_id")),
    )
    op.create_index(op.f("ix_lead_contact_id"), "lead", ["contact_id"], unique=False)
    op.create_index(op.f("ix_entitlement_contact_id"), "entitlement", ["contact_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_entitlement_contact_id"), table_name="entitlement")
    op.drop_index(op.f("ix_lead_contact_id"), table_name="lead")
    op.drop_table("contact_archive")
    op.drop_table("bulk_delete_run")
