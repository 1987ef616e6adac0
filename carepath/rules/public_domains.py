"""Public and free-mail domains: an address there identifies a person, never a company's account.

A seam: this small built-in set stands in until the maintained list in data/ (issue 16 §1) lands; then
`is_public_domain` reads that list and every caller (the web shop's qualification, duplicate scoring) follows.
"""

from __future__ import annotations

from carepath.rules.domains import normalise_domain

# The commonest free-mail providers, the demo customers' countries' own included (GR, PL, PT, IT, GB).
PUBLIC_DOMAINS: frozenset[str] = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "hotmail.co.uk",
        "live.com",
        "msn.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.gr",
        "icloud.com",
        "me.com",
        "aol.com",
        "gmx.com",
        "gmx.net",
        "proton.me",
        "protonmail.com",
        "mail.com",
        "yandex.com",
        "zoho.com",
        "otenet.gr",
        "wp.pl",
        "o2.pl",
        "onet.pl",
        "interia.pl",
        "sapo.pt",
        "libero.it",
        "virgilio.it",
        "btinternet.com",
    }
)


def is_public_domain(domain: str, public_domains: frozenset[str] = PUBLIC_DOMAINS) -> bool:
    """Whether an address at this domain belongs to a free-mail provider (compared normalised)."""
    try:
        return normalise_domain(domain) in public_domains
    except ValueError:
        return False
