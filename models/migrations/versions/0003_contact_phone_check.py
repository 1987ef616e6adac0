"""contact phone checked when written: phone_checked and phone_valid

Opening a case used to parse the owner's number with libphonenumber every time (about half the Python
time of queueing an SMS). The check now happens when the contact is written (an ORM listener); this
migration checks the contacts already there. A contact changed by a writer that bypasses the ORM keeps a
stale check, which the drain does not trust: it checks that number itself each time.

Revision ID: 0003
Revises: 0002

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite has it): batch mode would reflect the table first, and SQLite's reflection
    # warns that it skips the expression index ix_contact_email_lower, on every fresh database.
    op.add_column("contact", sa.Column("phone_checked", sa.String(length=32), nullable=True))
    op.add_column("contact", sa.Column("phone_valid", sa.Boolean(), nullable=True))
    # Check the numbers already stored, a chunk at a time (libphonenumber: tens of µs per number).
    from carepath.rules.messaging import is_e164

    conn = op.get_bind()
    contact = sa.table(
        "contact",
        sa.column("id", sa.Integer),
        sa.column("phone", sa.String),
        sa.column("phone_checked", sa.String),
        sa.column("phone_valid", sa.Boolean),
    )
    update = (
        contact.update()
        .where(contact.c.id == sa.bindparam("b_id"))
        .values(phone_checked=sa.bindparam("b_phone"), phone_valid=sa.bindparam("b_valid"))
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.select(contact.c.id, contact.c.phone)
            .where(contact.c.id > last, contact.c.phone.is_not(None))
            .order_by(contact.c.id)
            .limit(5000)
        ).all()
        if not rows:
            break
        conn.execute(update, [{"b_id": r.id, "b_phone": r.phone, "b_valid": is_e164(r.phone)} for r in rows])
        last = rows[-1].id


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+): batch mode would rebuild contact from its reflection, which has no
    # expression indexes, and so lose ix_contact_email_lower.
    op.drop_column("contact", "phone_valid")
    op.drop_column("contact", "phone_checked")
