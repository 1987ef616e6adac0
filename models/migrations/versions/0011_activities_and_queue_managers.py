"""activities and queue managers: an activity's state (open, completed, cancelled) replaces `is_open`; its
direction, due time, agent and whether it was automatic; each queue's manager (told of SLA breaches)

Existing activities: closed ones become completed; those with an inbound email's Message-ID are inbound,
those linked to a message we sent outbound.

Revision ID: 0011
Revises: 0010

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite rebuilds a table to add a foreign key or drop a column; reflecting only that table spares the
# warning about contact's expression index (as in 0002, 0004, 0006).
_ONLY_THIS_TABLE = {"resolve_fks": False}

_activity = sa.table(
    "activity",
    sa.column("is_open", sa.Boolean),
    sa.column("state", sa.String),
    sa.column("direction", sa.String),
    sa.column("rfc_message_id", sa.String),
    sa.column("message_id", sa.Integer),
)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


def upgrade() -> None:
    with op.batch_alter_table("activity", reflect_kwargs=_ONLY_THIS_TABLE) as batch_op:
        batch_op.add_column(
            sa.Column(
                "state",
                _enum("activity_state", "open", "completed", "cancelled"),
                nullable=False,
                server_default="open",
            )
        )
        batch_op.add_column(
            sa.Column("direction", _enum("activity_direction", "inbound", "outbound"), nullable=True)
        )
        batch_op.add_column(sa.Column("due_at", models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("agent_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("automatic", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_foreign_key(batch_op.f("fk_activity_agent_id_agent"), "agent", ["agent_id"], ["id"])
    a = _activity
    op.execute(a.update().where(a.c.is_open.is_(False)).values(state="completed"))
    op.execute(a.update().where(a.c.rfc_message_id.is_not(None)).values(direction="inbound"))
    op.execute(
        a.update()
        .where(a.c.rfc_message_id.is_(None), a.c.message_id.is_not(None))
        .values(direction="outbound")
    )
    with op.batch_alter_table("activity", reflect_kwargs=_ONLY_THIS_TABLE) as batch_op:
        batch_op.drop_column("is_open")

    with op.batch_alter_table("queue", reflect_kwargs=_ONLY_THIS_TABLE) as batch_op:
        batch_op.add_column(sa.Column("manager_agent_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_queue_manager_agent_id_agent"), "agent", ["manager_agent_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("queue", reflect_kwargs=_ONLY_THIS_TABLE) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_queue_manager_agent_id_agent"), type_="foreignkey")
        batch_op.drop_column("manager_agent_id")

    with op.batch_alter_table("activity", reflect_kwargs=_ONLY_THIS_TABLE) as batch_op:
        batch_op.add_column(sa.Column("is_open", sa.Boolean(), nullable=False, server_default=sa.true()))
    a = _activity
    op.execute(a.update().where(a.c.state != "open").values(is_open=False))
    with op.batch_alter_table("activity", reflect_kwargs=_ONLY_THIS_TABLE) as batch_op:
        batch_op.alter_column(
            "is_open", server_default=None, existing_type=sa.Boolean(), existing_nullable=False
        )
        batch_op.drop_constraint(batch_op.f("fk_activity_agent_id_agent"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("ck_activity_activity_state"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_activity_activity_direction"), type_="check")
        batch_op.drop_column("automatic")
        batch_op.drop_column("agent_id")
        batch_op.drop_column("due_at")
        batch_op.drop_column("direction")
        batch_op.drop_column("state")
