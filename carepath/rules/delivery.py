"""Delivery tracking rules: how provider callbacks move a message's status, and what they mean."""

from __future__ import annotations

# A message only moves forward: queued → sending → sent → a final state. Final states do not change, so a
# late or out-of-order callback ("sent" after "delivered") never moves a message backwards.
_RANK = {
    "queued": 0,
    "sending": 1,
    "unknown": 1,  # a provider's word on it settles it
    "sent": 2,
    "delivered": 3,
    "undelivered": 3,
    "failed": 3,
    "bounced": 3,
    "dropped": 3,
    "blocked": 3,
}

# Twilio's message statuses → ours.
TWILIO_STATUS = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "sending",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "failed",
}

TWILIO_ERROR_REASONS: dict[str, str] = {
    "21610": "recipient has opted out (replied STOP)",
    "30003": "unreachable destination handset (switched off or out of coverage)",
    "30005": "unknown destination handset (the number does not exist)",
    "30006": "landline or unreachable carrier",
    "30007": "message filtered by the carrier (spam or policy)",
    "30008": "unknown error from the carrier",
}

SMS_OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "UNSUBSCRIBE", "END", "QUIT", "STOPALL", "REVOKE", "OPTOUT", "CANCEL"}
)
SMS_OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})

# SendGrid event → (our status or None to keep it, whether the contact opts out of email).
SENDGRID_EVENTS: dict[str, tuple[str | None, bool]] = {
    "processed": ("sent", False),
    "delivered": ("delivered", False),
    "deferred": (None, False),
    "bounce": ("bounced", False),
    "dropped": ("dropped", False),
    "spamreport": (None, True),
    "unsubscribe": (None, True),
    "group_unsubscribe": (None, True),
    "open": (None, False),
    "click": (None, False),
}


def advance_status(current: str, incoming: str) -> str:
    """The status after a callback: the incoming one only if it is further along, else the current one."""
    return incoming if _RANK.get(incoming, -1) > _RANK.get(current, -1) else current


def twilio_error_reason(code: str | int | None) -> str | None:
    """A human reason for a Twilio error code; unknown codes get a generic one."""
    if code in (None, "", "0", 0):
        return None
    code = str(code)
    return TWILIO_ERROR_REASONS.get(code, f"Twilio error {code}")


def sms_keyword(body: str | None) -> str | None:
    """ "opt_out" or "opt_in" when an inbound SMS is one of the carrier keywords, else None."""
    word = (body or "").strip().upper().rstrip(".!")
    if word in SMS_OPT_OUT_KEYWORDS:
        return "opt_out"
    if word in SMS_OPT_IN_KEYWORDS:
        return "opt_in"
    return None


def should_notify(to_status: str, notify_statuses: list[str] | tuple[str, ...]) -> bool:
    """Whether a case's move to `to_status` is one the customer hears about (default: resolved only)."""
    return to_status in notify_statuses
