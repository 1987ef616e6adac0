"""Merge a confirmed duplicate contact into its master: every record that points at the duplicate moves to the
master; the duplicate is deactivated and marked merged-into, never deleted (the weekly delete decides later).

What moves is found from the schema, not listed by hand: every foreign key to contact.id (cases — and with
them their activities —, messages, devices, leads, entitlements, and any table added later). A row that would
break a unique constraint at the master (a second consent for one channel, a second login-like row) stays with
the duplicate; consents are settled first by the rule below. Conflicting field values are logged and reported,
never silently overwritten: the master's values win, and only its empty fields are filled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Table, UniqueConstraint, and_, exists, func, select, update
from sqlalchemy.orm import Session, aliased

from carepath.masking import mask_text
from models import Activity, Base, Case, Consent, ConsentStatus, Contact
from models.base import utcnow

logger = logging.getLogger("carepath.merge")

# Fields the master takes from the duplicate when it has none; differing values are conflicts.
FIELDS = ("first_name", "last_name", "email", "phone", "language", "time_zone", "account_id")


class MergeRefused(Exception):
    """The pair cannot be merged (the same contact, an unknown one, or one already merged)."""


@dataclass
class MergeOutcome:
    master: int
    merged: int
    moved: dict[str, int] = field(default_factory=dict)
    filled: list[str] = field(default_factory=list)
    conflicts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "master": self.master,
            "merged": self.merged,
            "moved": self.moved,
            "filled": self.filled,
            "conflicts": self.conflicts,
        }


def merge_contacts(*, session: Session, master_id: int, duplicate_id: int) -> MergeOutcome:
    """Merge contact `duplicate_id` into `master_id`; MergeRefused says why a pair cannot be merged."""
    if master_id == duplicate_id:
        raise MergeRefused(f"contact {master_id} cannot be merged into itself")
    # Both rows locked, in id order, so two merges of overlapping pairs wait for each other, not deadlock.
    locked = {
        c.id: c
        for c in session.scalars(
            select(Contact)
            .where(Contact.id.in_([master_id, duplicate_id]))
            .order_by(Contact.id)
            .with_for_update()
        )
    }
    for contact_id in (master_id, duplicate_id):
        if contact_id not in locked:
            raise MergeRefused(f"no contact {contact_id}")
        if locked[contact_id].merged_into_id is not None:
            raise MergeRefused(
                f"contact {contact_id} is already merged into {locked[contact_id].merged_into_id}"
            )
    master, duplicate = locked[master_id], locked[duplicate_id]
    outcome = MergeOutcome(master=master.id, merged=duplicate.id)
    _settle_fields(master, duplicate, outcome)
    _move_login(session, master, duplicate, outcome)
    outcome.moved["activity"] = session.scalar(
        select(func.count())
        .select_from(Activity)
        .join(Case, Case.id == Activity.case_id)
        .where(Case.contact_id == duplicate.id)
    )  # they follow their cases
    outcome.moved["consent"] = _settle_consents(session, master.id, duplicate.id)
    for column in _references_to_contact():
        if column.table.name == "consent":
            continue
        moved = _move_references(session, column, master.id, duplicate.id)
        key = column.table.name if _single_reference(column) else f"{column.table.name}.{column.name}"
        key = "earlier_merges" if column.table.name == "contact" else key
        outcome.moved[key] = outcome.moved.get(key, 0) + moved
    duplicate.active = False
    duplicate.merged_into_id, duplicate.merged_at = master.id, utcnow()
    session.flush()
    if outcome.conflicts:
        logger.warning(
            "merged contact %s into %s; conflicting values kept from the master: %s",
            duplicate.id,
            master.id,
            mask_text(outcome.conflicts),  # the values kept and dropped are a customer's phone and email
        )
    return outcome


def _settle_fields(master: Contact, duplicate: Contact, outcome: MergeOutcome) -> None:
    for name in FIELDS:
        mine, theirs = getattr(master, name), getattr(duplicate, name)
        if theirs in (None, ""):
            continue
        if mine in (None, ""):
            setattr(master, name, theirs)
            outcome.filled.append(name)
        elif _differs(name, mine, theirs):
            outcome.conflicts[name] = {"master": mine, "merged": theirs}


def _differs(name: str, mine: Any, theirs: Any) -> bool:
    if isinstance(mine, str) and isinstance(theirs, str):
        return mine.strip().casefold() != theirs.strip().casefold()
    return mine != theirs


def _move_login(session: Session, master: Contact, duplicate: Contact, outcome: MergeOutcome) -> None:
    """The duplicate's portal login moves when the master has none (the person keeps signing in)."""
    if duplicate.portal_login and master.portal_login is None:
        login, duplicate.portal_login = duplicate.portal_login, None
        session.flush()  # the unique login is released before the master takes it
        master.portal_login = login
        session.flush()
        outcome.moved["portal_login"] = 1
    elif duplicate.portal_login:
        outcome.conflicts["portal_login"] = {"master": master.portal_login, "merged": duplicate.portal_login}
        outcome.moved["portal_login"] = 0
    else:
        outcome.moved["portal_login"] = 0


