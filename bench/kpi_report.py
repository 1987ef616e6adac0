"""The KPI report's memory stays flat as the tables grow: `carepath kpi-report` timed, and its peak memory (max
RSS of the process) read, on PostgreSQL databases of growing size; then the obvious version that loads the
cases and faults into pandas and groups there, for comparison.

`python -m bench.kpi_report [--sizes 10000 1000000]` (PG_URL, default the local server; CAREPATH_BENCH_DB
renames the database). For each size N the database is dropped, recreated, migrated and filled with set-based
SQL: N cases over the last 60 days (70 % resolved, with a resolution activity; 90 % answered), two SLA KPI
instances each, 2N device faults on 10,000 devices of 8 products, error codes 1–40, 20 published articles, and
the demo's three goals for this month. The report covers 30 days (half the rows). Figures, not tests.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.setup_data import DEFAULT_PG_URL, recreate_database

BENCH_DB = os.environ.get("CAREPATH_BENCH_DB", "carepath_bench_kpi")
ROOT = Path(__file__).resolve().parent.parent

FILL = (
    """INSERT INTO product (id, sku, name) SELECT g, 'B-' || g, 'Bench product ' || g FROM generate_series(1, 8) g""",
    """INSERT INTO agent (id, name, email, skills, capacity, active)
       SELECT g, 'Agent ' || g, 'agent' || g || '@bench.example', '{}', 10, true FROM generate_series(1, 10) g""",
    """INSERT INTO queue (id, name) SELECT g, 'Queue ' || g FROM generate_series(1, 4) g""",
    """INSERT INTO contact (id, first_name, last_name, email, language, active, created_at)
       VALUES (1, 'Bench', 'Owner', 'owner@bench.example', 'en', true, now())""",
    """INSERT INTO device (device_id, product_id, owner_contact_id)
       SELECT 'BD-' || g, 1 + g % 8, 1 FROM generate_series(1, 10000) g""",
    """INSERT INTO sla (id, name, pause_on_hold, applies_to_priorities) VALUES (1, 'Bench SLA', true, '[]')""",
    """INSERT INTO sla_kpi (id, sla_id, kpi, minutes, warn_after_minutes)
       VALUES (1, 1, 'first_response', 60, 45), (2, 1, 'resolve_by', 480, 400)""",
    """INSERT INTO support_case (id, ticket_number, title, priority, origin, status, status_reason, product_id,
                                 error_code, owner_agent_id, queue_id, fault_occurrences, tracking_token,
                                 created_at, updated_at, first_response_at, resolved_at,
                                 entitlement_do_not_decrement)
       SELECT g, 'CAS-K' || lpad(g::text, 9, '0'), 'Case ' || g, 'normal', 'email',
              CASE WHEN g % 10 < 7 THEN 'resolved' ELSE 'active' END, 'in_progress', 1 + g % 8, 1 + g % 40,
              1 + g % 10, 1 + g % 4, 0, 'bench-kpi-' || g, t, t,
              CASE WHEN g % 10 < 9 THEN t + (g % 120) * interval '1 minute' END,
              CASE WHEN g % 10 < 7 THEN t + (g % 48) * interval '1 hour' END, false
       FROM (SELECT g, now() - (g::bigint * 5184000 / :n) * interval '1 second' AS t
             FROM generate_series(1, :n) g) s""",
    """INSERT INTO resolution_activity (case_id, resolution, time_spent_minutes, created_at)
       SELECT id, 'done', 10 + id % 110, resolved_at FROM support_case WHERE resolved_at IS NOT NULL""",
    """INSERT INTO kpi_instance (case_id, sla_kpi_id, state, started_at, warning_at, due_at, paused_minutes,
                                 succeeded_at, failed_at)
       SELECT c.id, k.id,
              CASE WHEN c.id % 5 = 0 THEN 'noncompliant' WHEN c.id % 10 < 9 THEN 'succeeded' ELSE 'in_progress' END,
              c.created_at, c.created_at + interval '45 minutes', c.created_at + interval '60 minutes', 0,
              CASE WHEN c.id % 5 <> 0 AND c.id % 10 < 9 THEN c.created_at + interval '30 minutes' END,
              CASE WHEN c.id % 5 = 0 THEN c.created_at + interval '60 minutes' END
       FROM support_case c CROSS JOIN sla_kpi k""",
    """INSERT INTO device_fault (inbox_event_id, device_id, error_code, occurred_at, critical, recorded_at)
       SELECT g, 'BD-' || (1 + g % 10000), 1 + g % 40, now() - (g::bigint * 2592000 / :n) * interval '1 second',
              g % 3 = 0, now()
       FROM generate_series(1, 2 * :n) g""",
    """INSERT INTO knowledge_article (article_number, title, content, keywords, product_id, language, published,
                                      updated_at, usage_count)
       SELECT 'KA-B' || g, 'Error ' || g, '…', jsonb_build_array('error-' || g), 1 + g % 8, 'en', true, now(), 0
       FROM generate_series(1, 20) g""",
    """INSERT INTO goal (name, metric, period_start, period_end, target)
       SELECT m, m, date_trunc('month', now())::date, (date_trunc('month', now()) + interval '1 month - 1 day')::date, t
       FROM (VALUES ('cases_resolved', 150), ('sla_compliance_pct', 95), ('open_cases', 25)) v(m, t)""",
    "ANALYZE",
)

NAIVE = """
import sys, time, resource
import pandas as pd
from sqlalchemy import create_engine
engine = create_engine(sys.argv[1])
started = time.perf_counter()
with engine.connect() as conn:
    cases = pd.read_sql("SELECT * FROM support_case", conn)
    faults = pd.read_sql("SELECT * FROM device_fault", conn)
    devices = pd.read_sql("SELECT device_id, product_id FROM device", conn)
