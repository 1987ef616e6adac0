"""Entitlement reconciliation over 1,000,000 cases and 100,000 entitlements on PostgreSQL: one set-based run,
against a per-row ORM loop on a sample.

`python -m bench.entitlement_reconciliation [--entitlements N] [--sample N] [--chunk-size N]` (PG_URL, default
the local server; CAREPATH_BENCH_DB renames the database). A database is dropped and recreated, migrated, and
filled with set-based SQL: N accounts with one entitlement each (15 cases; every other one with an email
allocation of 5), ten cases per account, four of them resolved and holding a term; a hundredth of the
entitlements and of the channel allocations drifted behind Carepath's back. The reconciliation (what `carepath
reconcile-entitlements` runs: the deployment's ranges of `--chunk-size` entitlements and its task function, one
range after the other, the CSV report written as they come) is timed; the per-row loop (load each entitlement,
count its cases' terms, compare, correct, ledger) runs on a sample of a fresh copy, and the ratio of their rates
is printed. Figures, not tests.
"""

from __future__ import annotations

import argparse
import os
import time

from sqlalchemy import create_engine, func, select, text

from bench.setup_data import DEFAULT_PG_URL, recreate_database

BENCH_DB = os.environ.get("CAREPATH_BENCH_DB", "carepath_bench_reconcile")


def fill(url: str, entitlements: int) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for sql in (
            """INSERT INTO account (id, name, account_number, tier, created_at)
               SELECT g, 'Bench ' || g, 'B-' || lpad(g::text, 7, '0'), 'gold', now() FROM generate_series(1, :n) g""",
            """INSERT INTO entitlement (id, name, account_id, starts_on, ends_on, allocation, remaining, channels,
                                        product_ids, restrict_case_creation, state, decrease_remaining_on)
               SELECT g, 'Plan ' || g, g, date_trunc('year', now())::date,
                      (date_trunc('year', now()) + interval '1 year - 1 day')::date, 15,
                      11 + CASE WHEN g % 100 = 0 THEN 2 ELSE 0 END, '[]', '[]', false, 'active', 'case_resolution'
               FROM generate_series(1, :n) g""",
            """INSERT INTO entitlement_channel (entitlement_id, channel, allocation, remaining)
               SELECT g, 'email', 5, 1 + CASE WHEN g % 200 = 0 THEN 3 ELSE 0 END
               FROM generate_series(2, :n, 2) g""",
            """INSERT INTO support_case (id, ticket_number, title, priority, origin, status, status_reason,
                                         account_id, entitlement_id, fault_occurrences, tracking_token,
                                         created_at, updated_at, entitlement_do_not_decrement)
               SELECT g, 'CAS-B' || lpad(g::text, 9, '0'), 'Case ' || g, 'normal', 'email',
                      CASE WHEN g % 10 < 4 THEN 'resolved' ELSE 'active' END, 'in_progress',
                      1 + (g - 1) / 10, 1 + (g - 1) / 10, 0, 'bench-' || g, now(), now(), false
               FROM generate_series(1, :n * 10) g""",
            """INSERT INTO entitlement_use (entitlement_id, case_id, used_at, channel)
               SELECT c.entitlement_id, c.id, now(), CASE WHEN c.entitlement_id % 2 = 0 THEN 'email' END
               FROM support_case c WHERE c.status = 'resolved'""",
            "ANALYZE",
        ):
            conn.execute(text(sql), {"n": entitlements})
    engine.dispose()


def prepare(server: str, entitlements: int) -> str:
    from carepath.migrate import upgrade

    url = recreate_database(server, BENCH_DB)
    upgrade(url)
    started = time.perf_counter()
    fill(url, entitlements)
    print(
        f"setup: {entitlements:,} entitlements, {entitlements * 10:,} cases "
        f"({entitlements * 4:,} holding terms) in {time.perf_counter() - started:.1f} s"
    )
    return url


def naive_reconcile(session) -> int:
    """The obvious loop: each entitlement and channel allocation as an ORM object, its held terms counted."""
    from models import Entitlement, EntitlementChannel, EntitlementLedger, EntitlementUse

    corrected = 0
    for ent in session.scalars(select(Entitlement)).all():
        held = session.scalar(
            select(func.count()).where(
                EntitlementUse.entitlement_id == ent.id, EntitlementUse.returned_at.is_(None)
            )
        )
        if ent.remaining != max(0, ent.allocation - held):
            session.add(EntitlementLedger(entitlement_id=ent.id, change=0, remaining_after=0, reason="naive"))
            ent.remaining, corrected = max(0, ent.allocation - held), corrected + 1
        for ch in session.scalars(
            select(EntitlementChannel).where(EntitlementChannel.entitlement_id == ent.id)
        ):
            held_ch = session.scalar(
                select(func.count()).where(
                    EntitlementUse.entitlement_id == ent.id,
                    EntitlementUse.channel == ch.channel,
                    EntitlementUse.returned_at.is_(None),
                )
            )
            if ch.remaining != max(0, ch.allocation - held_ch):
                ch.remaining, corrected = max(0, ch.allocation - held_ch), corrected + 1
    session.flush()
    return corrected


def use_database(url: str) -> None:
    """Point Carepath's settings and engine at the bench database; reports into a temporary folder."""
    import tempfile

    from carepath import db
    from carepath.settings import reset_settings

    os.environ["CAREPATH_DATABASE_URL"] = url
    os.environ.setdefault("CAREPATH_REPORTS_DIR", tempfile.mkdtemp(prefix="bench-reconcile-"))
    reset_settings()
    db.reset_engine()


def reconcile(url: str, chunk_size: int):
    """The command's run (the deployment's ranges and task functions, one range after the other)."""
    from flows.entitlement_reconciliation import in_this_process, run_reconciliation
    from models.base import utcnow

    use_database(url)
    on = utcnow().date()
    summary, _ = run_reconciliation(
        on=on, chunk_size=chunk_size, reconcile_ranges=in_this_process(on, dry_run=False)
    )
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entitlements", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=2_000)
    parser.add_argument("--chunk-size", type=int, default=10_000, help="entitlements per range")
    args = parser.parse_args(argv)
    server = os.environ.get("PG_URL", DEFAULT_PG_URL)
    from sqlalchemy.orm import Session

    import flows.entitlement_reconciliation  # noqa: F401  (Prefect's import, ~1.5 s, is not the job's time)
    from carepath import db

    url = prepare(server, args.entitlements)
    started = time.perf_counter()
    summary = reconcile(url, args.chunk_size)
    elapsed = time.perf_counter() - started
    db.reset_engine()
    print(
        f"reconciliation (set-based, ranges of {args.chunk_size:,}), {args.entitlements:,} entitlements over "
        f"{args.entitlements * 10:,} cases: {elapsed:.2f} s (target ≤ 10 s); {summary.as_json()}"
    )
    url = prepare(server, args.sample)
    engine = create_engine(url)
    with Session(engine) as session, session.begin():
        started = time.perf_counter()
        corrected = naive_reconcile(session)
        naive_elapsed = time.perf_counter() - started
    engine.dispose()
    naive_rate, rate = args.sample / naive_elapsed, args.entitlements / elapsed
    print(
        f"per-row ORM loop, {args.sample:,} entitlements (same shape, same indexes): {naive_elapsed:.2f} s = "
        f"{naive_rate:,.0f} entitlements/s ({corrected} corrected) → the set-based run is {rate / naive_rate:,.0f}× faster"
    )


if __name__ == "__main__":
    main()
