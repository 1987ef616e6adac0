"""Routing and assignment: agents' skills carry a proficiency, products name their skill area, queue items
record when an agent picked the case, and an index answers "how many open cases does this agent hold"

Revision ID: 0009
Revises: 0008

"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

import models.base

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Skills stored before proficiency existed become this middle proficiency (1–5).
_DEFAULT_PROFICIENCY = 3

_agent = sa.table(
    "agent",
    sa.column("id", sa.Integer),
    sa.column("skills", sa.JSON().with_variant(JSONB(), "postgresql")),
)


def _rewrite_skills(convert) -> None:
    conn = op.get_bind()
    for id_, skills in conn.execute(sa.select(_agent.c.id, _agent.c.skills)).all():
        if isinstance(skills, str):  # JSON text on SQLite, depending on the driver
            skills = json.loads(skills)
        conn.execute(sa.update(_agent).where(_agent.c.id == id_).values(skills=convert(skills or [])))


def upgrade() -> None:
    # Plain add_column (no batch copy): SQLite must not reflect the tables around these.
    op.add_column("queue_item", sa.Column("picked_at", models.base.UTCDateTime(timezone=True), nullable=True))
    op.add_column("product", sa.Column("skill", sa.String(length=32), nullable=True))
    op.create_index("ix_support_case_owner_status", "support_case", ["owner_agent_id", "status"])
    _rewrite_skills(lambda s: s if isinstance(s, dict) else {name: _DEFAULT_PROFICIENCY for name in s})


def downgrade() -> None:
    _rewrite_skills(lambda s: sorted(s) if isinstance(s, dict) else s)
    op.drop_index("ix_support_case_owner_status", table_name="support_case")
    op.drop_column("product", "skill")  # SQLite ≥ 3.35 drops a plain column in place
    op.drop_column("queue_item", "picked_at")
