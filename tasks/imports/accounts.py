"""Account imports: upsert by account number; name, service tier and an email domain.

An existing account is updated only where the file says something else; an empty tier leaves the stored one (a
new account is standard); a domain is added to the account's domains (never taken from another account: that
row is quarantined as `domain_is_free`). A row that changes nothing is not counted as loaded.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from carepath.bulk import bulk_insert, in_list
from carepath.quality import ROW
from models import Account, AccountDomain, Tier
from models.base import utcnow
from tasks.imports.contacts import _domain
from tasks.imports.run import KEY, ImportKind, objects

DOMAIN = "_domain"


def derive(session: Session, frame: pd.DataFrame) -> dict[int, list[str]]:
    """KEY (the account number), the normalised domain, and whether it is free for this account."""
    keys = [n or None for n in frame["account_number"]]
    normalised = [_domain(d) if d else None for d in frame["domain"]]
    frame[KEY], frame[DOMAIN] = objects(frame, keys), objects(frame, normalised)
    domains = {d for d in normalised if d}
    holders = (
        dict(
            session.execute(
                select(AccountDomain.domain, Account.account_number)
                .join(Account, Account.id == AccountDomain.account_id)
                .where(in_list(AccountDomain.domain, domains, session))
            ).all()
        )
        if domains
        else {}
    )
    free, claimed = [], {}
    for key, d in zip(keys, normalised):
        if d is None:
            free.append(None)
            continue
        holder = holders.get(d) or claimed.setdefault(d, key)  # an earlier row of the chunk claims it too
        free.append(holder == key)
    frame["domain__free"] = objects(frame, free)
    # A domain the suite's pattern lets through but that is not one (IDNA says no).
    return {
        row: ["domain_is_valid"] for row, d, n in zip(frame[ROW], frame["domain"], normalised) if d and not n
    }


def load(session: Session, good: pd.DataFrame) -> int:
    """Insert new accounts, update changed ones, add new domains; returns how many accounts changed."""
    numbers = list(good[KEY])
    a, ad = Account.__table__.c, AccountDomain.__table__.c
    found = {
        r.account_number: r
        for r in session.execute(
            select(a.id, a.account_number, a.name, a.tier).where(in_list(a.account_number, numbers, session))
        )
    }
    has = (
        set(
            session.execute(
                select(ad.account_id, ad.domain).where(
                    in_list(ad.account_id, [r.id for r in found.values()], session)
                )
            ).tuples()
        )
        if found
        else set()
    )
    now, inserts, updates, changed = utcnow(), [], [], set()
    for number, name, tier in zip(good[KEY], good["name"], good["tier"]):
        tier = tier.lower() or None
        row = found.get(number)
        if row is None:
            inserts.append(
                {
                    "name": name,
                    "account_number": number,
                    "tier": tier or Tier.STANDARD.value,
                    "created_at": now,
                }
            )
        elif (name, tier or row.tier) != (row.name, row.tier):
            updates.append({"b_id": row.id, "name": name, "tier": tier or row.tier})
            changed.add(number)
    ids = {r.account_number: r.id for r in found.values()}
    if inserts:
        made = bulk_insert(
            session,
            Account.__table__,
            inserts,
            conflict_columns=["account_number"],
            returning=["id", "account_number"],
        )
        ids.update({r.account_number: r.id for r in made})
        changed.update(r.account_number for r in made)
    if updates:
        session.execute(update(Account.__table__).where(a.id == bindparam("b_id")), updates)
    domains = [
        {"account_id": ids[n], "domain": d}
        for n, d in zip(good[KEY], good[DOMAIN])
        if d and n in ids and (ids[n], d) not in has
    ]
    if domains:
        added = bulk_insert(
            session, AccountDomain.__table__, domains, conflict_columns=["domain"], returning=["account_id"]
        )
        by_id = {v: k for k, v in ids.items()}
        changed.update(by_id[r.account_id] for r in added)
    return len(changed)


ACCOUNTS = ImportKind(
    name="accounts",
    columns=("account_number", "name", "tier", "domain"),
    formats=("csv",),
    key="account_number",
    derive=derive,
    load=load,
)
