"""SLA KPIs on cases: started with the case, paused on hold, settled by the first response and the resolution;
the monitor warns and escalates exactly once each (counted at the provider stub)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from datetime import timedelta

import pytest
from sqlalchemy import select

from cli.commands import main as cli
from models import (
    Agent,
    CaseStatus,
    KpiInstance,
    KpiState,
    Sla,
    SlaKpi,
)
from models.base import utcnow
from tasks.case_status import change_case_status
from tasks.sla import monitor_kpis, record_first_response, start_kpis
from tests.utils.factories import make_case

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture()
def gold_case(session):
    """A gold customer's case under "Gold SLA": first response in 15 minutes (warn at 10), resolve in 8 hours."""
    sla = Sla(name="Gold SLA")
    from models import Tier

    sla.applies_to_tier = Tier.GOLD
    session.add(sla)
    session.flush()
    session.add_all(
        [
            SlaKpi(sla_id=sla.id, kpi="first_response", minutes=15, warn_after_minutes=10),
            SlaKpi(sla_id=sla.id, kpi="resolve_by", minutes=480, warn_after_minutes=360),
        ]
    )
    agent = Agent(name="Sofia Georgiou", email="sofia@carepath.example")
    session.add(agent)
    session.flush()
    case = make_case(session, owner_agent_id=agent.id)
    assert start_kpis(session=session, case=case, at=utcnow() - timedelta(minutes=11)) == 2
    session.commit()
    return case


def kpis(session, case) -> dict[str, KpiInstance]:
    session.expire_all()
    rows = session.execute(
        select(SlaKpi.kpi, KpiInstance)
        .join(SlaKpi, SlaKpi.id == KpiInstance.sla_kpi_id)
        .where(KpiInstance.case_id == case.id)
    ).all()
    session.commit()
    return {k: i for k, i in rows}


def sla_monitor_json() -> dict:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli(["sla-monitor", "--json"]) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_gold_first_response_warns_once_then_fails_once(session, providers, gold_case) -> None:
    first = sla_monitor_json()  # 11 minutes in: past the 10-minute warning
    second = sla_monitor_json()

    assert set(first) == {"states", "warnings_sent", "failures_sent"}
    assert (first["warnings_sent"], first["failures_sent"]) == (2, 0)  # the owner and the escalation address
    assert first["states"]["nearing_noncompliance"] == 1 and first["states"]["in_progress"] == 1
    assert (second["warnings_sent"], second["failures_sent"]) == (0, 0)  # run twice: nothing new
    assert len(providers.sendgrid_mails()) == 2
    assert {m.json["personalizations"][0]["to"][0]["email"] for m in providers.sendgrid_mails()} == {
        "sofia@carepath.example",
        "support-lead@carepath.example",
    }

    from carepath.settings import get_settings

    with session.begin():
        summary, _ = monitor_kpis(
            session=session, settings=get_settings(), now=utcnow() + timedelta(minutes=5)
        )
    assert summary.states["noncompliant"] == 1
    assert kpis(session, gold_case)["first_response"].state is KpiState.NONCOMPLIANT


def test_first_response_in_time_succeeds_and_sends_nothing(session, providers, gold_case) -> None:
    with session.begin():
        assert record_first_response(session=session, case_id=gold_case.id)
    assert kpis(session, gold_case)["first_response"].state is KpiState.SUCCEEDED
    assert sla_monitor_json()["warnings_sent"] == 0
    assert providers.sendgrid_mails() == []


def test_resolution_succeeds_resolve_by_and_cancels_an_unanswered_first_response(session, gold_case) -> None:
    change_case_status(session=session, case=gold_case, to_status=CaseStatus.RESOLVED, source="agent")
    session.commit()
    states = {k: i.state for k, i in kpis(session, gold_case).items()}
    assert states == {"resolve_by": KpiState.SUCCEEDED, "first_response": KpiState.CANCELLED}


def test_on_hold_pauses_and_resuming_moves_the_due_time(session, gold_case) -> None:
    due_before = kpis(session, gold_case)["resolve_by"].due_at
    change_case_status(
        session=session,
        case=gold_case,
        to_status=CaseStatus.ACTIVE,
        status_reason="waiting_for_customer",
        source="agent",
        changed_at=utcnow(),
    )
    session.commit()
    assert {i.state for i in kpis(session, gold_case).values()} == {KpiState.PAUSED}
    assert sla_monitor_json()["warnings_sent"] == 0  # a paused clock neither warns nor fails

    change_case_status(
        session=session,
        case=gold_case,
        to_status=CaseStatus.ACTIVE,
        status_reason="in_progress",
        source="agent",
        changed_at=utcnow() + timedelta(hours=2),
    )
    session.commit()
    resumed = kpis(session, gold_case)["resolve_by"]
    assert resumed.state is KpiState.IN_PROGRESS
    assert resumed.due_at - due_before == pytest.approx(timedelta(hours=2), abs=timedelta(seconds=5))
