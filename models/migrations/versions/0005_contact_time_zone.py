"""contact time zone: the IANA zone the tracking page shows the customer's times in

Nullable: contacts without one see times in their phone number's zone, else UTC.

Revision ID: 0005
Revises: 0004

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # In place (both dialects add a nullable column without a rebuild): a batch copy of contact would reflect
    # its expression index, which SQLite reflection cannot read (a warning in every `make demo`).
    op.add_column("contact", sa.Column("time_zone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("contact", "time_zone")  # SQLite ≥ 3.35 drops a plain column in place
