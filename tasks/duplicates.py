"""Likely duplicate contacts: blocks found in SQL, pairs scored in Python only within a block.

Three blocking keys, each one set-based statement (a CTE of keys, grouped to the blocks of 2 to `max_block`
contacts): the same phone; the same name within an account; the same email domain and squashed local part
(j.smith+shop@ and jsmith@). A key shared by more than `max_block` contacts (a switchboard number, a
role address) says little about any pair and would cost n² comparisons: such blocks are skipped. Only
contacts not merged into another are considered.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Select, String, and_, case, cast, func, literal, select
from sqlalchemy.orm import Session

from carepath.bulk import in_list
from carepath.db import is_postgres
from carepath.rules.duplicates import ContactFacts, score_pair
from models import Contact


@dataclass(frozen=True)
class DuplicatePair:
    a: int  # the older contact (lower id): the natural master
    b: int
    score: float
    why: list[str]

    def as_json(self) -> dict:
        return {"a": self.a, "b": self.b, "score": self.score, "why": self.why}


def find_duplicates(
    *, session: Session, min_score: float = 0.5, max_block: int = 50, limit: int | None = None
) -> list[DuplicatePair]:
    """Scored likely-duplicate pairs, best first (ties: older pairs first)."""
    blocks: dict[tuple[str, str], list[int]] = defaultdict(list)
    for name, keyed in _blocking_keys(session).items():
        for contact_id, key in session.execute(_blocks(keyed, max_block)):
            blocks[(name, str(key))].append(contact_id)
    ids = sorted({i for members in blocks.values() for i in members})
    facts = _facts(session, ids)
    pairs: dict[tuple[int, int], DuplicatePair] = {}
    for members in blocks.values():
        members = sorted(members)
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                if (a, b) in pairs:
                    continue
                score, why = score_pair(facts[a], facts[b])
                if score >= min_score:
                    pairs[(a, b)] = DuplicatePair(a, b, score, why)
    ranked = sorted(pairs.values(), key=lambda p: (-p.score, p.a, p.b))
    return ranked[:limit] if limit else ranked


def _blocking_keys(session: Session) -> dict[str, Select]:
    """Blocking key → `SELECT id, key` over the contacts that have one."""
    c = Contact.__table__.c
    live = c.merged_into_id.is_(None)
    name_key = _cat(func.lower(func.trim(c.first_name)), literal(" "), func.lower(func.trim(c.last_name)))
    return {
        "phone": select(c.id, c.phone.label("k")).where(live, c.phone.is_not(None), c.phone != ""),
        "name": select(c.id, _cat(cast(c.account_id, String), literal(":"), name_key).label("k")).where(
            live, c.account_id.is_not(None)
        ),
        "email": select(c.id, _squashed_email(session, c.email).label("k")).where(
            live, c.email.is_not(None), c.email.contains("@")
        ),
    }


def _cat(*parts):
    """SQL string concatenation (`||` on both dialects, whatever type SQLAlchemy guessed for each part)."""
    joined = parts[0]
    for part in parts[1:]:
        joined = joined.op("||")(part)
    return joined


def _squashed_email(session: Session, email):
    """domain + "/" + local part without its +tag, dots, hyphens and underscores, lower-cased (SQL)."""
    e = func.lower(func.trim(email))
    if is_postgres(session):
        local, domain = func.split_part(e, "@", 1), func.split_part(e, "@", 2)
        untagged = func.split_part(local, "+", 1)
    else:
        at = func.instr(e, "@")
        local, domain = func.substr(e, 1, at - 1), func.substr(e, at + 1)
        plus = func.instr(local, "+")
        untagged = case((plus > 0, func.substr(local, 1, plus - 1)), else_=local)
    squashed = func.replace(func.replace(func.replace(untagged, ".", ""), "-", ""), "_", "")
    return _cat(domain, literal("/"), squashed)


def _blocks(keyed: Select, max_block: int) -> Select:
    """The (id, key) rows whose key 2 to `max_block` contacts share."""
    keys = keyed.cte("keys")
    sizes = (
        select(keys.c.k)
        .group_by(keys.c.k)
        .having(and_(func.count() >= 2, func.count() <= max_block))
        .cte("blocks")
    )
    return select(keys.c.id, keys.c.k).join(sizes, sizes.c.k == keys.c.k).order_by(keys.c.k, keys.c.id)


def _facts(session: Session, ids: list[int]) -> dict[int, ContactFacts]:
    c = Contact.__table__.c
    facts: dict[int, ContactFacts] = {}
    for start in range(0, len(ids), 10_000):
        chunk = ids[start : start + 10_000]
        rows = session.execute(
            select(c.id, c.first_name, c.last_name, c.email, c.phone, c.account_id).where(
                in_list(c.id, chunk, session)
            )
        )
        for r in rows:
            facts[r.id] = ContactFacts(r.id, r.first_name, r.last_name, r.email, r.phone, r.account_id)
    return facts
