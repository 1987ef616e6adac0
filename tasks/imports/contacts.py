"""Contact imports: upsert by email (normalised as everywhere in Carepath), linked to an existing account.

A row matches the contact that signs in with its email, else the oldest active contact with that email (as the
portal registration matches people). A matched contact is updated only where the file says something else; an
empty phone or account number leaves the stored one as it is (the file does not know it). A row that changes
nothing is not counted as loaded, so importing the same file twice loads nothing the second time.
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd
from sqlalchemy import ARRAY, String, Text, bindparam, cast, func, or_, select, text, update
from sqlalchemy.orm import Session

from carepath.bulk import bulk_insert, in_list, pg_array_literal
from carepath.db import is_postgres
from carepath.quality import ROW
from carepath.rules.domains import normalise_domain
from carepath.rules.messaging import is_e164
from models import Account, Contact
from models.base import utcnow
from tasks.imports.run import KEY, ImportKind, objects
from tasks.registration import email_spellings

ACCOUNT_ID = "_account_id"


@lru_cache(maxsize=4096)
def _domain(domain: str) -> str | None:
    try:
        return normalise_domain(domain)
    except ValueError:
        return None


def normalised_email(address: str) -> str | None:
    """`carepath.rules.domains.normalise_email`, with the domains' IDNA work cached (a file has few domains)."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or any(c.isspace() for c in local):
        return None
    d = _domain(domain)
    return f"{local.lower()}@{d}" if d else None


def derive(session: Session, frame: pd.DataFrame) -> dict[int, list[str]]:
    """KEY (the normalised email), the account each account number names, and whether it exists."""
    keys = [normalised_email(e) if e else None for e in frame["email"]]
    frame[KEY] = objects(frame, keys)
    numbers = {n for n in frame["account_number"] if n}
    ids = (
        dict(
            session.execute(
                select(Account.account_number, Account.id).where(
                    in_list(Account.account_number, numbers, session)
                )
            ).all()
        )
        if numbers
        else {}
    )
    frame[ACCOUNT_ID] = objects(frame, [ids.get(n) if n else None for n in frame["account_number"]])
    frame["account_number__known"] = objects(
        frame, [(n in ids) if n else None for n in frame["account_number"]]
    )
    # An address the suite's pattern lets through but Carepath cannot normalise (an IDNA-invalid domain).
    return {row: ["email_is_valid"] for row, key in zip(frame[ROW], keys) if key is None}


def _lower_in(column, values: list[str], session: Session):
    """`lower(column) IN values` (on PostgreSQL one array parameter, `= ANY(…)`, which the lower() index serves)."""
    lowered = func.lower(column, type_=String)
    if is_postgres(session):
        return lowered.op("=")(
            func.any(cast(bindparam(None, pg_array_literal(values), type_=Text), ARRAY(Text)))
        )
    return lowered.in_(values)


def _existing(session: Session, emails: list[str]) -> dict[str, tuple]:
    """Each email's contact: the one signing in with it, else the oldest active one with it."""
    c = Contact.__table__.c
    by_login, by_email = {}, {}
    for start in range(0, len(emails), 5000):  # SQLite binds each value: stay well under its limit
        some = emails[start : start + 5000]
        rows = session.execute(
            select(c.id, c.email, c.portal_login, c.active, c.first_name, c.last_name, c.phone, c.account_id)
            .where(
                or_(
                    _lower_in(c.portal_login, some, session),
                    _lower_in(c.email, [s for e in some for s in email_spellings(e)], session),
                )
            )
            .order_by(c.id)
        ).all()
        for r in rows:
            if r.portal_login:
                by_login.setdefault(normalised_email(r.portal_login), r)
            if r.active and r.email:
                by_email.setdefault(normalised_email(r.email), r)
    return {e: by_login.get(e) or by_email.get(e) for e in emails if by_login.get(e) or by_email.get(e)}


def load(session: Session, good: pd.DataFrame) -> int:
    """Insert new contacts, update changed ones; returns how many were inserted or changed."""
    if is_postgres(session):
        # Contacts have no unique email (people share addresses): imports running at once take turns here.
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext('carepath.import.contacts'))"))
    existing = _existing(session, list(good[KEY]))
    now, inserts, updates = utcnow(), [], []
    for key, first, last, phone, account_id in zip(
        good[KEY], good["first_name"], good["last_name"], good["phone"], good[ACCOUNT_ID]
    ):
        found = existing.get(key)
        if found is None:
            inserts.append(
                {
                    "first_name": first,
                    "last_name": last,
                    "email": key,
                    "email_domain": key.rpartition("@")[2],
                    "phone": phone or None,
                    "phone_checked": phone or None,
                    "phone_valid": is_e164(phone) if phone else None,
                    "language": "en",
                    "account_id": account_id,
                    "active": True,
                    "created_at": now,
                }
            )
            continue
        wanted = (first, last, phone or found.phone, found.account_id if account_id is None else account_id)
        if wanted != (found.first_name, found.last_name, found.phone, found.account_id):
            updates.append(
                {
                    "b_id": found.id,
                    "first_name": wanted[0],
                    "last_name": wanted[1],
                    "phone": wanted[2],
                    # The phone check the ORM keeps on every write (models.customers), kept here too.
                    "phone_checked": wanted[2],
                    "phone_valid": is_e164(wanted[2]) if wanted[2] else None,
                    "account_id": wanted[3],
                }
            )
    bulk_insert(session, Contact.__table__, inserts)
    if updates:
        t = Contact.__table__
        session.execute(update(t).where(t.c.id == bindparam("b_id")), updates)
    return len(inserts) + len(updates)


CONTACTS = ImportKind(
    name="contacts",
    columns=("email", "first_name", "last_name", "phone", "account_number"),
    formats=("csv",),
    key="email",
    derive=derive,
    load=load,
)
