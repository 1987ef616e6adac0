"""Fault injection on PostgreSQL, bounded in time: processes SIGKILLed at seeded random moments, PostgreSQL
restarted under load, the Prefect server away, a provider that fails for a while in every way it can.

Each test counts what reached the provider stub (exactly once per message) and the rows that prove the rest.
The seed of every random choice is printed and named in failures; CAREPATH_CHAOS_SEED replays it. The long
variants: `python -m bench.chaos`.
"""

from __future__ import annotations

import os
import random
import time

import pytest
from sqlalchemy import func, select

from carepath.settings import reset_settings
from models import Message, MessageChannel, MessageStatus
from tests.utils import chaos
from tests.utils.databases import BACKEND

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
        providers, schedule=schedule, per_tick=(2, 2), deadline=time.monotonic() + 5 * window + 60
    )

    once = chaos.exactly_once_at_the_stub(providers)
    session.expire_all()
    statuses = dict(session.execute(select(Message.status, func.count()).group_by(Message.status)).all())
    by_channel = dict(session.execute(select(Message.channel, func.count()).group_by(Message.channel)).all())
    session.commit()
    figures = f"run {run}, statuses {statuses}"
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
    session.add(SlaKpi(sla_id=sla.id, kpi="first_response", minutes=15, warn_after_minutes=10))
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
    customers = arrange_customers(session, faults=30, resolutions=12, warnings=8)
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
            rng, procs, work=lambda: chaos.send_all(sender, events, rng, deadline=time.monotonic() + 90),
            gap=(0.5, 2.5), min_kills=6,
        )  # fmt: skip
        print(f"kills (seconds, process): {kills}")
        for proc in procs[:2]:
            if not proc.alive():
                proc.start()
        monitor.proc.wait(60)
        chaos.cli_proc(env, tmp_path, "sla-monitor-last", "sla-monitor", "--json").start().proc.wait(60)
        chaos.settle_outbox(stub, env, tmp_path, seed=seed, lease_seconds=4)
        session.expire_all()
        inbox = session.execute(select(InboxEvent.event_id, InboxEvent.state)).all()
        uses = session.execute(
            select(EntitlementUse.case_id, func.count()).where(EntitlementUse.returned_at.is_(None))
            .group_by(EntitlementUse.case_id)
        ).all()  # fmt: skip
        remaining = dict(session.execute(select(Entitlement.id, Entitlement.remaining)).all())
        session.commit()
    finally:
        for proc in procs:
            proc.stop()
        stub.reset()
    context = f"chaos seed {seed}, kills {kills}"
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
    assert monitor.starts + 1 >= 2 and receiver.kills + drain.kills + monitor.kills >= 6, context
