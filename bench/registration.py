"""Portal registration merge at scale: 1,000,000 contacts on PostgreSQL, p50/p95 of one registration.

`CAREPATH_BENCH_DB=name .venv/bin/python -m bench.registration [--contacts N] [--samples N]`: recreates the
database, migrates it, generates accounts and contacts set-based (70% with a portal login), then times
registrations one transaction each (decide + write + commit: the code the flow and the command run):
merges into contacts without a login, new people at an account's domain, and already registered emails.
The simple way for comparison: the same merges without the lower(email) index, as a ratio of p95s.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from bench.setup_data import BENCH_DB, DEFAULT_PG_URL, recreate_database
from carepath.migrate import upgrade
from carepath.schemas import PortalRegistrationIn
from carepath.settings import get_settings
from tasks.registration import register


def generate(url: str, contacts: int) -> None:
    """Accounts (one per ten contacts) with a domain each; contacts at those domains, 70% with a login."""
    accounts = max(1, contacts // 10)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("""
            INSERT INTO account (id, name, account_number, tier, created_at)
            SELECT g, 'Bench account ' || g, 'B-' || lpad(g::text, 7, '0'), 'standard', now()
            FROM generate_series(1, :n) g"""),
            {"n": accounts},
        )
        conn.execute(
            text("""
            INSERT INTO account_domain (account_id, domain)
            SELECT g, 'bench' || g || '.example' FROM generate_series(1, :n) g"""),
            {"n": accounts},
        )
        # Mixed-case stored emails, as people type them: the lookup must still find them by lower(email).
        conn.execute(
            text("""
            INSERT INTO contact (id, first_name, last_name, email, email_domain, language, account_id, active,
                                 portal_login, created_at)
            SELECT g, 'Person', 'No ' || g, 'Person' || g || '@bench' || (1 + (g - 1) % :a) || '.example',
                   'bench' || (1 + (g - 1) % :a) || '.example', 'en', 1 + (g - 1) % :a, true,
                   CASE WHEN g % 10 < 7 THEN 'person' || g || '@bench' || (1 + (g - 1) % :a) || '.example' END,
                   now()
            FROM generate_series(1, :n) g"""),
            {"n": contacts, "a": accounts},
        )
        conn.execute(text("SELECT setval('contact_id_seq', :n)"), {"n": contacts})
        conn.execute(text("SELECT setval('account_id_seq', :n)"), {"n": accounts})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE contact"))
        conn.execute(text("ANALYZE account_domain"))
    engine.dispose()


def timed(make, emails: list[str], expected: str) -> list[float]:
    settings, times = get_settings(), []
    for email in emails:
        reg = PortalRegistrationIn(
            event_id=str(uuid.uuid4()), email=email, first_name="Bench", last_name="Person"
        )
        start = time.perf_counter()
        with make() as s, s.begin():
            outcome = register(session=s, registration=reg, settings=settings).outcome
        times.append((time.perf_counter() - start) * 1000)
        assert outcome == expected, (email, outcome)
    return times


def quantiles(ms: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return statistics.median(ms), cuts[94]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--baseline-samples", type=int, default=30)
    args = parser.parse_args()
    url = recreate_database(DEFAULT_PG_URL, BENCH_DB)
    upgrade(url)
    start = time.perf_counter()
    generate(url, args.contacts)
    print(f"{args.contacts:,} contacts generated and analysed in {time.perf_counter() - start:.1f} s ({url})")
    engine = create_engine(url)
    make = sessionmaker(engine, expire_on_commit=False)
    accounts = max(1, args.contacts // 10)

    def at(g: int) -> str:  # contact g's email, spelled differently from how it is stored
        return f" PERSON{g}@Bench{1 + (g - 1) % accounts}.EXAMPLE "

    without_login = list(range(7, args.contacts + 1, 10))  # g % 10 in (7, 8, 9): no login
    step = max(1, len(without_login) // (args.samples + args.baseline_samples))
    picks = without_login[::step]
    merges, baseline_merges = (
        picks[: args.samples],
        picks[args.samples : args.samples + args.baseline_samples],
    )
    timed(make, [at(g) for g in range(9, args.contacts + 1, 10)][:20], "merged")  # warm-up
    results = {
        "merged": timed(make, [at(g) for g in merges], "merged"),
        "linked_to_account": timed(
            make,
            [f"new{n}@bench{1 + n * 97 % accounts}.example" for n in range(args.samples)],
            "linked_to_account",
        ),
        "already_registered": timed(
            make,
            [at(g) for g in range(1, args.contacts + 1, max(1, args.contacts // args.samples)) if g % 10 < 7],
            "already_registered",
        ),
    }
    for outcome, ms in results.items():
        p50, p95 = quantiles(ms)
        print(f"{outcome:<20} n={len(ms):>4}  p50 {p50:6.2f} ms  p95 {p95:6.2f} ms")
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_contact_email_lower"))
    simple = timed(make, [at(g) for g in baseline_merges], "merged")
    with engine.begin() as conn:
        conn.execute(text("CREATE INDEX ix_contact_email_lower ON contact (lower(email))"))
    p50, p95 = quantiles(simple)
    ours = quantiles(results["merged"])[1]
    print(f"{'merged, no lower(email) index':<20} n={len(simple):>4}  p50 {p50:6.2f} ms  p95 {p95:6.2f} ms")
    print(f"merge p95 {ours:.2f} ms vs {p95:.2f} ms the simple way: {p95 / ours:,.0f}x")
    engine.dispose()


if __name__ == "__main__":
    main()
