"""Consent per contact and channel: one current row each, changed by keywords, callbacks and refusals."""

from __future__ import annotations

from sqlalchemy.orm import Session

from carepath.db import dialect_insert
from carepath.rules.messaging import TWILIO_OPT_OUT_CODE
from models import Consent, ConsentStatus, MessageChannel
from models.base import utcnow


def set_consent(
    *, session: Session, contact_id: int, channel: MessageChannel, status: ConsentStatus, source: str
) -> None:
    """Record a contact's consent on a channel (one current row per contact and channel)."""
    stmt = dialect_insert(session, Consent).values(
        contact_id=contact_id, channel=channel, status=status, source=source, changed_at=utcnow()
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["contact_id", "channel"],
        set_={
            "status": stmt.excluded.status,
            "source": stmt.excluded.source,
            "changed_at": stmt.excluded.changed_at,
        },
    )
    session.execute(stmt)


def is_twilio_opt_out(code: int | str | None) -> bool:
    """Twilio's 21610: the recipient replied STOP (on a refused send, or in a delivery callback)."""
    return code is not None and str(code) == str(TWILIO_OPT_OUT_CODE)


def record_twilio_opt_out(*, session: Session, contact_id: int) -> None:
    """Twilio says this contact opted out (21610): no SMS to them until they reply START."""
    set_consent(
        session=session,
        contact_id=contact_id,
        channel=MessageChannel.SMS,
        status=ConsentStatus.OPTED_OUT,
        source=f"twilio:{TWILIO_OPT_OUT_CODE}",
    )
