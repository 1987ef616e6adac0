"""Email addresses and domains compared the way people mean them: trimmed, case-insensitive, and an
internationalised domain equal to its ASCII (punycode) form — `Ελλάδα.GR` is `xn--hxakic4aa.gr`."""

from __future__ import annotations

import idna


def normalise_domain(domain: str) -> str:
    """A domain in its one stored form: trimmed, lower case, ASCII (IDNA 2008 with UTS #46 mapping).
    Raises ValueError for something that is not a domain."""
    d = domain.strip().strip(".").lower()
    if not d or "@" in d or " " in d:
        raise ValueError(f"not a domain: {domain!r}")
    try:
        return idna.encode(d, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"not a domain: {domain!r} ({exc})") from exc


def normalise_email(address: str) -> str:
    """An address in its one stored form: trimmed, local part lower-cased, domain normalised.
    Raises ValueError for something that is not an address."""
    a = address.strip()
    local, at, domain = a.rpartition("@")
    if not at or not local or any(c.isspace() for c in local):
        raise ValueError(f"not an email address: {address!r}")
    return f"{local.lower()}@{normalise_domain(domain)}"


def email_domain(address: str) -> str:
    """The normalised domain of an address."""
    return normalise_email(address).rpartition("@")[2]
