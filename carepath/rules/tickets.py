"""Ticket numbers and tracking tokens."""

from __future__ import annotations

import secrets

# Crockford's base32: no I, L, O or U, so a ticket read aloud over the phone is unambiguous.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ticket_number() -> str:
    """A human-readable, random ticket number such as CAS-7K3MQ-9XZ2B (50 bits: collisions are rare)."""
    n = int.from_bytes(secrets.token_bytes(7), "big") >> 6  # 50 random bits, ten base-32 digits
    chars = "".join(_ALPHABET[(n >> (5 * i)) & 31] for i in range(10))
    return f"CAS-{chars[:5]}-{chars[5:]}"


def new_tracking_token() -> str:
    """An unguessable per-case token for the customer's tracking link."""
    return secrets.token_urlsafe(24)
