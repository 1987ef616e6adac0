"""web-shop orders: products an account bought (account_product), a product's support plan, a lead's ordered
and quarantined product codes

Revision ID: 0015
Revises: 0014

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

import models.base

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("product", sa.Column("support_plan", _JSON, nullable=True))
    op.add_column("lead", sa.Column("products", _JSON, nullable=False, server_default=sa.text("'[]'")))
    op.add_column("lead", sa.Column("quarantined_products", _JSON, nullable=True))
    op.create_table(
        "account_product",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=True),
        sa.Column("order_ref", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("purchased_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("entitlement_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_account_product_account_id_account")
        ),
        sa.ForeignKeyConstraint(
            ["entitlement_id"], ["entitlement.id"], name=op.f("fk_account_product_entitlement_id_entitlement")
        ),
        sa.ForeignKeyConstraint(["lead_id"], ["lead.id"], name=op.f("fk_account_product_lead_id_lead")),
        sa.ForeignKeyConstraint(
            ["product_id"], ["product.id"], name=op.f("fk_account_product_product_id_product")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_product")),
        sa.UniqueConstraint("order_ref", "product_id", name=op.f("uq_account_product_order_ref")),
    )
    op.create_index(op.f("ix_account_product_account_id"), "account_product", ["account_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_account_product_account_id"), table_name="account_product")
    op.drop_table("account_product")
    # SQLite ≥ 3.35 drops a plain column in place: no copy of the table and its foreign keys.
    op.drop_column("lead", "quarantined_products")
    op.drop_column("lead", "products")
    op.drop_column("product", "support_plan")
