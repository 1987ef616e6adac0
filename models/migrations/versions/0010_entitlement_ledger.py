"""Entitlements in full: channels with their own allocation, "decrease remaining on" creation or
resolution, a waiting state, a per-case "do not decrement", and a ledger explaining every change of the
remaining terms (the uses recorded so far are copied into it)

Revision ID: 0010
Revises: 0009

"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite rebuilds a table to change a CHECK; reflecting only that table spares contact's expression index.
_ONLY_THIS_TABLE = {"resolve_fks": False}
_OLD_STATES = ("draft", "active", "expired", "cancelled")
_NEW_STATES = ("draft", "waiting", "active", "expired", "cancelled")
_CHANNELS = ("phone", "email", "web", "facebook", "twitter", "iot")


def _enum(values: tuple[str, ...], name: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


def upgrade() -> None:
    with op.batch_alter_table("entitlement", reflect_kwargs=_ONLY_THIS_TABLE) as batch_op:
        batch_op.add_column(
            sa.Column(
                "decrease_remaining_on",
                _enum(("case_creation", "case_resolution"), "decrease_remaining_on"),
                nullable=False,
                server_default="case_resolution",
            )
        )
        if op.get_bind().dialect.name != "postgresql":  # the batch copy re-creates the table's CHECK
            batch_op.alter_column(
                "state",
                type_=_enum(_NEW_STATES, "entitlement_state"),
                existing_type=_enum(_OLD_STATES, "entitlement_state"),
            )
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f("ck_entitlement_entitlement_state"), "entitlement", type_="check")
        op.create_check_constraint("entitlement_state", "entitlement", sa.column("state").in_(_NEW_STATES))
    # Plain add_column (no batch copy): SQLite must not reflect the tables around these.
    op.add_column(
        "support_case",
        sa.Column("entitlement_do_not_decrement", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("entitlement_use", sa.Column("channel", sa.String(length=32), nullable=True))

    op.create_table(
        "entitlement_channel",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entitlement_id", sa.Integer(), nullable=False),
        sa.Column("channel", _enum(_CHANNELS, "entitlement_channel"), nullable=False),
        sa.Column("allocation", sa.Integer(), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entitlement_id"],
            ["entitlement.id"],
            name=op.f("fk_entitlement_channel_entitlement_id_entitlement"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entitlement_channel")),
        sa.UniqueConstraint("entitlement_id", "channel", name=op.f("uq_entitlement_channel_entitlement_id")),
    )
    op.create_table(
        "entitlement_ledger",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entitlement_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("change", sa.Integer(), nullable=False),
        sa.Column("remaining_after", sa.Integer(), nullable=False),
        sa.Column("channel_remaining_after", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["support_case.id"],
            name=op.f("fk_entitlement_ledger_case_id_support_case"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["entitlement_id"],
            ["entitlement.id"],
            name=op.f("fk_entitlement_ledger_entitlement_id_entitlement"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entitlement_ledger")),
    )
    op.create_index("ix_entitlement_ledger_entitlement", "entitlement_ledger", ["entitlement_id", "id"])
    _copy_uses_into_the_ledger()


_ledger = sa.table(
    "entitlement_ledger",
    sa.column("entitlement_id", sa.Integer),
    sa.column("case_id", sa.Integer),
    sa.column("change", sa.Integer),
    sa.column("remaining_after", sa.Integer),
    sa.column("reason", sa.String),
    sa.column("at", models.base.UTCDateTime(timezone=True)),
)


def _copy_uses_into_the_ledger() -> None:
    """Each use becomes a -1 row (and its return a +1 row); the remaining after each is counted back from
    today's remaining, and a first row explains any difference from the allocation the uses do not."""
    conn = op.get_bind()
    when = models.base.UTCDateTime(timezone=True)
    uses = sa.table(
        "entitlement_use",
        sa.column("entitlement_id", sa.Integer),
        sa.column("case_id", sa.Integer),
        sa.column("used_at", when),
        sa.column("returned_at", when),
    )
    ents = sa.table(
        "entitlement", sa.column("id", sa.Integer), sa.column("allocation"), sa.column("remaining")
    )
    changes: dict[int, list[tuple[datetime, int, int, str]]] = {}
    for u in conn.execute(sa.select(uses).order_by(uses.c.used_at)).all():
        rows = changes.setdefault(u.entitlement_id, [])
        rows.append((u.used_at, -1, u.case_id, "case resolved"))
        if u.returned_at is not None:
            rows.append((u.returned_at, +1, u.case_id, "case reopened or cancelled"))
    out = []
    for ent_id, allocation, remaining in conn.execute(
        sa.select(ents.c.id, ents.c.allocation, ents.c.remaining)
    ):
        rows = sorted(changes.get(ent_id, []), key=lambda r: r[0])
        after, backwards = remaining, []
        for at, change, case_id, reason in reversed(rows):
            backwards.append((at, change, case_id, reason, after))
            after -= change
        if after != allocation:  # set before the ledger existed (an import, an edit): say so
            first_at = rows[0][0] if rows else datetime.now(UTC)
            backwards.append((first_at, after - allocation, None, "balance before the ledger", after))
        out += [
            {
                "entitlement_id": ent_id,
                "case_id": c,
                "change": ch,
                "remaining_after": a,
                "reason": r,
                "at": at,
            }
            for at, ch, c, r, a in reversed(backwards)
        ]
    if out:
        conn.execute(sa.insert(_ledger), out)


def downgrade() -> None:
    op.drop_index("ix_entitlement_ledger_entitlement", table_name="entitlement_ledger")
    op.drop_table("entitlement_ledger")
    op.drop_table("entitlement_channel")
    op.drop_column("entitlement_use", "channel")  # SQLite ≥ 3.35 drops a plain column in place
    op.drop_column("support_case", "entitlement_do_not_decrement")
    op.execute("UPDATE entitlement SET state = 'draft' WHERE state = 'waiting'")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f("ck_entitlement_entitlement_state"), "entitlement", type_="check")
        op.create_check_constraint("entitlement_state", "entitlement", sa.column("state").in_(_OLD_STATES))
    with op.batch_alter_table("entitlement", reflect_kwargs=_ONLY_THIS_TABLE) as batch_op:
        if op.get_bind().dialect.name != "postgresql":
            batch_op.alter_column(
                "state",
                type_=_enum(_OLD_STATES, "entitlement_state"),
                existing_type=_enum(_NEW_STATES, "entitlement_state"),
            )
        batch_op.drop_constraint(op.f("ck_entitlement_decrease_remaining_on"), type_="check")
        batch_op.drop_column("decrease_remaining_on")
