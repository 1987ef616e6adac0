"""exactly-once outbox: leases, an `unknown` outcome, one entitlement use per resolution

- message: `lease_expires_at` (a claim is a lease; a worker that dies gives its messages back),
  `attempted_at` (set, and committed, just before the request leaves: after a crash it tells "never
  attempted" → queued from "may have left" → unknown), `resends` (an unknown message is sent again at most
  once), and the status `unknown`.
- entitlement_use: the ledger of terms used by resolutions; at most one open use per case, enforced by a
  partial unique index, so two workers resolving the same case can never use two terms.
- webhook_rejection.body_excerpt goes: nothing wrote it, and a body excerpt may carry personal data.

Revision ID: 0004
Revises: 0003

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = ("queued", "sending", "sent", "delivered", "undelivered", "failed", "bounced", "dropped", "blocked")
_NEW = (*_OLD[:2], "unknown", *_OLD[2:])


# Reflect only message for the SQLite rebuild (as 0002 does): following its foreign keys would reflect
# contact, and SQLite's reflection warns that it skips contact's expression index ix_contact_email_lower.
_ONLY_THIS_TABLE = {"resolve_fks": False}


def _status(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name="message_status", native_enum=False, create_constraint=True, length=32)


def _set_statuses(values: tuple[str, ...], old: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f("ck_message_message_status"), "message", type_="check")
        op.create_check_constraint("message_status", "message", sa.column("status").in_(values))
    else:  # SQLite: the batch copy re-creates the table with the new type's CHECK
        with op.batch_alter_table("message", reflect_kwargs=_ONLY_THIS_TABLE) as batch_op:
            batch_op.alter_column("status", type_=_status(values), existing_type=_status(old))


def upgrade() -> None:
    with op.batch_alter_table("message", reflect_kwargs=_ONLY_THIS_TABLE) as batch_op:
        batch_op.add_column(sa.Column("lease_expires_at", models.base.UTCDateTime(timezone=True)))
        batch_op.add_column(sa.Column("attempted_at", models.base.UTCDateTime(timezone=True)))
        batch_op.add_column(sa.Column("resends", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index(
            "ix_message_in_flight",
            ["lease_expires_at"],
            sqlite_where=sa.text("status IN ('sending', 'unknown')"),
            postgresql_where=sa.text("status IN ('sending', 'unknown')"),
        )
    _set_statuses(_NEW, _OLD)

    op.create_table(
        "entitlement_use",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entitlement_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("used_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("returned_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status_change_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["entitlement_id"], ["entitlement.id"], name=op.f("fk_entitlement_use_entitlement_id_entitlement")
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["support_case.id"],
            name=op.f("fk_entitlement_use_case_id_support_case"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entitlement_use")),
    )
    with op.batch_alter_table("entitlement_use") as batch_op:
        batch_op.create_index(batch_op.f("ix_entitlement_use_entitlement_id"), ["entitlement_id"])
        batch_op.create_index(
            "uq_entitlement_use_open_per_case",
            ["case_id"],
            unique=True,
            sqlite_where=sa.text("returned_at IS NULL"),
            postgresql_where=sa.text("returned_at IS NULL"),
        )
    # Cases resolved before the ledger existed hold a term: record it, so reopening one gives it back.
    op.execute(
        "INSERT INTO entitlement_use (entitlement_id, case_id, used_at) "
        "SELECT entitlement_id, id, COALESCE(resolved_at, updated_at) FROM support_case "
        "WHERE status = 'resolved' AND entitlement_id IS NOT NULL"
    )

    with op.batch_alter_table("webhook_rejection") as batch_op:
        batch_op.drop_column("body_excerpt")


def downgrade() -> None:
    with op.batch_alter_table("webhook_rejection") as batch_op:
        batch_op.add_column(sa.Column("body_excerpt", sa.String(length=500), nullable=True))
    op.drop_table("entitlement_use")
    op.execute("UPDATE message SET status = 'failed' WHERE status = 'unknown'")
    _set_statuses(_OLD, _NEW)
    with op.batch_alter_table("message", reflect_kwargs=_ONLY_THIS_TABLE) as batch_op:
        batch_op.drop_index("ix_message_in_flight")
        batch_op.drop_column("resends")
        batch_op.drop_column("attempted_at")
        batch_op.drop_column("lease_expires_at")