opened = cases.groupby(cases["created_at"].dt.date).size()
per_product = faults.merge(devices, on="device_id").groupby("product_id").size()
print(f"{time.perf_counter() - started:.2f}", file=sys.stderr)
"""


def fill(url: str, cases: int) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for sql in FILL:
            conn.execute(text(sql), {"n": cases})
    engine.dispose()


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a process; its wall time, its peak RSS in MB (from wait4) and its stdout."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    out = proc.stdout.read() if proc.stdout else ""
    if status != 0:
        raise SystemExit(f"{argv[:3]} failed: {proc.stderr.read() if proc.stderr else ''}")
    return elapsed, usage.ru_maxrss / 1024, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000], help="cases per run")
    parser.add_argument("--naive", action="store_true", help="also load the largest size into pandas")
    parser.add_argument("--out", default="/tmp/carepath-bench-kpi", help="folder for the report files")
    args = parser.parse_args(argv)
    from carepath.migrate import upgrade

    server = os.environ.get("PG_URL", DEFAULT_PG_URL)
    carepath = str(Path(sys.executable).with_name("carepath"))
    for n in [0, *args.sizes]:
        url = recreate_database(server, BENCH_DB)
        upgrade(url)
        started = time.perf_counter()
        fill(url, n) if n else None
        setup = time.perf_counter() - started
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CAREPATH_"))}
        env |= {"CAREPATH_DATABASE_URL": url, "CAREPATH_ENV_FILE": ""}
        elapsed, rss, out = measure([carepath, "kpi-report", "--out", args.out, "--json"], env)
        print(
            f"kpi-report, {n:,} cases, {2 * n:,} faults, {2 * n:,} SLA KPIs (set up in {setup:.1f} s): "
            f"{elapsed:.2f} s, peak RSS {rss:,.0f} MB, {len(out.split(','))} files",
            flush=True,
        )
    if args.naive:
        elapsed, rss, _ = measure([sys.executable, "-c", NAIVE, url], env)
        print(
            f"the obvious version at {args.sizes[-1]:,} cases (every case and fault read into pandas, grouped there, "
            f"two of the report's figures only): {elapsed:.2f} s, peak RSS {rss:,.0f} MB"
        )


if __name__ == "__main__":
    main()
