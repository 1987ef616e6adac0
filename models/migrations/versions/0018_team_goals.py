"""team goals: goal.owner_queue_id (a team is a queue); one goal per metric, period and owner, "everyone"
included (a unique index over coalesce(owner, 0) replaces the unique constraint that NULL owners slipped
through); an agent's goal or a team's, not both

Revision ID: 0018
Revises: 0016

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OWNER_INDEX = [
    "metric",
    "period_start",
    "period_end",
    sa.text("coalesce(owner_agent_id, 0)"),
    sa.text("coalesce(owner_queue_id, 0)"),
]


def upgrade() -> None:
    # SQLite rebuilds the (small) goal table for the constraint changes; nothing refers to it.
    with op.batch_alter_table("goal") as batch_op:
        batch_op.add_column(sa.Column("owner_queue_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_goal_owner_queue_id_queue"), "queue", ["owner_queue_id"], ["id"]
        )
        batch_op.drop_constraint(batch_op.f("uq_goal_metric"), type_="unique")
        batch_op.create_check_constraint(
            batch_op.f("ck_goal_one_owner"), "owner_agent_id IS NULL OR owner_queue_id IS NULL"
        )
    op.create_index("uq_goal_metric_period_owner", "goal", _OWNER_INDEX, unique=True)


def downgrade() -> None:
    op.drop_index("uq_goal_metric_period_owner", table_name="goal")
    op.execute("DELETE FROM goal WHERE owner_queue_id IS NOT NULL")  # team goals have no place before 0018
    with op.batch_alter_table("goal") as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_goal_one_owner"), type_="check")
        batch_op.create_unique_constraint(
            batch_op.f("uq_goal_metric"), ["metric", "period_start", "owner_agent_id"]
        )
        batch_op.drop_constraint(batch_op.f("fk_goal_owner_queue_id_queue"), type_="foreignkey")
        batch_op.drop_column("owner_queue_id")
