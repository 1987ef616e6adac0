"""account domains: one indexed row per (normalised) email domain instead of a JSON list on the account, so a
domain's account is found by an index, not by reading every account; contact.merged_at (the weekly delete's
clock for merged contacts)

Existing domains are normalised (trimmed, lower case, punycode); a domain two accounts listed stays with the
first account.

Revision ID: 0013
Revises: 0012

"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

import models.base
from carepath.rules.domains import normalise_domain

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    domain = op.create_table(
        "account_domain",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_account_domain_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_domain")),
        sa.UniqueConstraint("domain", name=op.f("uq_account_domain_domain")),
    )
    op.create_index(op.f("ix_account_domain_account_id"), "account_domain", ["account_id"], unique=False)
    conn = op.get_bind()
    seen: set[str] = set()
    rows = []
    for account_id, domains in conn.execute(sa.text("SELECT id, email_domains FROM account ORDER BY id")):
        if isinstance(domains, str):
            domains = json.loads(domains)
        for d in domains or []:
            try:
                d = normalise_domain(d)
            except ValueError:
                continue
            if d not in seen:
                seen.add(d)
                rows.append({"account_id": account_id, "domain": d})
    if rows:
        op.bulk_insert(domain, rows)
    op.drop_column("account", "email_domains")  # in place (SQLite ≥ 3.35): no copy of account and its FKs
    op.add_column("contact", sa.Column("merged_at", models.base.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("contact", "merged_at")  # SQLite ≥ 3.35 drops a plain column in place
    op.add_column(
        "account", sa.Column("email_domains", _JSON, nullable=False, server_default=sa.text("'[]'"))
    )
    conn = op.get_bind()
    by_account: dict[int, list[str]] = {}
    for account_id, d in conn.execute(sa.text("SELECT account_id, domain FROM account_domain ORDER BY id")):
        by_account.setdefault(account_id, []).append(d)
    account = sa.table("account", sa.column("id", sa.Integer), sa.column("email_domains", _JSON))
    for account_id, domains in by_account.items():
        conn.execute(account.update().where(account.c.id == account_id).values(email_domains=domains))
    op.drop_index(op.f("ix_account_domain_account_id"), table_name="account_domain")
    op.drop_table("account_domain")
