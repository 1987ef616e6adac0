"""data-quality gates: the quarantine of refused rows (file imports and the IoT inbox drain) and the natural keys
an import run has seen (duplicates within a file)

Revision ID: 0017
Revises: 0016

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

import models.base

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_WHEN = models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "quarantined_row",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=True),
        sa.Column("row_number", sa.Integer(), nullable=True),
        sa.Column("inbox_event_id", sa.Integer(), nullable=True),
        sa.Column("raw", _JSON, nullable=False),
        sa.Column("failed_expectations", _JSON, nullable=False),
        sa.Column("quarantined_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantined_row")),
        sa.UniqueConstraint("kind", "file_sha256", "row_number", name=op.f("uq_quarantined_row_kind")),
        sa.UniqueConstraint("inbox_event_id", name=op.f("uq_quarantined_row_inbox_event_id")),
    )
    op.create_index("ix_quarantined_row_quarantined_at", "quarantined_row", ["quarantined_at"], unique=False)
    op.create_table(
        "import_key",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("seen_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "key", name=op.f("pk_import_key")),
    )


def downgrade() -> None:
    op.drop_table("import_key")
    op.drop_index("ix_quarantined_row_quarantined_at", table_name="quarantined_row")
    op.drop_table("quarantined_row")
