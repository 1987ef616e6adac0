"""Rules for outbound messages: who may be contacted, and how provider errors are classed."""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

# Line breaks and other control characters: in a header they would end it and start another (injection).
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")


def one_line(text: str | None) -> str:
    """Header text (an email subject) as one line: every run of control characters becomes one space."""
    return _CONTROL.sub(" ", text or "").strip()


@lru_cache(maxsize=65536)
def is_e164(phone: str | None) -> bool:
    """A phone number in E.164 form that libphonenumber considers valid."""
    if not phone or not phone.startswith("+"):
        return False
    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return False
    return (
        phonenumbers.is_valid_number(parsed)
        and phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == phone
    )


def sms_block_reason(
    *, phone: str | None, consent: str | None, phone_valid: bool | None = None
) -> str | None:
    """Why an SMS must not be sent to this contact, or None when it may be.

    `consent` is the contact's SMS consent status ("opted_in", "opted_out") or None when none was given:
    texting needs an explicit opt-in. `phone_valid` is the result of checking this very number earlier
    (when the contact was written), or None to check it now.
    """
    if consent == "opted_out":
        return "consent: contact opted out of SMS"
    if consent != "opted_in":
        return "consent: no SMS opt-in on record"
    if not phone:
        return "address: contact has no mobile phone"
    if not (is_e164(phone) if phone_valid is None else phone_valid):
        return f"address: phone number {phone!r} is not a valid E.164 number"
    return None


def email_block_reason(*, email: str | None, consent: str | None) -> str | None:
    """Why an email must not be sent: service emails need no opt-in, but an opt-out is honoured."""
    if consent == "opted_out":
        return "consent: contact opted out of email"
    if not email or "@" not in email:
        return "address: contact has no email address"
    return None


# Twilio error codes that end a send for good, with a reason an operator understands.
TWILIO_PERMANENT_ERRORS: dict[int, str] = {
    21211: "invalid 'To' phone number",
    21408: "permission to send to this region is not enabled",
    21610: "recipient has opted out (replied STOP)",
    21612: "the 'To' number cannot be reached from the 'From' number",
    21614: "'To' number is not a mobile number",
    21617: "message body exceeds the 1600 character limit",
    20003: "authentication failed: check the Twilio credentials",
}

TWILIO_OPT_OUT_CODE = 21610


def is_transient(*, http_status: int | None, code: int | None = None) -> bool:
    """Whether a refusal is worth retrying at once: 429 or 5xx with a status, or no connection at all.
    (No status after the request left is not a refusal: that outcome is unknown and is looked up.)"""
    if http_status is None:
        return True
    if code == 20429:
        return True
    return http_status == 429 or http_status >= 500
