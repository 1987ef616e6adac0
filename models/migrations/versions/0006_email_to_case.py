"""email to case: an inbound email's Message-ID on its activity (threading, re-delivery)

Revision ID: 0006
Revises: 0005

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite rebuilds a table to add a constraint; reflecting only that table spares the warning about
# contact's expression index (as in 0002).
_ONLY_THIS_TABLE = {"resolve_fks": False}


def upgrade() -> None:
    with op.batch_alter_table("activity", reflect_kwargs=_ONLY_THIS_TABLE) as batch_op:
        batch_op.add_column(sa.Column("rfc_message_id", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_activity_rfc_message_id"), ["rfc_message_id"])


def downgrade() -> None:
    with op.batch_alter_table("activity", reflect_kwargs=_ONLY_THIS_TABLE) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_activity_rfc_message_id"), type_="unique")
        batch_op.drop_column("rfc_message_id")
