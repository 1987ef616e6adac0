"""Generate a large support organisation and fault backlog in PostgreSQL with set-based SQL."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, make_url, text

from carepath.rules.messaging import is_e164

# CAREPATH_BENCH_DB: another name, so two checkouts can run `make bench` on one server at once.
BENCH_DB = os.environ.get("CAREPATH_BENCH_DB", "carepath_bench")
# The PostgreSQL server the benchmarks use (the Makefile's PG_URL, else the local one).
DEFAULT_PG_URL = os.environ.get("PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def bench_url(server_url: str, name: str = BENCH_DB) -> str:
    """The URL of the benchmark database on that server."""
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def recreate_database(server_url: str, name: str = BENCH_DB) -> str:
    """Drop and create `name` on the server; return its URL."""
    server = make_url(server_url)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return bench_url(server_url, name)


def generate_organisation(url: str, *, devices: int) -> None:
    """One contact and one device per owner, an account per ten contacts, SMS consent for 90%."""
    accounts = max(1, devices // 10)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("""
            INSERT INTO account (id, name, account_number, tier, created_at)
            SELECT g, 'Bench account ' || g, 'B-' || lpad(g::text, 7, '0'),
                   (ARRAY['gold','silver','standard','standard'])[1 + g % 4], now()
            FROM generate_series(1, :n) g"""),
            {"n": accounts},
        )
        conn.execute(
            text("""
            INSERT INTO account_domain (account_id, domain)
            SELECT g, 'bench' || g || '.example' FROM generate_series(1, :n) g"""),
            {"n": accounts},
        )
        conn.execute(
            text("""
            INSERT INTO contact (id, first_name, last_name, email, phone, language, account_id, active, created_at)
            SELECT g, 'Owner', 'No ' || g, 'owner' || g || '@bench' || (1 + (g - 1) % :a) || '.example',
                   '+30691' || lpad(g::text, 7, '0'), (ARRAY['en','el','pl','pt','it'])[1 + g % 5],
                   1 + (g - 1) % :a, true, now()
            FROM generate_series(1, :n) g"""),
            {"n": devices, "a": accounts},
        )
        conn.execute(
            text("""
            INSERT INTO consent (contact_id, channel, status, source, changed_at)
            SELECT g, 'sms', 'opted_in', 'bench', now() FROM generate_series(1, :n) g WHERE g % 10 <> 0"""),
            {"n": devices},
        )
        conn.execute(
            text("""
            INSERT INTO product (id, sku, name) VALUES (1, 'BENCH-1', 'Bench boiler')""")
        )
        conn.execute(
            text("""
            INSERT INTO device (device_id, product_id, owner_contact_id)
            SELECT 'BDEV-' || lpad(g::text, 7, '0'), 1, g FROM generate_series(1, :n) g"""),
            {"n": devices},
        )
        conn.execute(
            text("""
            INSERT INTO entitlement (name, account_id, starts_on, ends_on, allocation, remaining, channels,
                                     product_ids, restrict_case_creation, state)
            SELECT 'Gold support ' || id, id, date_trunc('year', now())::date,
                   (date_trunc('year', now()) + interval '1 year - 1 day')::date, 15, 15,
                   '["iot","email","phone"]'::jsonb, '[]'::jsonb, false, 'active'
            FROM account WHERE tier = 'gold'""")
        )
        # The demo's SLAs, so the drain starts every case's KPIs as it does in production: gold around the
        # clock, silver and standard in EU office hours with Greece's public holidays.
        conn.execute(
            text("""
            INSERT INTO business_calendar (id, name, timezone, country, hours) VALUES
            (1, 'EU office hours', 'Europe/Athens', 'GR',
             '{"mon": ["08:00", "18:00"], "tue": ["08:00", "18:00"], "wed": ["08:00", "18:00"],
               "thu": ["08:00", "18:00"], "fri": ["08:00", "18:00"]}'::jsonb)""")
        )
        conn.execute(
            text("""
            INSERT INTO sla (id, name, applies_to_tier, calendar_id, pause_on_hold) VALUES
            (1, 'Gold SLA', 'gold', NULL, true), (2, 'Silver SLA', 'silver', 1, true),
            (3, 'Standard SLA', 'standard', 1, true)""")
        )
        conn.execute(
            text("""
            INSERT INTO sla_kpi (sla_id, kpi, minutes, warn_after_minutes) VALUES
            (1, 'first_response', 15, 10), (1, 'resolve_by', 480, 360),
            (2, 'first_response', 60, 45), (2, 'resolve_by', 1440, 1200),
            (3, 'first_response', 240, 180), (3, 'resolve_by', 4320, 3600)""")
        )
        # What the ORM does when it writes a contact: check the phone once (see models.customers).
        rows = conn.execute(text("SELECT id, phone FROM contact WHERE phone IS NOT NULL")).all()
        conn.execute(
            text("""
            UPDATE contact c SET phone_checked = c.phone, phone_valid = v.ok
            FROM unnest(CAST(:ids AS integer[]), CAST(:oks AS boolean[])) AS v(id, ok) WHERE c.id = v.id"""),
            {"ids": [r.id for r in rows], "oks": [is_e164(r.phone) for r in rows]},
        )
        for table in ("account", "contact", "product"):
            conn.execute(
                text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            )
    # The state autovacuum leaves a long-lived database in: statistics, and visibility maps that let
    # look-ups by device id be answered from the index alone.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def generate_faults(
    url: str, *, faults: int, devices: int, first: int = 1, prefix: str = "bench", critical_share: float = 0.3
) -> None:
    """`faults` pending inbox events: `critical_share` critical, concentrated on 40% of the devices so
    many repeat while their case is open; the rest spread over every device. Times spread over an hour."""
    hot = max(1, int(devices * 0.4))
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("SELECT setseed(0.42)"))
        conn.execute(
            text("""
            WITH f AS (
                SELECT g, random() < :share AS critical, random() AS r1, random() AS r2
                FROM generate_series(:first, :last) g
            )
            INSERT INTO inbox_event (source, kind, event_id, payload, state, attempts, received_at)
            SELECT 'iot', 'fault', :prefix || '-' || g,
                   jsonb_build_object(
                     'event_id', :prefix || '-' || g,
                     'device_id', 'BDEV-' || lpad((1 + floor(r1 * CASE WHEN critical THEN :hot ELSE :n END))::int::text, 7, '0'),
                     'error_code', CASE WHEN critical THEN 11 + floor(r2 * 40)::int ELSE 1 + floor(r2 * 10)::int END,
                     'occurred_at', to_char((now() - interval '60 minutes' + (g - :first) * (interval '3600 seconds' / :count))
                                            AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                     'message', CASE WHEN critical THEN 'Pressure sensor out of range' ELSE 'Routine notice' END),
                   'pending', 0, now()
            FROM f"""),
            {
                "share": critical_share,
                "first": first,
                "last": first + faults - 1,
                "hot": hot,
                "n": devices,
                "prefix": prefix,
                "count": faults,
            },
        )
        conn.execute(text("ANALYZE inbox_event"))
    engine.dispose()
