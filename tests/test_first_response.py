"""First response and SLA start from every way a case begins or is answered: a person's reply, call or
article succeeds the KPI; an email-to-case acknowledgement and the IoT journey's SMS do not. The IoT drain starts
its cases' KPIs; SLA failures reach the queue's manager. Real database, real Prefect API, SDKs at the stub."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from datetime import timedelta

import pytest
from sqlalchemy import select

from cli.commands import main as cli
from flows.iot_fault_journey import iot_fault_journey
from models import Agent, Case, KpiInstance, KpiState, Queue, Sla, SlaKpi, Tier
from models.base import utcnow
from tasks.ingest import store_fault_events
from tests.test_email_to_case import email_in, eml
from tests.utils.factories import (
    fault_event,
    make_account,
    make_case,
    make_contact,
    make_device,
    make_entitlement,
)
from tests.utils.flows import completed

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture()
def gold_sla(session) -> Sla:
    sla = Sla(name="Gold SLA", applies_to_tier=Tier.GOLD)
    session.add(sla)
    session.flush()
    session.add_all(
        [
            SlaKpi(sla_id=sla.id, kpi="first_response", minutes=15, warn_after_minutes=10),
            SlaKpi(sla_id=sla.id, kpi="resolve_by", minutes=480, warn_after_minutes=360),
        ]
    )
    session.commit()
    return sla


def kpi_states(session, case_id: int) -> dict[str, KpiState]:
    session.expire_all()
    rows = session.execute(
        select(SlaKpi.kpi, KpiInstance.state)
        .join(SlaKpi, SlaKpi.id == KpiInstance.sla_kpi_id)
        .where(KpiInstance.case_id == case_id)
    ).all()
    session.commit()
    return dict(rows)


def run(*argv: str) -> tuple[int, dict | None]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli(list(argv))
    lines = out.getvalue().strip().splitlines()
    return code, json.loads(lines[-1]) if code == 0 and lines else None


def test_an_email_to_case_acknowledgement_is_not_a_first_response(
    session, providers, tmp_path, gold_sla
) -> None:
    account = make_account(session, tier=Tier.GOLD)
    contact = make_contact(session, account=account)
    make_entitlement(session, account=account)
    session.commit()
    path, _ = eml(tmp_path, sender=contact.email)

    code, out = email_in(path)

    assert code == 0 and out["case_created"] and out["acknowledged"]
    assert len(providers.sendgrid_mails()) == 1  # the acknowledgement reached the provider
    case_id = session.scalar(select(Case.id).where(Case.ticket_number == out["ticket"]))
    assert kpi_states(session, case_id) == {
        "first_response": KpiState.IN_PROGRESS,
        "resolve_by": KpiState.IN_PROGRESS,
    }
    assert session.get(Case, case_id).first_response_at is None


def test_the_iot_drain_starts_kpis_and_its_sms_is_not_a_first_response(session, providers, gold_sla) -> None:
    devices = [make_device(session, owner=make_contact(session)) for _ in range(3)]  # gold accounts
    standard = make_device(
        session, owner=make_contact(session, account=make_account(session, tier=Tier.STANDARD))
    )
    store_fault_events(session=session, events=[fault_event(d.device_id, 14) for d in [*devices, standard]])
    session.commit()

    figures = completed(iot_fault_journey)

    assert figures["cases_opened"] == 4 and len(providers.twilio_messages()) == 4
    cases = {c.device_id: c for c in session.scalars(select(Case))}
    for d in devices:  # gold: both KPIs started on the case's creation, the SMS not counted
        case = cases[d.device_id]
        assert kpi_states(session, case.id) == {
            "first_response": KpiState.IN_PROGRESS,
            "resolve_by": KpiState.IN_PROGRESS,
        }
        first = session.scalars(
            select(KpiInstance)
            .join(SlaKpi, SlaKpi.id == KpiInstance.sla_kpi_id)
            .where(KpiInstance.case_id == case.id, SlaKpi.kpi == "first_response")
        ).one()
        assert first.started_at == case.created_at
        assert first.due_at - first.started_at == timedelta(minutes=15)
        assert case.first_response_at is None
    assert kpi_states(session, cases[standard.device_id].id) == {}  # no SLA for the standard tier here
    session.commit()


@pytest.mark.parametrize(
    "answer",
    [
        ("reply", "--channel", "email", "--text", "We are on it.", "--agent", "sofia@carepath.example"),
        ("reply", "--channel", "sms", "--text", "We are on it.", "--agent", "sofia@carepath.example"),
        ("activity", "add", "--type", "phone_call", "--direction", "outbound", "--subject", "Called back"),
    ],
    ids=["email reply", "sms reply", "outbound call"],
)
def test_a_persons_answer_is_the_first_response(session, providers, gold_sla, answer) -> None:
    session.add(Agent(name="Sofia Georgiou", email="sofia@carepath.example"))
    case = make_case(session)
    from tasks.sla import start_kpis

    start_kpis(session=session, case=case)
    session.commit()
    command, rest = answer[0], answer[1:]
    argv = (
        [command, *rest[:1], case.ticket_number, *rest[1:]]
        if command == "activity"
        else [command, case.ticket_number, *rest]
    )

    code, out = run(*argv, "--json")

    assert code == 0 and out["first_response"] is True
    assert kpi_states(session, case.id)["first_response"] is KpiState.SUCCEEDED
    assert session.get(Case, case.id).first_response_at is not None
    session.commit()


def test_an_inbound_call_and_a_planned_call_are_not_a_first_response(session, gold_sla) -> None:
    case = make_case(session)
    from tasks.sla import start_kpis

    start_kpis(session=session, case=case)
    session.commit()
    due = (utcnow() + timedelta(hours=1)).isoformat()

    _, inbound = run(
        "activity",
        "add",
        case.ticket_number,
        "--type",
        "phone_call",
        "--direction",
        "inbound",
        "--subject",
        "Customer called",
        "--closed",
        "--json",
    )
    _, planned = run(
        "activity",
        "add",
        case.ticket_number,
        "--type",
        "phone_call",
        "--direction",
        "outbound",
        "--subject",
        "Call back",
        "--due",
        due,
        "--json",
    )

    assert (inbound["first_response"], planned["first_response"]) == (False, False)
    assert kpi_states(session, case.id)["first_response"] is KpiState.IN_PROGRESS
    code, done = run("activity", "close", str(planned["id"]), "--json")  # the planned call was made
    assert code == 0 and done["state"] == "completed" and done["first_response"] is True
    assert kpi_states(session, case.id)["first_response"] is KpiState.SUCCEEDED


def test_failures_reach_the_owner_and_the_queues_manager_warnings_the_owner_once_each(
    session, providers, gold_sla
) -> None:
    owner = Agent(name="Sofia Georgiou", email="sofia@carepath.example")
    manager = Agent(name="James Whitaker", email="james@carepath.example")
    session.add_all([owner, manager])
    session.flush()
    queue = Queue(name="Gold support", manager_agent_id=manager.id)
    session.add(queue)
    session.flush()
    case = make_case(session, owner_agent_id=owner.id)
    case.queue_id = queue.id
    from tasks.sla import start_kpis

    start_kpis(session=session, case=case, at=utcnow() - timedelta(minutes=16))  # first response breached
    session.commit()

    _, first = run("sla-monitor", "--json")
    _, second = run("sla-monitor", "--json")

    assert (first["warnings_sent"], first["failures_sent"]) == (0, 2)
    assert (second["warnings_sent"], second["failures_sent"]) == (0, 0)
    sent = sorted(m.json["personalizations"][0]["to"][0]["email"] for m in providers.sendgrid_mails())
    assert sent == ["james@carepath.example", "sofia@carepath.example"]  # not the escalation address
    subjects = {m.json["subject"] for m in providers.sendgrid_mails()}
    assert all("breached: first response" in s for s in subjects)
