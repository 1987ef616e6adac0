"""lighter fault log: no inbox/device foreign keys on device_fault, partial indexes on sparse columns

device_fault is append-only and written at the drain's full rate: its foreign keys to inbox_event and
device cost a look-up and a row lock per fault (about 40% of the insert), and the inbox one would stop
inbox retention. The drain checks devices itself. Faults without a case and messages without a provider
id are left out of the indexes that look them up.

Revision ID: 0002
Revises: 0001

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# SQLite rebuilds a table to drop a constraint. Reflecting only that table (not the tables its foreign keys
# refer to) is all the rebuild needs, and spares the warning that reflection cannot read contact's
# expression index ix_contact_email_lower.
_ONLY_THIS_TABLE = {"resolve_fks": False}


def upgrade() -> None:
    with op.batch_alter_table("device_fault", schema=None, reflect_kwargs=_ONLY_THIS_TABLE) as batch_op:
        batch_op.drop_constraint("fk_device_fault_inbox_event_id_inbox_event", type_="foreignkey")
        batch_op.drop_constraint("fk_device_fault_device_id_device", type_="foreignkey")
        batch_op.drop_index("ix_device_fault_case_id")
        batch_op.create_index(
            "ix_device_fault_case_id",
            ["case_id"],
            unique=False,
            sqlite_where=sa.text("case_id IS NOT NULL"),
            postgresql_where=sa.text("case_id IS NOT NULL"),
        )
    with op.batch_alter_table("message", schema=None, reflect_kwargs=_ONLY_THIS_TABLE) as batch_op:
        batch_op.drop_index("ix_message_provider_id")
        batch_op.create_index(
            "ix_message_provider_id",
            ["provider", "provider_message_id"],
            unique=False,
            sqlite_where=sa.text("provider_message_id IS NOT NULL"),
            postgresql_where=sa.text("provider_message_id IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("message", schema=None, reflect_kwargs=_ONLY_THIS_TABLE) as batch_op:
        batch_op.drop_index("ix_message_provider_id")
        batch_op.create_index("ix_message_provider_id", ["provider", "provider_message_id"], unique=False)
    with op.batch_alter_table("device_fault", schema=None, reflect_kwargs=_ONLY_THIS_TABLE) as batch_op:
        batch_op.drop_index("ix_device_fault_case_id")
        batch_op.create_index("ix_device_fault_case_id", ["case_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_device_fault_device_id_device", "device", ["device_id"], ["device_id"]
        )
        batch_op.create_foreign_key(
            "fk_device_fault_inbox_event_id_inbox_event", "inbox_event", ["inbox_event_id"], ["id"]
        )
