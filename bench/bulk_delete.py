"""Weekly bulk delete of 1,000,000 merged contacts on PostgreSQL: the set-based batches, with peak memory, against
a per-row ORM delete.

`python -m bench.bulk_delete [--merged N] [--sample N] [--batch-size N]` (PG_URL, default the local server;
CAREPATH_BENCH_DB names the database, dropped and recreated). Filled with set-based SQL: 100,000 active
contacts with a case, a message and a consent each; N merged, deactivated contacts merged 60 days ago; and 2% more
merged contacts that still have a case or a message (they must be kept). The delete (`tasks.bulk_delete.
run_bulk_delete`, the flow's code: one DELETE … RETURNING into the archive per batch, one transaction each) is
timed, and the process's peak RSS (resource.getrusage) is printed before and after it: flat memory means the
rows never pass through Python. The per-row ORM version (load each candidate, ask each table whether it refers
to it, serialise it to the archive, session.delete) runs on a sample of a fresh copy; the ratio is printed.
Nothing is asserted: figures, not tests.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text

from bench.setup_data import BENCH_DB, DEFAULT_PG_URL, recreate_database

MASTERS = 100_000


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def fill(url: str, merged: int) -> None:
    """Masters with a case, a message and a consent; `merged` emptied merged contacts; 2% more still referred to."""
    kept = merged // 50
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO account (id, name, account_number, tier, created_at) VALUES (1, 'Bench', 'B-1', 'gold', now())"
            )
        )
        conn.execute(
            text("""
            INSERT INTO contact (id, first_name, last_name, email, language, account_id, active, created_at)
            SELECT g, 'Master', 'No' || g, 'm' || g || '@bench.example', 'en', 1, true, now() - interval '400 days'
            FROM generate_series(1, :m) g"""),
            {"m": MASTERS},
        )
        conn.execute(
            text("""
            INSERT INTO contact (id, first_name, last_name, email, language, account_id, active, merged_into_id,
                                 merged_at, created_at)
            SELECT g, 'Merged', 'No' || g, 'x' || g || '@bench.example', 'en', 1, false, 1 + g % :m,
                   now() - interval '60 days', now() - interval '90 days'
            FROM generate_series(:m + 1, :m + :n + :k) g"""),
            {"m": MASTERS, "n": merged, "k": kept},
        )
        # Cases for every master and for half of the still-referred-to merged contacts; messages for the rest.
        conn.execute(
            text("""
            INSERT INTO support_case (id, ticket_number, title, account_id, contact_id, priority, origin, status,
                                      status_reason, fault_occurrences, tracking_token, created_at, updated_at,
                                      entitlement_do_not_decrement)
            SELECT g, 'CAS-B' || lpad(g::text, 9, '0'), 'Bench case', 1, c, 'normal', 'email', 'resolved',
                   'problem_solved', 0, 'bench-token-' || g, now(), now(), false
            FROM (SELECT row_number() OVER () AS g, c FROM (
                    SELECT generate_series(1, :m) AS c
                    UNION ALL SELECT generate_series(:m + :n + 1, :m + :n + :k / 2)) s) t"""),
            {"m": MASTERS, "n": merged, "k": kept},
        )
        conn.execute(
            text("""
            INSERT INTO message (idempotency_key, channel, contact_id, journey_step, body, status, attempts,
                                 resends, created_at, updated_at)
            SELECT 'bench-' || c, 'email', c, 'bench', 'hello', 'delivered', 1, 0, now(), now()
            FROM (SELECT generate_series(1, :m) AS c
                  UNION ALL SELECT generate_series(:m + :n + :k / 2 + 1, :m + :n + :k)) s"""),
            {"m": MASTERS, "n": merged, "k": kept},
        )
        conn.execute(
            text("""
            INSERT INTO consent (contact_id, channel, status, source, changed_at)
            SELECT g, 'sms', 'opted_in', 'bench', now() FROM generate_series(1, :m) g"""),
            {"m": MASTERS},
        )
        conn.execute(
            text("SELECT setval(pg_get_serial_sequence('contact', 'id'), (SELECT max(id) FROM contact))")
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def prepare(server: str, merged: int) -> str:
    from carepath.migrate import upgrade

    url = recreate_database(server, BENCH_DB)
    upgrade(url)
    started = time.perf_counter()
    fill(url, merged)
    print(
        f"setup: {MASTERS:,} contacts with cases, messages, consents; {merged:,} merged and emptied; "
        f"{merged // 50:,} merged but still referred to — {time.perf_counter() - started:.1f} s"
    )
    return url


def naive_delete(url: str, older_than_days: int) -> tuple[int, int]:
    """The obvious version: each merged contact as an ORM object, every reference asked row by row, archived as
    a dict, deleted with session.delete, a commit every 1,000."""
    from sqlalchemy import exists, select
    from sqlalchemy.orm import Session

    from models import (
        BulkDeleteRun,
        Case,
        Consent,
        Contact,
        ContactArchive,
        Device,
        Entitlement,
        Lead,
        Message,
    )

    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    engine = create_engine(url)
    deleted = kept = 0
    with Session(engine) as session:
        run = BulkDeleteRun(archive="naive", older_than_days=older_than_days, cutoff=cutoff, dry_run=False)
        session.add(run)
        session.commit()
        contacts = session.scalars(
            select(Contact).where(
                Contact.merged_into_id.is_not(None), Contact.active.is_(False), Contact.merged_at < cutoff
            )
        ).all()
        for n, contact in enumerate(contacts, start=1):
            refs = [
                select(Case.id).where(Case.contact_id == contact.id),
                select(Message.id).where(Message.contact_id == contact.id),
                select(Device.device_id).where(Device.owner_contact_id == contact.id),
                select(Consent.id).where(Consent.contact_id == contact.id),
                select(Lead.id).where(Lead.contact_id == contact.id),
                select(Entitlement.id).where(Entitlement.contact_id == contact.id),
                select(Contact.id).where(Contact.merged_into_id == contact.id),
            ]
            if contact.portal_login or any(session.scalar(select(exists(q))) for q in refs):
                kept += 1
                continue
            row = {c.name: getattr(contact, c.key) for c in Contact.__table__.columns}
            row = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
            session.add(ContactArchive(run_id=run.id, contact_id=contact.id, row=row))
            session.delete(contact)
            deleted += 1
            if n % 1000 == 0:
                session.commit()
        session.commit()
    engine.dispose()
    return deleted, kept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--merged", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="connections deleting side by side")
    args = parser.parse_args(argv)
    server = os.environ.get("PG_URL", DEFAULT_PG_URL)

    url = prepare(server, args.merged)
    os.environ["CAREPATH_DATABASE_URL"] = url
    import carepath.batch_runs  # noqa: F401  (its progress reporting imports Prefect: loaded, as in a flow run)
    from carepath import db
    from carepath.settings import reset_settings
    from tasks.bulk_delete import BulkDeleteConfig, run_bulk_delete

    reset_settings()
    db.reset_engine()
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    summary = run_bulk_delete(
        BulkDeleteConfig(older_than_days=30, batch_size=args.batch_size, workers=args.workers),
        keep_archive_days=30,
    )
    elapsed = time.perf_counter() - started
    rss_after = peak_rss_mib()
    rate = summary.deleted / elapsed
    print(
        f"bulk delete (set-based, batches of {args.batch_size:,}, {args.workers} worker(s)): {summary.deleted:,} deleted and archived, "
        f"{summary.kept:,} kept, {summary.batches} batches in {elapsed:.1f} s = {rate:,.0f} contacts/s "
        f"(target: 1,000,000 in ≤ 60 s); peak RSS {rss_before:.0f} MiB before, {rss_after:.0f} MiB after"
    )
    db.reset_engine()

    url = prepare(server, args.sample)
    started = time.perf_counter()
    deleted, kept = naive_delete(url, 30)
    naive_elapsed = time.perf_counter() - started
    naive_rate = deleted / naive_elapsed
    print(
        f"per-row ORM delete, {deleted:,} deleted and {kept:,} kept of a {args.sample:,}-contact sample: "
        f"{naive_elapsed:.1f} s = {naive_rate:,.0f} contacts/s → the set-based delete is "
        f"{rate / naive_rate:,.0f}× faster; peak RSS {peak_rss_mib():.0f} MiB"
    )


if __name__ == "__main__":
    main()
