"""portal registration and sign-in: contact.email_domain (indexed: an account is also known by its contacts'
domains), contact.portal_password_hash, a unique index on lower(portal_login) (one login per email, however
spelled, even when two registrations race), portal_registration, contact_merge_conflict, sign_in_attempt

Existing contacts' email domains are filled in (normalised: lower case, punycode).

Revision ID: 0014
Revises: 0013

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base
from carepath.rules.domains import email_domain

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain columns added in place: the contact table is never copied (or reflected) on SQLite.
    op.add_column("contact", sa.Column("email_domain", sa.String(length=253), nullable=True))
    op.add_column("contact", sa.Column("portal_password_hash", sa.String(length=255), nullable=True))
    _fill_email_domains()
    op.create_index(op.f("ix_contact_email_domain"), "contact", ["email_domain"], unique=False)
    op.create_index("uq_contact_portal_login_lower", "contact", [sa.text("lower(portal_login)")], unique=True)
    op.create_table(
        "portal_registration",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inbox_event_id", sa.Integer(), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("temporary_contact_id", sa.Integer(), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_portal_registration_account_id_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
            name=op.f("fk_portal_registration_contact_id_contact"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["inbox_event_id"],
            ["inbox_event.id"],
            name=op.f("fk_portal_registration_inbox_event_id_inbox_event"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["temporary_contact_id"],
            ["contact.id"],
            name=op.f("fk_portal_registration_temporary_contact_id_contact"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_registration")),
        sa.UniqueConstraint("inbox_event_id", name=op.f("uq_portal_registration_inbox_event_id")),
    )
    op.create_index(op.f("ix_portal_registration_email"), "portal_registration", ["email"], unique=False)
    op.create_table(
        "contact_merge_conflict",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("registration_id", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(length=32), nullable=False),
        sa.Column("kept_value", sa.String(length=254), nullable=False),
        sa.Column("offered_value", sa.String(length=254), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
            name=op.f("fk_contact_merge_conflict_contact_id_contact"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["portal_registration.id"],
            name=op.f("fk_contact_merge_conflict_registration_id_portal_registration"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_merge_conflict")),
    )
    op.create_index(
        op.f("ix_contact_merge_conflict_contact_id"), "contact_merge_conflict", ["contact_id"], unique=False
    )
    op.create_table(
        "sign_in_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("attempted_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_attempt")),
    )
    op.create_index(
        "ix_sign_in_attempt_address", "sign_in_attempt", ["client_address", "attempted_at"], unique=False
    )
    op.create_index("ix_sign_in_attempt_email", "sign_in_attempt", ["email", "attempted_at"], unique=False)


def _fill_email_domains() -> None:
    conn = op.get_bind()
    contact = sa.table("contact", sa.column("id", sa.Integer), sa.column("email_domain", sa.String))
    rows = conn.execute(sa.text("SELECT id, email FROM contact WHERE email IS NOT NULL")).all()
    updates = []
    for contact_id, address in rows:
        try:
            updates.append({"cid": contact_id, "d": email_domain(address)})
        except ValueError:
            continue
    stmt = contact.update().where(contact.c.id == sa.bindparam("cid")).values(email_domain=sa.bindparam("d"))
    for start in range(0, len(updates), 5000):
        conn.execute(stmt, updates[start : start + 5000])


def downgrade() -> None:
    op.drop_index("ix_sign_in_attempt_email", table_name="sign_in_attempt")
    op.drop_index("ix_sign_in_attempt_address", table_name="sign_in_attempt")
    op.drop_table("sign_in_attempt")
    op.drop_index(op.f("ix_contact_merge_conflict_contact_id"), table_name="contact_merge_conflict")
    op.drop_table("contact_merge_conflict")
    op.drop_index(op.f("ix_portal_registration_email"), table_name="portal_registration")
    op.drop_table("portal_registration")
    op.drop_index("uq_contact_portal_login_lower", table_name="contact")
    op.drop_index(op.f("ix_contact_email_domain"), table_name="contact")
    op.drop_column("contact", "portal_password_hash")  # in place (SQLite ≥ 3.35)
    op.drop_column("contact", "email_domain")
