"""SLA monitor over 100,000 open KPI instances on PostgreSQL: one set-based run, against a per-row ORM loop.

`python -m bench.sla_monitor [--instances N] [--sample N]` (PG_URL, default the local server). A database
`carepath_bench_sla` is dropped and recreated, migrated, and filled with set-based SQL: N cases, each with a
first-response KPI instance; a tenth are past their warning time, a hundredth past their due time. The monitor
run (`tasks.sla.monitor_kpis`, the deployment's code, warning and failure emails queued in the outbox) is timed;
the per-row loop (load each running instance, compare times, update, queue its emails) runs on a sample of a
fresh copy of the same data, and the ratio of their rates is printed. Nothing is asserted: figures, not tests.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import timedelta

from sqlalchemy import create_engine, select, text

from bench.setup_data import DEFAULT_PG_URL, recreate_database

BENCH_DB = "carepath_bench_sla"


def fill(url: str, instances: int) -> None:
    """An agent, an SLA with a first-response KPI, N cases and one running KPI instance each."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO agent (id, name, email, skills, capacity, active) VALUES (1, 'A', 'a@x.example', '[]', 10, true)"
            )
        )
        conn.execute(text("INSERT INTO sla (id, name, pause_on_hold) VALUES (1, 'Gold SLA', true)"))
        conn.execute(
            text(
                "INSERT INTO sla_kpi (id, sla_id, kpi, minutes, warn_after_minutes) VALUES (1, 1, 'first_response', 15, 10)"
            )
        )
        conn.execute(
            text("""
            INSERT INTO support_case (id, ticket_number, title, priority, origin, status, status_reason, owner_agent_id,
                                      fault_occurrences, tracking_token, created_at, updated_at)
            SELECT g, 'CAS-B' || lpad(g::text, 9, '0'), 'Bench case ' || g, 'normal', 'email', 'active',
                   'in_progress', 1, 0, 'bench-token-' || g, now(), now()
            FROM generate_series(1, :n) g"""),
            {"n": instances},
        )
        # Minutes since the start: most fresh, a tenth past the 10-minute warning, a hundredth past 15 minutes.
        conn.execute(
            text("""
            INSERT INTO kpi_instance (case_id, sla_kpi_id, state, started_at, warning_at, due_at, paused_minutes)
            SELECT g, 1, 'in_progress', now() - m * interval '1 minute',
                   now() - (m - 10) * interval '1 minute', now() - (m - 15) * interval '1 minute', 0
            FROM (SELECT g, CASE WHEN g % 100 = 0 THEN 16 WHEN g % 10 = 0 THEN 11 ELSE 1 END AS m
                  FROM generate_series(1, :n) g) s"""),
            {"n": instances},
        )
        conn.execute(text("ANALYZE"))
    engine.dispose()


def naive_monitor(session, settings, now) -> int:
    """The obvious loop: each running instance as an ORM object, its state decided and its emails queued."""
    from models import Agent, Case, KpiInstance, KpiState, MessageChannel
    from tasks.messaging import insert_messages, outbox_row

    moved = 0
    running = session.scalars(
        select(KpiInstance).where(
            KpiInstance.state.in_([KpiState.IN_PROGRESS, KpiState.NEARING_NONCOMPLIANCE])
        )
    ).all()
    for instance in running:
        step = None
        if instance.due_at <= now:
            instance.state, instance.failed_at, step = KpiState.NONCOMPLIANT, now, "failure"
        elif instance.state is KpiState.IN_PROGRESS and instance.warning_at <= now:
            instance.state, step = KpiState.NEARING_NONCOMPLIANCE, "warning"
        if step is None:
            continue
        moved += 1
        case = session.get(Case, instance.case_id)
        owner = session.get(Agent, case.owner_agent_id) if case.owner_agent_id else None
        for to in [a for a in (owner.email if owner else None, settings.sla_escalation_email) if a]:
            insert_messages(
                session=session,
                rows=[
                    outbox_row(
                        key=f"naive:{instance.id}:{step}:{to}", channel=MessageChannel.EMAIL, case_id=case.id,
                        contact_id=None, journey_step=f"sla_{step}", to_address=to, subject="SLA", body="SLA",
                        template="email/sla", blocked=None, now=now,
                    )
                ],
            )  # fmt: skip
        session.flush()
    return moved


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=5_000)
    args = parser.parse_args(argv)
    server = os.environ.get("PG_URL", DEFAULT_PG_URL)

    url = prepare(server, args.instances)
    from sqlalchemy.orm import Session

    from carepath.settings import Settings
    from models.base import utcnow
    from tasks.sla import monitor_kpis

    settings = Settings(database_url=url)
    engine = create_engine(url)
    with Session(engine) as session, session.begin():
        started = time.perf_counter()
        summary, queued = monitor_kpis(session=session, settings=settings, now=utcnow())
        elapsed = time.perf_counter() - started
    print(
        f"SLA monitor (set-based), {args.instances:,} running KPI instances: {elapsed:.2f} s "
        f"= {args.instances / elapsed:,.0f} instances/s (target: 100,000 in ≤ 5 s); "
        f"{summary.states['nearing_noncompliance']:,} warned, {summary.states['noncompliant']:,} failed, "
        f"{len(queued):,} emails queued"
    )
    engine.dispose()

    url = prepare(server, args.sample)
    engine = create_engine(url)
    with Session(engine) as session, session.begin():
        started = time.perf_counter()
        moved = naive_monitor(session, settings, utcnow() + timedelta(seconds=1))
        naive_elapsed = time.perf_counter() - started
    engine.dispose()
    naive_rate, rate = args.sample / naive_elapsed, args.instances / elapsed
    print(
        f"per-row ORM loop, {args.sample:,} instances (same data shape, same indexes): {naive_elapsed:.2f} s = "
        f"{naive_rate:,.0f} instances/s ({moved:,} moved) → the set-based monitor is {rate / naive_rate:,.0f}× faster"
    )


def prepare(server: str, instances: int) -> str:
    """A fresh, migrated benchmark database with `instances` running KPI instances."""
    from carepath.migrate import upgrade

    url = recreate_database(server, BENCH_DB)
    upgrade(url)
    started = time.perf_counter()
    fill(url, instances)
    print(
        f"setup: {instances:,} cases with a running first-response KPI in {time.perf_counter() - started:.1f} s"
    )
    return url


if __name__ == "__main__":
    main()
