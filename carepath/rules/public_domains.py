"""Public and free-mail domains: an address there identifies a person, never a company's account.

One list for every caller (portal registration, web-shop qualification, duplicate scoring): the maintained
data/public_email_domains.txt (settings: `public_email_domains_file`), read once."""

from __future__ import annotations

from collections.abc import Collection
from functools import lru_cache
from pathlib import Path

from carepath.rules.domains import normalise_domain

MAINTAINED_LIST = Path(__file__).resolve().parents[2] / "data" / "public_email_domains.txt"


@lru_cache(maxsize=4)
def load_public_domains(path: str = str(MAINTAINED_LIST)) -> frozenset[str]:
    """The domains of a list file: one per line, `#` starts a comment."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return frozenset(d for d in (line.split("#")[0].strip().lower() for line in lines) if d)


def is_public_domain(domain: str, public_domains: Collection[str] | None = None) -> bool:
    """A public/free-mail domain, or a subdomain of one (`mail.yahoo.co.uk` is Yahoo's), compared
    normalised; the maintained list unless another is given."""
    publics = load_public_domains() if public_domains is None else public_domains
    try:
        parts = normalise_domain(domain).split(".")
    except ValueError:
        return False
    return any(".".join(parts[i:]) in publics for i in range(len(parts) - 1))
