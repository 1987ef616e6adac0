"""Portal sign-in: "register first" told apart from "wrong password", behind a rate limit kept in the database
(so it holds across receiver workers and processes). Passwords are Argon2id hashes (argon2-cffi)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from carepath.db import is_postgres
from carepath.rules.domains import normalise_email
from carepath.rules.registration import SignInLimits, sign_in_reason
from carepath.settings import Settings
from models import Contact, SignInAttempt
from models.base import utcnow

FAILURES = ("not_registered", "wrong_password")
_hasher = PasswordHasher()  # Argon2id with the library's RFC 9106 defaults


def hash_password(password: str) -> str:
    """An Argon2id PHC string for a password (what the portal sends, or `carepath register --password`)."""
    if not password:
        raise ValueError("a password cannot be empty")
    return _hasher.hash(password)


def limits_from(settings: Settings) -> SignInLimits:
    return SignInLimits(
        per_email=settings.sign_in_max_failures_per_email,
        per_address=settings.sign_in_max_failures_per_address,
        window_minutes=settings.sign_in_window_minutes,
    )


@dataclass(frozen=True)
class SignInResult:
    ok: bool
    reason: str | None

    def as_json(self) -> dict:
        return {"ok": self.ok, "reason": self.reason}


def sign_in(
    *,
    session: Session,
    email: str,
    password: str,
    client_address: str,
    limits: SignInLimits,
    now: datetime | None = None,
) -> SignInResult:
    """Check a portal sign-in and record the attempt. Raises ValueError for something that is not an email.
    Never commits."""
    address = normalise_email(email)
    now = now or utcnow()
    since = now - timedelta(minutes=limits.window_minutes)
    if is_postgres(session):
        # Count-then-record under a lock per email and per client address (held to the end of the
        # transaction, always in this order): concurrent attempts cannot each slip one past the limit.
        # SQLite has one writer at a time already (BEGIN IMMEDIATE).
        for kind, key in ((1, address), (2, client_address)):
            session.execute(text("SELECT pg_advisory_xact_lock(:k, hashtext(:v))"), {"k": kind, "v": key})
    # A success clears an email's failures; an address's are counted whatever it signed into.
    last_ok = session.scalar(
        select(func.max(SignInAttempt.attempted_at)).where(
            SignInAttempt.email == address, SignInAttempt.outcome == "ok", SignInAttempt.attempted_at >= since
        )
    )
    email_failures = _failures(session, SignInAttempt.email == address, max(since, last_ok or since))
    address_failures = _failures(session, SignInAttempt.client_address == client_address, since)
    row = session.execute(
        select(Contact.id, Contact.portal_password_hash).where(
            func.lower(Contact.portal_login) == address, Contact.active.is_(True)
        )
    ).first()
    limited = email_failures >= limits.per_email or address_failures >= limits.per_address
    password_ok = row is not None and not limited and _verify(row.portal_password_hash, password)
    reason = sign_in_reason(
        registered=row is not None,
        password_ok=password_ok,
        email_failures=email_failures,
        address_failures=address_failures,
        limits=limits,
    )
    session.add(
        SignInAttempt(
            email=address[:254], client_address=client_address[:64], outcome=reason or "ok", attempted_at=now
        )
    )
    if reason is None and row.portal_password_hash and _hasher.check_needs_rehash(row.portal_password_hash):
        session.execute(
            update(Contact).where(Contact.id == row.id).values(portal_password_hash=hash_password(password))
        )
    session.flush()
    return SignInResult(reason is None, reason)


def set_password(*, session: Session, email: str, password: str) -> bool:
    """Set the password of the login for this email (the end of the reset flow); False: no such login."""
    address = normalise_email(email)
    changed = session.execute(
        update(Contact)
        .where(func.lower(Contact.portal_login) == address)
        .values(portal_password_hash=hash_password(password))
        .execution_options(synchronize_session=False)
    ).rowcount
    return changed == 1


def _failures(session: Session, who, since: datetime) -> int:
    return session.scalar(
        select(func.count())
        .select_from(SignInAttempt)
        .where(who, SignInAttempt.outcome.in_(FAILURES), SignInAttempt.attempted_at >= since)
    )


def _verify(stored: str | None, password: str) -> bool:
    if not stored:
        return False  # a login whose password was never set: the reset flow sets one
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def prune_attempts(*, session: Session, older_than: datetime, limit: int = 50_000) -> int:
    """Forget sign-in attempts recorded before `older_than` (past every rate-limit window), at most `limit`
    per call so one sweep stays short. Returns how many went."""
    old = select(SignInAttempt.id).where(SignInAttempt.attempted_at < older_than).limit(limit)
    return session.execute(delete(SignInAttempt).where(SignInAttempt.id.in_(old))).rowcount or 0