def _settle_consents(session: Session, master_id: int, duplicate_id: int) -> int:
    """A channel only the duplicate has a consent for moves; where both have one, the master keeps the more
    recent decision (on a tie, the stricter: opted out). Returns the consents moved or taken over."""
    mine = {c.channel: c for c in session.scalars(select(Consent).where(Consent.contact_id == master_id))}
    moved = 0
    for theirs in session.scalars(select(Consent).where(Consent.contact_id == duplicate_id)).all():
        current = mine.get(theirs.channel)
        if current is None:
            theirs.contact_id = master_id
            moved += 1
        elif _prevails(theirs, current):
            current.status, current.source, current.changed_at = (
                theirs.status,
                theirs.source,
                theirs.changed_at,
            )
            moved += 1
    session.flush()
    return moved


def _prevails(theirs: Consent, current: Consent) -> bool:
    if theirs.changed_at != current.changed_at:
        return theirs.changed_at > current.changed_at
    return theirs.status == ConsentStatus.OPTED_OUT and current.status != ConsentStatus.OPTED_OUT


def _references_to_contact() -> list[Column]:
    """Every column with a foreign key to contact.id, but the contact's own merged-into link."""
    contact_id = Contact.__table__.c.id
    found = []
    for table in Base.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column is contact_id and not (
                table is Contact.__table__ and fk.parent.name == "merged_into_id"
            ):
                found.append(fk.parent)
    # Earlier merges into the duplicate now point at the master: no chain of merged-into links.
    found.append(Contact.__table__.c.merged_into_id)
    return found


def _single_reference(column: Column) -> bool:
    return sum(1 for fk in column.table.foreign_keys if fk.column is Contact.__table__.c.id) == 1


def _unique_sets(column: Column) -> list[set[str]]:
    """The unique constraints and indexes of the column's table that include the column."""
    table: Table = column.table
    sets = [{c.name for c in uc.columns} for uc in table.constraints if _is_unique(uc)]
    sets += [{c.name for c in ix.columns} for ix in table.indexes if ix.unique]
    if column.unique:
        sets.append({column.name})
    return [s for s in sets if column.name in s]


def _is_unique(constraint: Any) -> bool:
    return isinstance(constraint, UniqueConstraint)


def _move_references(session: Session, column: Column, master_id: int, duplicate_id: int) -> int:
    """Point the duplicate's rows at the master, in one statement; a row that would collide with one the master
    already has under a unique constraint stays where it is."""
    table = column.table
    where = [column == duplicate_id]
    for unique in _unique_sets(column):
        other = aliased(table)
        same = [other.c[column.name] == master_id]
        same += [other.c[name] == table.c[name] for name in unique - {column.name}]
        where.append(~exists().where(and_(*same)))
    result = session.execute(
        update(table).where(*where).values({column.name: master_id}),
        execution_options={"synchronize_session": False},
    )
    return result.rowcount or 0
