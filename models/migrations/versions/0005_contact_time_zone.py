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
    # Plain ADD COLUMN, as in 0003: batch mode would reflect contact first, and SQLite's reflection warns that
    # it skips the expression index ix_contact_email_lower, on every fresh database.
    op.add_column("contact", sa.Column("time_zone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), as in 0003: a batch rebuild would lose that expression index.
    op.drop_column("contact", "time_zone")
