"""contact phone checked when written: phone_checked and phone_valid

Opening a case used to parse the owner's number with libphonenumber every time (about half the Python
time of queueing an SMS). The check now happens when the contact is written; rows written before this
migration, or by writers that bypass the ORM, keep NULL and are checked when first texted.

Revision ID: 0003
Revises: 0002

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone_checked", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("phone_valid", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.drop_column("phone_valid")
        batch_op.drop_column("phone_checked")
