"""Routing and assignment of 10,000 new cases on PostgreSQL: one set-based call, against a per-row ORM loop.

`python -m bench.routing [--cases N] [--sample N]` (PG_URL, default the local server). A database
`carepath_bench_routing` is dropped and recreated, migrated, and filled with set-based SQL: the demo's four
queues and rule set (gold → Gold support, iot → IoT triage, silver → Silver support, else Standard), seven
products in six skill areas, 1,000 accounts and contacts in five languages, 500 agents with four skills each
and room for 24 cases, and N new unrouted cases (a third each from IoT, email and phone). The deployment's code
(`tasks.routing.route_and_assign`) routes and assigns them in batches of 1,000, one transaction each; the
per-row loop (each case as an ORM object: its facts, the rules, the agents' loads, a queue item) runs on a
sample of a fresh copy, and the ratio of their rates is printed. Nothing is asserted: figures, not tests.
"""

from __future__ import annotations

import argparse
import os
import time

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from bench.setup_data import DEFAULT_PG_URL, recreate_database

BENCH_DB = "carepath_bench_routing"
BATCH = 1_000
SKILLS = ["heating", "hot_water", "heat_pumps", "safety", "ev_charging", "iot"]
LANGUAGES = ["en", "el", "pl", "pt", "it"]


