"""Fault injection on PostgreSQL, bounded in time: processes SIGKILLed at seeded random moments, PostgreSQL
restarted under load, the Prefect server away, a provider that fails for a while in every way it can.

Each test counts what reached the provider stub (exactly once per message) and the rows that prove the rest.
The seed of every random choice is printed and named in failures; CAREPATH_CHAOS_SEED replays it. The long
variants: `python -m bench.chaos`.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from carepath.settings import reset_settings
from models import Message, MessageChannel, MessageStatus
from tests.utils import chaos
from tests.utils.databases import BACKEND
from tests.utils.signing import IOT_SECRET

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.skipif(
        BACKEND != "postgresql",
        reason="chaos runs on PostgreSQL, production's database: concurrent processes, SKIP LOCKED claims, "
        "a server that can be restarted (SQLite has one writer and no server)",
    ),
]


def set_env(monkeypatch, **values) -> None:
    for key, value in values.items():
        monkeypatch.setenv(f"CAREPATH_{key.upper()}", str(value))
    reset_settings()


# §4 Provider faults over time: 500s, 429 with Retry-After, time-outs after accepting, a slow provider.


def test_provider_faults_over_time_send_every_message_exactly_once(session, providers, monkeypatch) -> None:
    """Both providers go through 500s, 429s with Retry-After, answers dropped after taking the message and
    5 s per request, one window after the other, while messages keep coming: afterwards every message was
    taken exactly once by its provider and is settled; the backlog drained when the provider recovered."""
    window = float(os.environ.get("CAREPATH_CHAOS_PROVIDER_WINDOW_SECONDS", "3"))
    set_env(
        monkeypatch,
        send_timeout_seconds=7,  # above the slow provider's 5 s: slow is slow, not lost
        send_max_attempts=2,
        send_backoff_seconds=0.05,
        send_defer_seconds=1,
        send_lease_seconds=30,
        reconcile_grace_seconds=2,
    )

    def schedule() -> None:
        for provider in ("twilio", "sendgrid"):
            chaos.open_fault_schedule(providers, provider, window)

    run = chaos.drive_outbox_through_faults(
        providers, schedule=schedule, per_tick=(2, 2), deadline=time.monotonic() + 5 * window + 65
    )

    once = chaos.exactly_once_at_the_stub(providers)
    session.expire_all()
    statuses = dict(session.execute(select(Message.status, func.count()).group_by(Message.status)).all())
    by_channel = dict(session.execute(select(Message.channel, func.count()).group_by(Message.channel)).all())
    session.commit()
    figures = f"run {run}, statuses {statuses}"
    print(f"chaos figures: provider faults ({window:g} s windows): {run.queued} messages, {run.rounds} send "
          f"rounds, {run.reconciles} reconciles, {run.sendgrid_events} SendGrid events, answers {run.census}, "
          f"taken twice {len(once['duplicates'])}, statuses {({str(k): v for k, v in statuses.items()})}")  # fmt: skip
    assert run.settled, f"the outbox did not settle: {figures}"
    assert once["duplicates"] == {}, f"taken more than once: {once['duplicates']}; {figures}"
    assert (
        len(once["sms"]) == by_channel[MessageChannel.SMS]
        and len(once["mail"]) == by_channel[MessageChannel.EMAIL]
    )
    assert set(statuses) <= {MessageStatus.SENT, MessageStatus.DELIVERED}, figures  # nothing lost or failed
    for provider, ok in (("twilio", "201"), ("sendgrid", "202")):  # every kind of fault was met
        census = run.census[provider]
        assert all(census.get(k, 0) > 0 for k in ("500", "429", "0", "slow", ok)), figures


KILLS = int(os.environ.get("CAREPATH_CHAOS_KILLS", "3"))  # at least; each process at least once

# §1 SIGKILL the receiver, the drain loop (and the flow runs inside it) and the SLA monitor mid-work.


def arrange_customers(session, *, faults: int, resolutions: int, warnings: int) -> dict:
    """Devices whose owners get a fault SMS each; cases with an entitlement, each resolved once; gold cases
    past their first-response warning, each with an agent of its own."""
    from datetime import timedelta

    from models import Agent, Sla, SlaKpi, Tier
    from models.base import utcnow
    from tasks.sla import start_kpis
    from tests.utils.factories import make_account, make_case, make_contact, make_device, make_entitlement

    devices = [
        make_device(session, owner=make_contact(session, phone=f"+30691234{i:04d}")).device_id
        for i in range(faults)
    ]
    resolved = []
    for _ in range(resolutions):
        account = make_account(session)
        entitlement = make_entitlement(session, account=account, allocation=15)
        contact = make_contact(session, account=account, phone=None)
        case = make_case(session, contact=contact, entitlement_id=entitlement.id)
        resolved.append({"ticket": case.ticket_number, "email": contact.email, "entitlement": entitlement.id})
    sla = Sla(name="Gold SLA", applies_to_tier=Tier.GOLD)
    session.add(sla)
    session.flush()
    session.add(SlaKpi(sla_id=sla.id, kpi="first_response", minutes=120, warn_after_minutes=10))  # no failure
    agents = []
    for i in range(warnings):
        agent = Agent(name=f"Agent {i}", email=f"agent{i}@carepath.example")
        session.add(agent)
        session.flush()
        case = make_case(session, owner_agent_id=agent.id)
        start_kpis(session=session, case=case, at=utcnow() - timedelta(minutes=11))
        agents.append(agent.email)
    session.commit()
    return {"devices": devices, "resolved": resolved, "agents": agents}


def events_to_send(customers: dict, rng: random.Random) -> list[tuple[str, dict, str]]:
    """(path, payload, secret) of every webhook, shuffled; a few sent twice (a sender's own retry)."""
    from datetime import UTC, datetime

    from tests.utils.signing import CASES_SECRET, IOT_SECRET

    now = datetime.now(UTC).isoformat()
    events = [
        ("/webhooks/iot/faults", {"event_id": f"fault-{d}", "device_id": d, "error_code": 14, "occurred_at": now},
         IOT_SECRET)
        for d in customers["devices"]
    ] + [
        ("/webhooks/cases/status", {"event_id": f"resolve-{r['ticket']}", "ticket_number": r["ticket"],
         "status": "resolved", "resolution": f"Fixed {r['ticket']}.", "changed_at": now}, CASES_SECRET)
        for r in customers["resolved"]
    ]  # fmt: skip
    events += rng.sample(events, k=max(1, len(events) // 10))
    rng.shuffle(events)
    return events


def test_sigkill_receiver_drain_loop_and_monitor_at_random_moments_keeps_everything_exactly_once(
    session, database_url, provider_stub_server, prefect_server, tmp_path
) -> None:
    """While webhooks arrive, the receiver, the drain loop (mid flow run) and the SLA monitor are SIGKILLed at
    seeded random moments and started again. Afterwards: every accepted event processed once, one SMS per
    fault owner and one email per resolution at the stub, one entitlement use per resolution, one warning per
    KPI."""
    from prefect.settings import PREFECT_API_URL

    from models import Entitlement, EntitlementUse, InboxEvent, InboxState

    seed = chaos.chaos_seed()
    rng = random.Random(seed)
    stub = provider_stub_server
    stub.reset()
    customers = arrange_customers(session, faults=20, resolutions=8, warnings=5)
    port = chaos.free_port()
    env = chaos.chaos_env(database_url=database_url, stub_url=stub.base_url, receiver_port=port, home=tmp_path,
                          prefect_api_url=PREFECT_API_URL.value())  # fmt: skip
    receiver = chaos.receiver_proc(env, port, tmp_path).start()
    drain = chaos.drain_loop_proc(env, tmp_path).start()
    monitor = chaos.cli_proc(env, tmp_path, "sla-monitor", "sla-monitor", "--json").start()
    sender = chaos.Sender(f"http://127.0.0.1:{port}")
    events = events_to_send(customers, rng)
    procs = [receiver, drain, monitor]
    for provider, ok in (("twilio", 201), ("sendgrid", 202)):  # sends in flight when a kill lands
        stub.fault_window(provider, 120, status=ok, delay=0.05)
    try:
        chaos.wait_until(lambda: chaos.receiver_up(sender.base_url), 60, "the receiver", seed=seed)
        kills = chaos.run_with_kills(
            rng, procs, work=lambda: chaos.send_all(sender, events, rng, deadline=time.monotonic() + 240),
            gap=(1.0, 3.0), min_kills=KILLS,
        )  # fmt: skip
        print(f"chaos figures: kills (seconds, process) {kills}")
        for proc in procs[:2]:
            if not proc.alive():
                proc.start()
        monitor.proc.wait(60)
        chaos.cli_proc(env, tmp_path, "sla-monitor-last", "sla-monitor", "--json").start().proc.wait(60)
        chaos.settle_outbox(stub, env, tmp_path, seed=seed, lease_seconds=4)
        session.expire_all()
        inbox = session.execute(
            select(InboxEvent.event_id, InboxEvent.state).where(InboxEvent.source != "sendgrid")
        ).all()  # SendGrid's events (fed by the harness) aside
        uses = session.execute(
            select(EntitlementUse.case_id, func.count()).where(EntitlementUse.returned_at.is_(None))
            .group_by(EntitlementUse.case_id)
        ).all()  # fmt: skip
        remaining = dict(session.execute(select(Entitlement.id, Entitlement.remaining)).all())
        session.commit()
    finally:
        for proc in procs:
            proc.stop()
    context = f"chaos seed {seed}, kills {kills}"
    print(f"chaos figures: SIGKILL: {len(kills)} kills {sorted({n for _, n in kills})}, {len(events)} posts "
          f"({len(sender.answers)} answers, {sender.errors} connection errors), {len(inbox)} inbox rows, "
          f"{len(stub.twilio_created())} SMS / {len(customers['devices'])} faults, {len(stub.sendgrid_accepted())}"
          f" emails / {len(customers['resolved']) + len(customers['agents'])} expected, {len(uses)} open "
          f"entitlement uses / {len(customers['resolved'])} resolutions")  # fmt: skip
    sent_ids = {payload["event_id"] for _, payload, _ in events}
    assert set(sender.accepted) == sent_ids, context  # the sender got a 202 for each, in the end
    assert sorted(e for e, _ in inbox) == sorted(sent_ids), context  # each stored once
    assert {s for _, s in inbox} == {InboxState.PROCESSED}, context  # and processed
    sms_to = [m["to"] for m in stub.twilio_created()]
    assert sorted(sms_to) == sorted({*sms_to}) and len(sms_to) == len(customers["devices"]), context
    mails_to = [r.json["personalizations"][0]["to"][0]["email"] for r in stub.sendgrid_accepted()]
    expected = [r["email"] for r in customers["resolved"]] + customers["agents"]
    assert sorted(mails_to) == sorted(expected), context  # one resolution email, one warning each
    assert len(uses) == len(customers["resolved"]) and all(n == 1 for _, n in uses), context
    assert all(remaining[r["entitlement"]] == 14 for r in customers["resolved"]), context
    assert {n for _, n in kills} == {p.name for p in procs} and len(kills) >= KILLS, context  # each, mid-work


# §2 PostgreSQL restarted while the receiver accepts and a journey drains (a cluster of its own).


@contextmanager
def pointed_at(monkeypatch, url: str) -> Iterator[None]:
    """This process's settings and engine on another database for a while (the harness's helpers read it)."""
    from carepath import db

    monkeypatch.setenv("CAREPATH_DATABASE_URL", url)
    reset_settings()
    db.reset_engine()
    try:
        yield
    finally:
        monkeypatch.undo()
        reset_settings()
        db.reset_engine()


def private_postgres_or_skip():
    """initdb/pg_ctl, or a skip saying why (never in CI: there the test must run)."""
    bin_dir = chaos.postgres_bin()
    if bin_dir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the PostgreSQL restart test, but initdb/pg_ctl were not found")
        pytest.skip(
            "initdb/pg_ctl not found (/usr/lib/postgresql/*/bin or PATH): no private cluster to restart"
        )
    return bin_dir


def test_postgresql_restart_under_load_is_503_with_retry_after_then_nothing_accepted_is_lost(
    provider_stub_server, prefect_server, tmp_path, monkeypatch
) -> None:
    """A private PostgreSQL cluster is stopped while faults arrive and the drain loop works, then started
    again: meanwhile the receiver answers 503 with Retry-After (never a 202 for what it did not store), and
    both processes recover by themselves; every accepted fault is processed once and its SMS sent once."""
    from prefect.settings import PREFECT_API_URL
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from carepath.migrate import upgrade
    from models import InboxEvent, InboxState
    from tests.utils.factories import make_contact, make_device

    seed = chaos.chaos_seed()
    rng = random.Random(seed)
    stub = provider_stub_server
    stub.reset()
    with chaos.private_cluster(private_postgres_or_skip()) as cluster:
        admin = create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE carepath"))
        admin.dispose()
        url = cluster.url("carepath")
        upgrade(url)
        with pointed_at(monkeypatch, url):
            engine = create_engine(url, pool_pre_ping=True)  # its connections die with the server
            with Session(engine) as session:
                devices = [
                    make_device(session, owner=make_contact(session, phone=f"+30691235{i:04d}")).device_id
                    for i in range(24)
                ]
                session.commit()
            port = chaos.free_port()
            env = chaos.chaos_env(database_url=url, stub_url=stub.base_url, receiver_port=port, home=tmp_path,
                                  prefect_api_url=PREFECT_API_URL.value())  # fmt: skip
            receiver = chaos.receiver_proc(env, port, tmp_path).start()
            drain = chaos.drain_loop_proc(env, tmp_path).start()
            sender = chaos.Sender(f"http://127.0.0.1:{port}")
            now = datetime.now(UTC).isoformat()
            events = [
                ("/webhooks/iot/faults",
                 {"event_id": f"fault-{d}", "device_id": d, "error_code": 14, "occurred_at": now}, IOT_SECRET)
                for d in devices
            ]  # fmt: skip
            worker = threading.Thread(
                target=chaos.send_all, args=(sender, events, rng), kwargs={"deadline": time.monotonic() + 240}
            )
            try:
                chaos.wait_until(lambda: receiver.ready() and drain.ready(), 120, "receiver and drain loop")
                worker.start()
                chaos.wait_until(
                    lambda: len(sender.accepted) >= 6, 60, "the first faults accepted", seed=seed
                )
                cluster.stop("fast")
                chaos.wait_until(
                    lambda: any(s == 503 for _, s, _ in sender.answers), 60, "a 503 while PostgreSQL is away"
                )
                time.sleep(rng.uniform(1, 3))
                cluster.start()
                worker.join(240)
                assert not worker.is_alive(), f"the sender never finished (chaos seed {seed})"
                chaos.settle_outbox(stub, env, tmp_path, seed=seed, lease_seconds=4)
                with Session(engine) as session:
                    inbox = session.execute(
                        select(InboxEvent.event_id, InboxEvent.state).where(InboxEvent.source != "sendgrid")
                    ).all()  # SendGrid's events (fed by the harness) aside
                survived = receiver.alive() and drain.alive() and receiver.starts == drain.starts == 1
            finally:
                receiver.stop()
                drain.stop()
                engine.dispose()
    statuses = {s for _, s, _ in sender.answers}
    census = {s: sum(1 for _, a, _ in sender.answers if a == s) for s in statuses}
    print(f"chaos figures: PostgreSQL restart: answers {census}, connection errors {sender.errors}, "
          f"{len(inbox)} faults in the inbox, {len(stub.twilio_created())} SMS at the stub")  # fmt: skip
    context = f"chaos seed {seed}; answers {statuses}; receiver log:\n{receiver.tail()}"
    assert statuses <= {202, 503}, context  # never a 500, never a 202 for what was not stored
    assert all(after for _, s, after in sender.answers if s == 503), context  # each 503 says Retry-After
    assert survived, context  # neither process was restarted: both reconnected by themselves
    assert sorted(e for e, _ in inbox) == sorted(f"fault-{d}" for d in devices), context
    assert {s for _, s in inbox} == {InboxState.PROCESSED}, context
    sms_to = [m["to"] for m in stub.twilio_created()]
    assert len(sms_to) == len(set(sms_to)) == len(devices), context  # one SMS per fault owner


# §3 The Prefect server away: webhooks still accepted, the sweep announces what waited when it returns.

PREFECT_DOWN_SECONDS = float(os.environ.get("CAREPATH_CHAOS_PREFECT_DOWN_SECONDS", "10"))


def inbox_rows(session) -> list:
    session.expire_all()
    from models import InboxEvent

    rows = session.execute(
        select(InboxEvent.id, InboxEvent.event_id, InboxEvent.state, InboxEvent.announced_at)
    )
    result = rows.all()
    session.commit()
    return result


def test_prefect_server_down_loses_nothing_and_the_sweep_announces_what_waited(
    session, database_url, provider_stub_server, tmp_path
) -> None:
    """A real Prefect server is stopped for CAREPATH_CHAOS_PREFECT_DOWN_SECONDS (10 s here, a minute in the
    long run) and started again on the same port: every webhook meanwhile gets its 202 and its inbox row; when
    the server is back the inbox sweep announces every row that waited, the drain loop goes on, and every
    fault gets its one SMS."""
    import httpx

    from models import InboxState
    from tests.utils.factories import make_contact, make_device

    seed = chaos.chaos_seed()
    rng = random.Random(seed)
    stub = provider_stub_server
    stub.reset()
    devices = [
        make_device(session, owner=make_contact(session, phone=f"+30691236{i:04d}")).device_id
        for i in range(16)
    ]
    session.commit()
    port, receiver_port = chaos.free_port(), chaos.free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = chaos.chaos_env(database_url=database_url, stub_url=stub.base_url, receiver_port=receiver_port,
                          home=tmp_path, prefect_api_url=api_url)  # fmt: skip
    with chaos.prefect_server_proc(database_url, port, tmp_path) as server:
        receiver = chaos.receiver_proc(env, receiver_port, tmp_path).start()
        drain = chaos.drain_loop_proc(env, tmp_path).start()
        sender = chaos.Sender(f"http://127.0.0.1:{receiver_port}")
        now = datetime.now(UTC).isoformat()
        events = [
            ("/webhooks/iot/faults",
             {"event_id": f"fault-{d}", "device_id": d, "error_code": 14, "occurred_at": now}, IOT_SECRET)
            for d in devices
        ]  # fmt: skip
        before, during, after = events[:4], events[4:12], events[12:]
        try:
            chaos.wait_until(lambda: receiver.ready() and drain.ready(), 120, "receiver and drain loop")
            chaos.send_all(sender, before, rng, deadline=time.monotonic() + 60)
            server.stop()
            down_at = time.monotonic()
            chaos.send_all(sender, during, rng, deadline=time.monotonic() + 60)
            time.sleep(max(0.0, PREFECT_DOWN_SECONDS - (time.monotonic() - down_at)))
            drain.proc.send_signal(signal.SIGSTOP)  # a drain loop busy elsewhere: the rows wait for the sweep
            waiting = {
                r.id for r in inbox_rows(session) if r.state is InboxState.PENDING and not r.announced_at
            }
            server.start()
            chaos.wait_until(server.ready, 120, "the Prefect server back on its port")
            sweep = chaos.flow_proc(env, tmp_path, "inbox-sweep", "flows.inbox_sweep:inbox_sweep",
                                    announce_after_seconds=0).start()  # fmt: skip
            assert sweep.proc.wait(180) == 0, sweep.tail()
            figures = chaos.last_json(sweep)
            drain.proc.send_signal(signal.SIGCONT)
            chaos.send_all(sender, after, rng, deadline=time.monotonic() + 60)
            chaos.settle_outbox(stub, env, tmp_path, seed=seed, lease_seconds=4)
            rows = inbox_rows(session)
            announced = httpx.post(
                f"{api_url}/events/filter", json={"filter": {"event": {"prefix": ["carepath."]}}}, timeout=10
            ).json()
        finally:
            receiver.stop()
            drain.proc.send_signal(signal.SIGCONT)
            drain.stop()
    context = f"chaos seed {seed}; sweep {figures}; waiting {sorted(waiting)}"
    print(f"chaos figures: Prefect server down {PREFECT_DOWN_SECONDS:g} s: {len(sender.answers)} answers "
          f"{sorted({s for _, s, _ in sender.answers})}, {len(waiting)} rows waited unannounced, the sweep "
          f"announced {figures.get('announced')}, {len(stub.twilio_created())} SMS for {len(devices)} faults")  # fmt: skip
    assert all(s == 202 for _, s, _ in sender.answers), context  # Prefect away: still accepted
    assert figures["announced"] == len(waiting) > 0, context  # the sweep announced what waited
    assert all(r.announced_at for r in rows if r.id in waiting), context
    on_server = {i for e in announced.get("events", []) for i in e["payload"].get("inbox_ids", [])}
    assert waiting <= on_server, context  # and the server has those events
    assert sorted(r.event_id for r in rows) == sorted(f"fault-{d}" for d in devices), context
    assert {r.state for r in rows} == {InboxState.PROCESSED}, context
    sms_to = [m["to"] for m in stub.twilio_created()]
    assert len(sms_to) == len(set(sms_to)) == len(devices), context
