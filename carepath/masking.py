"""Masking personal data for logs: phones and emails show enough to tell them apart, not enough to use them.

Pure functions, no I/O. Log lines go to files, to the Prefect API and to whoever reads them: a customer's
phone number or address is never written whole there (the database row has it for those allowed to read it).
"""

from __future__ import annotations

import re

# An email address inside free text (a reason, a warning): local part @ domain with a dot.
_EMAIL_IN_TEXT = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
# A phone number inside free text: E.164 (+ and 8 to 15 digits), spaces or dashes allowed between groups.
_PHONE_IN_TEXT = re.compile(r"\+\d[\d \-]{6,18}\d")
# The tracking link's token (`?t=…`): whoever holds it reads the case.
_TOKEN_IN_TEXT = re.compile(r"([?&]t=)[\w-]+")


def mask_phone(phone: str | None) -> str:
    """`+306912345678` → `+30*******678`: the country code and the last three digits."""
    if not phone:
        return ""
    digits = re.sub(r"\D", "", phone)
    if len(digits) <= 5:
        return "*" * len(digits)
    plus = "+" if phone.strip().startswith("+") else ""
    return f"{plus}{digits[:2]}{'*' * (len(digits) - 5)}{digits[-3:]}"


def mask_email(email: str | None) -> str:
    """`maria.papadopoulou@helios.example` → `m***@helios.example`: the first letter and the domain."""
    if not email:
        return ""
    local, at, domain = email.strip().rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_address(address: str | None) -> str:
    """An SMS or email recipient, masked as what it is."""
    return mask_email(address) if address and "@" in address else mask_phone(address)


def mask_text(text: object) -> str:
    """Free text (a reason, a summary, a message body) with every email, phone and tracking token masked."""
    masked = _EMAIL_IN_TEXT.sub(lambda m: mask_email(m.group(0)), str(text))
    masked = _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), masked)
    return _TOKEN_IN_TEXT.sub(r"\1***", masked)