def fill(url: str, cases: int) -> None:
    """Queues, rules, products, accounts, contacts, agents and `cases` new cases, all set-based."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("""
            INSERT INTO queue (id, name) VALUES (1, 'Gold support'), (2, 'IoT triage'), (3, 'Silver support'),
                                                (4, 'Standard support');
            INSERT INTO routing_rule_set (id, name, active) VALUES (1, 'Default routing', true);
            INSERT INTO routing_rule (rule_set_id, position, conditions, queue_id) VALUES
                (1, 1, '{"tier": "gold"}', 1), (1, 2, '{"origin": "iot"}', 2), (1, 3, '{"tier": "silver"}', 3),
                (1, 4, '{}', 4);
            INSERT INTO product (id, sku, name, skill) VALUES
                (1, 'CP-THERM-100', 'Thermostat', 'heating'), (2, 'CP-BOIL-200', 'Boiler', 'heating'),
                (3, 'CP-WH-300', 'Water heater', 'hot_water'), (4, 'CP-HP-400', 'Heat pump', 'heat_pumps'),
                (5, 'CP-SMK-500', 'Smoke alarm', 'safety'), (6, 'CP-EV-600', 'EV charger', 'ev_charging'),
                (7, 'CP-HUB-800', 'Hub', 'iot');
            INSERT INTO account (id, name, account_number, tier, created_at)
            SELECT g, 'Bench account ' || g, 'B-' || lpad(g::text, 7, '0'),
                   (ARRAY['gold','silver','standard','standard'])[1 + g % 4], now()
            FROM generate_series(1, 1000) g;
            INSERT INTO account_domain (account_id, domain)
            SELECT g, 'bench' || g || '.example' FROM generate_series(1, 1000) g;
            INSERT INTO contact (id, first_name, last_name, email, language, account_id, active, created_at)
            SELECT g, 'Customer', 'No ' || g, 'c' || g || '@bench' || g || '.example',
                   (ARRAY['en','el','pl','pt','it'])[1 + g % 5], g, true, now()
            FROM generate_series(1, 1000) g;
            -- Each agent: a native language and English, two product areas (one of them iot for every third).
            INSERT INTO agent (id, name, email, skills, capacity, active)
            SELECT g, 'Agent ' || g, 'agent' || g || '@bench.example',
                   jsonb_build_object((ARRAY['en','el','pl','pt','it'])[1 + g % 5], 5, 'en', 4,
                                      (ARRAY['heating','hot_water','heat_pumps','safety','ev_charging','iot'])[1 + g % 6],
                                      1 + g % 5,
                                      CASE WHEN g % 3 = 0 THEN 'iot'
                                           ELSE (ARRAY['heating','hot_water','heat_pumps','safety','ev_charging','iot'])[1 + (g / 6) % 6]
                                      END, 1 + (g / 5) % 5),
                   24, true
            FROM generate_series(1, 500) g;
            """)
        )
        conn.execute(
            text("""
            INSERT INTO support_case (ticket_number, title, account_id, contact_id, product_id, priority, origin,
                                      status, status_reason, fault_occurrences, tracking_token, created_at, updated_at)
            SELECT 'CAS-R' || lpad(g::text, 9, '0'), 'Bench case ' || g, 1 + g % 1000, 1 + g % 1000,
                   1 + g % 7, (ARRAY['critical','high','normal','low'])[1 + g % 4],
                   (ARRAY['iot','email','phone'])[1 + g % 3], 'active', 'in_progress', 0,
                   'bench-routing-' || g, now(), now()
            FROM generate_series(1, :n) g"""),
            {"n": cases},
        )
        conn.execute(text("ANALYZE"))
    engine.dispose()


def naive_route(session: Session, case_id: int) -> None:
    """The obvious loop body: one case as an ORM object, its facts, the rules, the agents and their loads
    (one grouped count per case, not one per agent)."""
    from carepath.rules.routing import AgentLoad, best_agent, first_matching_queue, required_skills
    from models import Account, Agent, Case, CaseStatus, Contact, Product, QueueItem, RoutingRule
    from models.base import utcnow

    case = session.get(Case, case_id)
    account = session.get(Account, case.account_id) if case.account_id else None
    contact = session.get(Contact, case.contact_id) if case.contact_id else None
    product = session.get(Product, case.product_id) if case.product_id else None
    facts = {
        "tier": account.tier.value if account else None,
        "origin": case.origin.value,
        "priority": case.priority.value,
        "product": product.sku if product else None,
        "language": contact.language if contact else None,
        "error_code": case.error_code,
    }
    rules = session.scalars(select(RoutingRule).order_by(RoutingRule.position)).all()
    queue_id = first_matching_queue(facts, [(r.conditions, r.queue_id) for r in rules])
    loads = dict(
        session.execute(
            select(Case.owner_agent_id, func.count())
            .where(Case.owner_agent_id.is_not(None), Case.status == CaseStatus.ACTIVE)
            .group_by(Case.owner_agent_id)
        ).all()
    )
    agents = [
        AgentLoad(a.id, a.skills, a.capacity, loads.get(a.id, 0))
        for a in session.scalars(select(Agent).where(Agent.active.is_(True)).order_by(Agent.id))
    ]
    needed = required_skills(
        product_skill=product.skill if product else None,
        language=facts["language"],
        origin=facts["origin"],
    )
    agent = best_agent(needed, agents)
    now = utcnow()
    case.queue_id, case.owner_agent_id = queue_id, agent.id if agent else None
    session.add(
        QueueItem(
            queue_id=queue_id,
            case_id=case.id,
            worked_by_agent_id=case.owner_agent_id,
            entered_at=now,
            picked_at=now if agent else None,
        )
    )
    session.flush()


def prepare(server: str, cases: int) -> str:
    """A fresh, migrated benchmark database with `cases` new, unrouted cases."""
    from carepath.migrate import upgrade

    url = recreate_database(server, BENCH_DB)
    upgrade(url)
    started = time.perf_counter()
    fill(url, cases)
    print(f"setup: {cases:,} new cases, 500 agents, 4 queues in {time.perf_counter() - started:.1f} s")
    return url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=1_000)
    args = parser.parse_args(argv)
    server = os.environ.get("PG_URL", DEFAULT_PG_URL)

    from models import Case
    from tasks.routing import route_and_assign

    url = prepare(server, args.cases)
    engine = create_engine(url)
    with Session(engine) as session:
        ids = session.scalars(select(Case.id).order_by(Case.id)).all()
    routed = assigned = 0
    started = time.perf_counter()
    for i in range(0, len(ids), BATCH):
        with Session(engine) as session, session.begin():
            summary = route_and_assign(session=session, case_ids=ids[i : i + BATCH])
        routed, assigned = routed + summary.routed, assigned + summary.assigned
    elapsed = time.perf_counter() - started
    engine.dispose()
    rate = args.cases / elapsed
    print(
        f"routing + assignment (set-based, batches of {BATCH:,}), {args.cases:,} new cases: {elapsed:.2f} s "
        f"= {rate:,.0f} cases/s (target: 10,000 in ≤ 10 s); {routed:,} queued, {assigned:,} assigned, "
        f"{routed - assigned:,} waiting"
    )

    url = prepare(server, args.sample)
    engine = create_engine(url)
    with Session(engine) as session:
        ids = session.scalars(select(Case.id).order_by(Case.id)).all()
    started = time.perf_counter()
    for case_id in ids:
        with Session(engine) as session, session.begin():
            naive_route(session, case_id)
    naive_elapsed = time.perf_counter() - started
    engine.dispose()
    naive_rate = args.sample / naive_elapsed
    print(
        f"per-row ORM loop, {args.sample:,} cases (same data shape, one transaction each): {naive_elapsed:.2f} s "
        f"= {naive_rate:,.0f} cases/s → the set-based path is {rate / naive_rate:,.0f}× faster"
    )


if __name__ == "__main__":
    main()
