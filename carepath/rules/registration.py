"""Portal registration (the merge plugin) and sign-in: plain rules, no I/O.

A registration whose email matches an active contact merges into it (or is refused when that contact already
signs in); otherwise the email's domain decides: a public or free-mail domain is refused, a domain known from
an account links the new contact to it, an unknown domain waits for review.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from carepath.rules.public_domains import is_public_domain

Outcome = Literal[
    "already_registered", "merged", "linked_to_account", "refused_public_domain", "review_unknown_domain"
]
SignInReason = Literal["not_registered", "wrong_password", "rate_limited"]

ALREADY_REGISTERED_MESSAGE = "this email is already registered: sign in or reset your password"


@dataclass(frozen=True)
class ExistingContact:
    """The active contact that has the registration's email."""

    id: int
    has_login: bool
    account_id: int | None


@dataclass(frozen=True)
class RegistrationDecision:
    outcome: Outcome
    contact_id: int | None  # the existing contact it concerns (already registered, merged)
    account_id: int | None  # the account the (new or existing) contact belongs to
    creates_contact: bool  # the registration's own contact is written (temporary, kept, or deactivated)
    new_contact_active: bool  # the registration's contact stays active (linked to an account)
    grants_login: bool  # someone gains the portal login
    notify_support: bool  # an internal notice (refused, review)
    notify_registrant: bool  # a polite email to the registrant (refused)


def decide_registration(
    existing: ExistingContact | None,
    domain: str,
    public_domains: Collection[str],
    known_domain_account: int | None,
) -> RegistrationDecision:
    """What a registration does, given the contact with its email (if any) and its (normalised) domain."""
    if existing is not None:
        if existing.has_login:
            return RegistrationDecision(
                "already_registered", existing.id, existing.account_id, False, False, False, False, False
            )
        return RegistrationDecision(
            "merged", existing.id, existing.account_id, True, False, True, False, False
        )
    if is_public_domain(domain, public_domains):
        return RegistrationDecision("refused_public_domain", None, None, True, False, False, True, True)
    if known_domain_account is not None:
        return RegistrationDecision(
            "linked_to_account", None, known_domain_account, True, True, True, False, False
        )
    return RegistrationDecision("review_unknown_domain", None, None, True, False, False, True, False)


@dataclass(frozen=True)
class FieldConflict:
    field: str
    kept: str
    offered: str


MERGED_FIELDS = ("first_name", "last_name", "phone", "language")


def merge_fields(
    existing: Mapping[str, str | None], offered: Mapping[str, str | None]
) -> tuple[dict[str, str], list[FieldConflict]]:
    """Fields the existing contact lacks, filled from the registration, and the values that disagree
    (compared trimmed and case-insensitively): the existing value is kept, the conflict is logged."""
    fill: dict[str, str] = {}
    conflicts: list[FieldConflict] = []
    for name in MERGED_FIELDS:
        new = (offered.get(name) or "").strip()
        if not new:
            continue
        old = (existing.get(name) or "").strip()
        if not old:
            fill[name] = new
        elif old.casefold() != new.casefold():
            conflicts.append(FieldConflict(name, old, new))
    return fill, conflicts


def render_refusal_email(*, first_name: str, email: str) -> tuple[str, str]:
    """The polite email to someone who registered with a public/free-mail address: (subject, body)."""
    return (
        "Your portal registration",
        f"Dear {first_name},\n\n"
        f"Thank you for registering for our customer portal with {email}. Portal accounts are opened for the "
        "email addresses of our customers' companies, and we could not match a personal email address to a "
        "customer account. Please register again with your work email address, or reply to this email and our "
        "support team will help you.\n\nKind regards,\nCustomer Support",
    )


def render_review_notice(*, outcome: str, email: str, name: str, contact_id: int | None) -> tuple[str, str]:
    """The internal notice to support about a registration that was refused or waits for review."""
    why = {
        "refused_public_domain": "was refused: the address is at a public or free-mail domain",
        "review_unknown_domain": "waits for review: its domain belongs to no known account",
    }.get(outcome, outcome)
    return (
        f"Portal registration {why.split(':')[0]}: {email}",
        f"The portal registration of {name} <{email}> {why}.\n"
        f"The contact (id {contact_id}) is deactivated. Link it to its account and activate it to give portal "
        "access, or leave it for the weekly clean-up.",
    )


@dataclass(frozen=True)
class SignInLimits:
    per_email: int = 5  # failures per email in the window
    per_address: int = 20  # failures per client address in the window
    window_minutes: int = 15


def sign_in_reason(
    *,
    registered: bool,
    password_ok: bool,
    email_failures: int,
    address_failures: int,
    limits: SignInLimits,
) -> SignInReason | None:
    """Why a sign-in fails (None: it succeeds). Past a limit every attempt is refused the same way, right
    password or not, so the clearer messages cannot be used to list emails or guess passwords."""
    if email_failures >= limits.per_email or address_failures >= limits.per_address:
        return "rate_limited"
    if not registered:
        return "not_registered"
    if not password_ok:
        return "wrong_password"
    return None
