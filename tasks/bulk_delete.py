"""The weekly bulk delete of merged contacts, set-based: each batch is one DELETE whose own WHERE clause keeps
every contact something still refers to, and the deleted rows are archived in the same transaction, restorable
until the archive is purged.

The references are read from the model's foreign keys (every column that points at contact.id: cases, messages,
devices, consents, leads, entitlements, contacts merged into this one, portal registrations and merge conflicts,
and any table added later), plus the portal login; only the registration log's link to its temporary contact
does not keep one. Activities hang off cases, so a contact with an activity has a case and is kept by it.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import Table, bindparam, delete, select, text
from sqlalchemy.orm import Session

from carepath.db import is_postgres
from models import Base, BulkDeleteRun, Contact, ContactArchive
from models.base import UTCDateTime

ARTIFACT_IDS = 1000  # ids listed in a run's artifact; the archive holds them all


class UnknownArchive(Exception):
    """No bulk-delete run has that archive name (never made, or purged)."""


@dataclass
class BatchResult:
    last_id: int
    candidates: int  # merged, deactivated and old enough
    deleted: int  # of those, referenced by nothing (in a dry run: would be deleted)

    @property
    def kept(self) -> int:
        return self.candidates - self.deleted


@dataclass
class RestoreResult:
    restored: int
    id_taken: list[int] = field(default_factory=list)  # another contact has the id now
    reference_missing: list[int] = field(default_factory=list)  # its account or master contact is gone

    def as_json(self) -> dict:
        out: dict = {"restored": self.restored}
        if self.id_taken:
            out["id_taken"] = self.id_taken
        if self.reference_missing:
            out["reference_missing"] = self.reference_missing
        return out


def _contact() -> Table:
    return Contact.__table__  # type: ignore[return-value]


# References that do not keep a contact: the registration log's link to the temporary contact the portal made
# (and merged away) exists so that the weekly delete can remove it; the link is set to NULL (ON DELETE SET NULL),
# the registration itself stays.
NOT_KEEPING = frozenset({("portal_registration", "temporary_contact_id")})


def referencing_columns() -> list[tuple[str, str]]:
    """(table, column) of every foreign key to contact.id in the model that keeps a contact, in a stable order."""
    refs = []
    for table in Base.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column.table.name == "contact" and fk.column.name == "id":
                refs.append((table.name, fk.parent.name))
    return sorted(set(refs) - NOT_KEEPING)


# Merged into another contact, deactivated, and merged (or, never stamped, created) before the cutoff.
_CANDIDATE = (
    "contact.merged_into_id IS NOT NULL AND contact.active = false"
    " AND COALESCE(contact.merged_at, contact.created_at) < :cutoff"
)


def _unreferenced() -> str:
    """The SQL that keeps a contact anything still refers to; part of the DELETE itself."""
    guards = ["contact.portal_login IS NULL"]
    guards += [f"NOT EXISTS (SELECT 1 FROM {t} r WHERE r.{c} = contact.id)" for t, c in referencing_columns()]
    return " AND ".join(guards)


def _columns() -> list[str]:
    return [c.name for c in _contact().columns]


def _cutoff_param():
    return bindparam("cutoff", type_=UTCDateTime())


def _now_param(name: str = "now"):
    return bindparam(name, type_=UTCDateTime())


def cutoff_for(older_than_days: int, now: datetime | None = None) -> datetime:
    """Contacts merged before this are old enough to delete."""
    return (now or datetime.now(UTC)) - timedelta(days=older_than_days)


def start_run(
    *, session: Session, older_than_days: int, dry_run: bool, now: datetime | None = None
) -> BulkDeleteRun:
    """Record a run and name its archive (what `carepath restore` takes)."""
    now = now or datetime.now(UTC)
    run = BulkDeleteRun(
        archive=f"bulk-delete-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}" + ("-dry-run" if dry_run else ""),
        older_than_days=older_than_days,
        cutoff=cutoff_for(older_than_days, now),
        dry_run=dry_run,
        deleted=0,
        kept=0,
        started_at=now,
    )
    session.add(run)
    session.flush()
    return run


def next_window(
    *, session: Session, cutoff: datetime, after_id: int, batch_size: int
) -> tuple[int, int] | None:
    """The next `batch_size` candidates after `after_id`: (the last one's id, how many); None when none is left."""
    window = text(
        f"SELECT max(id), count(*) FROM (SELECT contact.id AS id FROM contact WHERE {_CANDIDATE}"
        " AND contact.id > :after ORDER BY contact.id LIMIT :n) batch"
    ).bindparams(_cutoff_param())
    last_id, candidates = session.execute(
        window, {"cutoff": cutoff, "after": after_id, "n": batch_size}
    ).one()
    return (last_id, candidates) if candidates else None


def delete_batch(
    *, session: Session, run_id: int, cutoff: datetime, after_id: int, batch_size: int, dry_run: bool
) -> BatchResult | None:
    """Delete (and archive) the unreferenced contacts among the next `batch_size` candidates after `after_id`;
    None when no candidate is left."""
    window = next_window(session=session, cutoff=cutoff, after_id=after_id, batch_size=batch_size)
    if window is None:
        return None
    last_id, candidates = window
    deleted = delete_window(
        session=session, run_id=run_id, cutoff=cutoff, after_id=after_id, last_id=last_id, dry_run=dry_run
    )
    return BatchResult(last_id, candidates, deleted)


def delete_window(
    *, session: Session, run_id: int, cutoff: datetime, after_id: int, last_id: int, dry_run: bool
) -> int:
    """Delete and archive the unreferenced candidates with ids in (after_id, last_id]; returns how many (a dry
    run: how many would go). The conditions are checked again here, in the DELETE: a contact that gained a
    reference, or is gone already, since the window was chosen is simply not counted."""
    where = f"contact.id > :after AND contact.id <= :last AND {_CANDIDATE} AND {_unreferenced()}"
    params = {"cutoff": cutoff, "after": after_id, "last": last_id, "run": run_id, "now": datetime.now(UTC)}
    if dry_run:
        count = text(f"SELECT count(*) FROM contact WHERE {where}").bindparams(_cutoff_param())
        return session.scalar(count, params) or 0
    cols = _columns()
    if is_postgres(session):
        # One statement: the DELETE returns its rows and they go straight into the archive.
        row = "jsonb_build_object(" + ", ".join(f"'{c}', gone.{c}" for c in cols) + ")"
        stmt = text(
            f"WITH gone AS (DELETE FROM contact WHERE {where} RETURNING {', '.join(cols)})"
            f" INSERT INTO contact_archive (run_id, contact_id, row, deleted_at)"
            f" SELECT :run, gone.id, {row}, :now FROM gone"
        ).bindparams(_cutoff_param(), _now_param())
        deleted = session.execute(stmt, params).rowcount
    else:
        # SQLite has no DELETE in a WITH: archive, then delete exactly the archived rows (same write lock).
        row = "json_object(" + ", ".join(f"'{c}', contact.{c}" for c in cols) + ")"
        archived = session.execute(
            text(
                "INSERT INTO contact_archive (run_id, contact_id, row, deleted_at)"
                f" SELECT :run, contact.id, {row}, :now FROM contact WHERE {where}"
            ).bindparams(_cutoff_param(), _now_param()),
            params,
        ).rowcount
        deleted = session.execute(
            text(
                f"DELETE FROM contact WHERE {where}"
                " AND contact.id IN (SELECT contact_id FROM contact_archive WHERE run_id = :run)"
            ).bindparams(_cutoff_param()),
            params,
        ).rowcount
        if deleted != archived:  # cannot happen under SQLite's single writer; never lose a row if it does
            raise RuntimeError(f"archived {archived} contacts but deleted {deleted}: rolled back")
    return deleted


def finish_run(*, session: Session, run_id: int, deleted: int, kept: int) -> None:
    """Record a run's counts."""
    run = session.get(BulkDeleteRun, run_id)
    assert run is not None
    run.deleted, run.kept, run.finished_at = deleted, kept, datetime.now(UTC)


def sample_ids(
    *, session: Session, run_id: int, cutoff: datetime, dry_run: bool, limit: int = ARTIFACT_IDS
) -> list[int]:
    """The first `limit` ids a run deleted (a dry run: would delete), for its artifact."""
    if not dry_run:
        return list(
            session.scalars(
                select(ContactArchive.contact_id)
                .where(ContactArchive.run_id == run_id)
                .order_by(ContactArchive.contact_id)
                .limit(limit)
            )
        )
    stmt = text(
        f"SELECT contact.id FROM contact WHERE {_CANDIDATE} AND {_unreferenced()} ORDER BY contact.id LIMIT :n"
    ).bindparams(_cutoff_param())
    return list(session.scalars(stmt, {"cutoff": cutoff, "n": limit}))


def purge_archives(*, session: Session, keep_days: int, now: datetime | None = None) -> int:
    """Forget runs (and their archived contacts) older than `keep_days`; returns the runs purged."""
    before = (now or datetime.now(UTC)) - timedelta(days=keep_days)
    old = select(BulkDeleteRun.id).where(BulkDeleteRun.started_at < before)
    session.execute(delete(ContactArchive).where(ContactArchive.run_id.in_(old)))
    return session.execute(delete(BulkDeleteRun).where(BulkDeleteRun.started_at < before)).rowcount


def restore_archive(*, session: Session, archive: str, now: datetime | None = None) -> RestoreResult:
    """Put an archive's contacts back with their ids; those already restored are skipped (restoring twice
    restores nothing new). A contact whose id is taken again, or whose account or master contact is gone, is
    reported and left in the archive."""
    run_id = session.scalar(select(BulkDeleteRun.id).where(BulkDeleteRun.archive == archive.strip()))
    if run_id is None:
        raise UnknownArchive(f"no archive {archive!r} (never made, or purged after its retention period)")
    now = now or datetime.now(UTC)
    cols = _columns()
    pg = is_postgres(session)

    def field_of(col: str) -> str:
        return f"(a.row->>'{col}')" if pg else f"json_extract(a.row, '$.{col}')"

    # A contact's own references (its account, the contact it was merged into) must exist to restore it.
    own_refs = [(fk.parent.name, fk.column.table.name, fk.column.name) for fk in _contact().foreign_keys]
    refs_ok = " AND ".join(
        f"({field_of(col)} IS NULL OR EXISTS (SELECT 1 FROM {tbl} t WHERE t.{ref} = "
        f"{'CAST(' + field_of(col) + ' AS INTEGER)' if pg else field_of(col)}))"
        for col, tbl, ref in own_refs
    )
    mark = text(
        "UPDATE contact_archive SET restored_at = :now WHERE id IN (SELECT a.id FROM contact_archive a"
        " WHERE a.run_id = :run AND a.restored_at IS NULL"
        f" AND NOT EXISTS (SELECT 1 FROM contact c WHERE c.id = a.contact_id) AND {refs_ok})"
    ).bindparams(_now_param())
    if pg:
        values = ", ".join(f"r.{c}" for c in cols)
        source = "contact_archive a CROSS JOIN LATERAL jsonb_populate_record(NULL::contact, a.row) r"
    else:
        values = ", ".join(f"json_extract(a.row, '$.{c}')" for c in cols)
        source = "contact_archive a"
    put_back = text(
        f"INSERT INTO contact ({', '.join(cols)}) SELECT {values} FROM {source}"
        " WHERE a.run_id = :run AND a.restored_at = :now"
    ).bindparams(_now_param())
    restored = 0
    # A contact merged into another deleted in the same run comes back once its master has: a few rounds.
    while True:
        now = now + timedelta(microseconds=1)  # each round marks its own rows
        marked = session.execute(mark, {"run": run_id, "now": now}).rowcount
        if not marked:
            break
        restored += session.execute(put_back, {"run": run_id, "now": now}).rowcount
    left = session.execute(
        text(
            "SELECT a.contact_id, EXISTS (SELECT 1 FROM contact c WHERE c.id = a.contact_id)"
            " FROM contact_archive a WHERE a.run_id = :run AND a.restored_at IS NULL ORDER BY a.contact_id"
        ),
        {"run": run_id},
    ).all()
    return RestoreResult(
        restored=restored,
        id_taken=[cid for cid, taken in left if taken],
        reference_missing=[cid for cid, taken in left if not taken],
    )


class BulkDeleteConfig(BaseModel):
    """The weekly delete's bounds: what is old enough, how much per transaction, and whether to change anything."""

    older_than_days: int = Field(
        default=30, ge=0, le=3650, description="Delete contacts merged more than this many days ago."
    )
    batch_size: int = Field(
        default=10_000, ge=1, le=100_000, description="Candidates examined (and deleted) per transaction."
    )
    max_batches: int | None = Field(
        default=None, ge=1, description="Stop after this many batches (the rest waits for the next run)."
    )
    workers: int = Field(
        default=2, ge=1, le=8, description="Connections deleting side by side (PostgreSQL; SQLite uses one)."
    )
    dry_run: bool = Field(default=False, description="Count what would be deleted; change nothing.")


@dataclass
class BulkDeleteSummary:
    archive: str
    dry_run: bool
    cutoff: datetime
    deleted: int = 0
    kept: int = 0
    batches: int = 0
    purged_archives: int = 0
    ids: list[int] = field(default_factory=list)  # the first ARTIFACT_IDS deleted

    def as_json(self) -> dict:
        return {"deleted": self.deleted, "kept": self.kept, "archive": self.archive}


def count_candidates(*, session: Session, cutoff: datetime) -> int:
    """Contacts merged, deactivated and old enough (referenced or not): the run's total for its progress."""
    stmt = text(f"SELECT count(*) FROM contact WHERE {_CANDIDATE}").bindparams(_cutoff_param())
    return session.scalar(stmt, {"cutoff": cutoff}) or 0


def run_bulk_delete(
    config: BulkDeleteConfig, *, keep_archive_days: int, logger: logging.Logger | None = None
) -> BulkDeleteSummary:
    """The whole delete, one transaction per batch (each batch's delete and archive commit together); on
    PostgreSQL `config.workers` connections delete disjoint id windows side by side. Progress per batch (a log
    line with its counts; inside a flow run, a progress artifact) is reported from the calling thread."""
    from carepath.batch_runs import BatchProgress
    from carepath.db import get_engine, unit_of_work

    with unit_of_work() as session:
        run = start_run(session=session, older_than_days=config.older_than_days, dry_run=config.dry_run)
        summary = BulkDeleteSummary(archive=run.archive, dry_run=config.dry_run, cutoff=run.cutoff)
        run_id = run.id
        total = count_candidates(session=session, cutoff=run.cutoff)
    if config.max_batches is not None:
        total = min(total, config.max_batches * config.batch_size)
    progress = BatchProgress("bulk-delete-merged-contacts", total=total, logger=logger)
    lock = threading.Lock()
    cursor = {"after": 0}
    # Each batch's (candidates, deleted), and None when a worker stops: Prefect's context (the artifact's
    # client, the run logger) lives in the calling thread, so the workers hand their figures to it.
    done: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()

    def claim() -> tuple[int, int, int] | None:
        """The next window, taken under a lock so that no two workers get the same ids."""
        with lock:
            if config.max_batches is not None and summary.batches >= config.max_batches:
                return None
            with unit_of_work() as session:
                window = next_window(
                    session=session,
                    cutoff=summary.cutoff,
                    after_id=cursor["after"],
                    batch_size=config.batch_size,
                )
            if window is None:
                return None
            after, cursor["after"] = cursor["after"], window[0]
            summary.batches += 1
            return after, window[0], window[1]

    def work() -> None:
        try:
            while (claimed := claim()) is not None:
                after, last, candidates = claimed
                with unit_of_work() as session:
                    deleted = delete_window(
                        session=session,
                        run_id=run_id,
                        cutoff=summary.cutoff,
                        after_id=after,
                        last_id=last,
                        dry_run=config.dry_run,
                    )
                with lock:
                    summary.deleted += deleted
                    summary.kept += candidates - deleted
                done.put((candidates, deleted))
        finally:
            done.put(None)

    workers = 1 if get_engine().dialect.name == "sqlite" else config.workers  # SQLite: one writer
    with ThreadPoolExecutor(workers, thread_name_prefix="bulk-delete") as pool:
        running = [pool.submit(work) for _ in range(workers)]
        stopped = 0
        while stopped < workers:
            if (batch := done.get()) is None:
                stopped += 1
            else:
                progress.advance(batch[0], deleted=batch[1], kept=batch[0] - batch[1])
        for worker in running:
            worker.result()  # a failed batch rolled back alone; committed ones stand (and are archived)
    with unit_of_work() as session:
        summary.ids = sample_ids(
            session=session, run_id=run_id, cutoff=summary.cutoff, dry_run=config.dry_run
        )
        finish_run(session=session, run_id=run_id, deleted=summary.deleted, kept=summary.kept)
        if not config.dry_run:
            summary.purged_archives = purge_archives(session=session, keep_days=keep_archive_days)
    progress.finish()
    return summary
