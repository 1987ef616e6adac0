"""Likely duplicate contacts: blocking keys and a score with reasons, in plain rules (no session, no Prefect).

Candidates are found by blocking (carepath/tasks/duplicates.py, in SQL): contacts that share a phone, a
normalised name within one account, or a domain and squashed local part. Only pairs within a block are scored
here; each rule that holds adds its reason, and the evidence combines as independent signals
(1 − Π(1 − weight)), so two weak signals outrank one.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from carepath.rules.public_domains import is_public_domain

# How strongly each signal alone says "the same person".
WEIGHTS: dict[str, float] = {
    "same email": 0.95,
    "near-identical email": 0.75,
    "near-identical free-mail address": 0.35,
    "same phone": 0.6,
    "same name in account": 0.6,
    "same name": 0.2,
}


@dataclass(frozen=True)
class ContactFacts:
    """What scoring needs of a contact."""

    id: int
    first_name: str
    last_name: str
    email: str | None
    phone: str | None
    account_id: int | None


def normalise_name(first: str | None, last: str | None) -> str:
    """A name as people compare it: case, accents, punctuation and spacing ignored ("Éléni  O'Brien" →
    "eleni obrien")."""
    text = unicodedata.normalize("NFKD", f"{first or ''} {last or ''}")
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = re.sub(r"[^\w\s]", "", text)
    return " ".join(text.split())


def squash_local(local: str) -> str:
    """An address's local part with what people vary dropped: case, a +tag, dots, hyphens and underscores
    ("J.Smith+shop" → "jsmith")."""
    base = local.strip().lower().split("+", 1)[0]
    return re.sub(r"[._-]", "", base)


def email_key(address: str | None) -> tuple[str, str] | None:
    """(domain, squashed local part) of an address, or None when it is not one."""
    if not address or "@" not in address:
        return None
    local, _, domain = address.strip().rpartition("@")
    if not local or not domain:
        return None
    return domain.strip().lower(), squash_local(local)


def phone_key(phone: str | None) -> str | None:
    """A phone as digits with a leading + (spaces, dots, dashes and brackets dropped); None if too short to
    mean anyone."""
    if not phone:
        return None
    digits = re.sub(r"\D", "", phone)
    return f"+{digits}" if len(digits) >= 7 else None


def score_pair(a: ContactFacts, b: ContactFacts) -> tuple[float, list[str]]:
    """How likely two contacts are one person (0–1), and why."""
    why: list[str] = []
    ka, kb = email_key(a.email), email_key(b.email)
    if ka and kb:
        if a.email.strip().lower() == b.email.strip().lower():
            why.append("same email")
        elif ka == kb:
            free = shared_mailbox_domain(ka[0])
            why.append("near-identical free-mail address" if free else "near-identical email")
    pa = phone_key(a.phone)
    if pa and pa == phone_key(b.phone):
        why.append("same phone")
    na = normalise_name(a.first_name, a.last_name)
    if na and na == normalise_name(b.first_name, b.last_name):
        same_account = a.account_id is not None and a.account_id == b.account_id
        why.append("same name in account" if same_account else "same name")
    if why == ["same name"]:
        return 0.0, []  # a shared name alone (two John Smiths) is no evidence
    remaining = 1.0
    for reason in why:
        remaining *= 1.0 - WEIGHTS[reason]
    return round(1.0 - remaining, 3), why


def shared_mailbox_domain(domain: str) -> bool:
    """Whether near-identical addresses at this domain are weaker evidence: at a free-mail provider
    j.smith@ and jsmith@ may well be two people (except Gmail, which ignores dots)."""
    return is_public_domain(domain) and domain not in ("gmail.com", "googlemail.com")
