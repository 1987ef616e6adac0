"""SLA KPIs on cases: started with the case, paused on hold, settled by the first response and the resolution;
the monitor warns and escalates exactly once each (counted at the provider stub)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from cli.commands import main as cli
from models import (
    Agent,
    CaseStatus,
    KpiInstance,
    KpiState,
    Message,
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


def recipients(providers) -> list[str]:
    return sorted(m.json["personalizations"][0]["to"][0]["email"] for m in providers.sendgrid_mails())


def sla_monitor_json() -> dict:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli(["sla-monitor", "--json"]) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_gold_first_response_warns_once_then_fails_once(session, providers, gold_case) -> None:
    first = sla_monitor_json()  # 11 minutes in: past the 10-minute warning
    second = sla_monitor_json()

    assert set(first) == {"states", "warnings_sent", "failures_sent"}
    assert (first["warnings_sent"], first["failures_sent"]) == (1, 0)  # a warning goes to the owner
    assert first["states"]["nearing_noncompliance"] == 1 and first["states"]["in_progress"] == 1
    assert (second["warnings_sent"], second["failures_sent"]) == (0, 0)  # run twice: nothing new
    assert recipients(providers) == ["sofia@carepath.example"]

    from carepath.settings import get_settings

    with session.begin():
        summary, queued = monitor_kpis(
            session=session, settings=get_settings(), now=utcnow() + timedelta(minutes=5)
        )
    assert summary.states["noncompliant"] == 1 and summary.failures_sent == 2
    assert kpis(session, gold_case)["first_response"].state is KpiState.NONCOMPLIANT
    # The case's queue has no manager: the failure goes to the owner and the escalation address.
    session.expire_all()
    assert sorted(session.scalars(select(Message.to_address).where(Message.id.in_(queued)))) == [
        "sofia@carepath.example",
        "support-lead@carepath.example",
    ]
    session.commit()


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


def test_a_pause_over_a_weekend_and_a_holiday_extends_by_the_paused_working_minutes(session) -> None:
    """Office hours in Athens, Christmas a holiday: on hold from Thursday 24 December 17:00 to Monday 28
    December 09:00 is two working hours (Thursday's last, Monday's first), not 88 wall hours."""
    from zoneinfo import ZoneInfo

    from models import BusinessCalendar, Holiday, Tier

    athens = ZoneInfo("Europe/Athens")
    calendar = BusinessCalendar(
        name="Athens office",
        timezone="Europe/Athens",
        hours={d: ["08:00", "18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    )
    session.add(calendar)
    session.flush()
    session.add(Holiday(calendar_id=calendar.id, day=datetime(2026, 12, 25).date(), name="Christmas Day"))
    sla = Sla(name="Standard SLA", applies_to_tier=Tier.STANDARD, calendar_id=calendar.id)
    session.add(sla)
    session.flush()
    session.add(SlaKpi(sla_id=sla.id, kpi="resolve_by", minutes=480, warn_after_minutes=360))
    from tests.utils.factories import make_account, make_contact

    case = make_case(
        session, contact=make_contact(session, account=make_account(session, tier=Tier.STANDARD))
    )
    opened = datetime(2026, 12, 24, 15, tzinfo=athens)  # Thursday 15:00: 3 h that day, 5 h on Monday
    assert start_kpis(session=session, case=case, at=opened) == 1
    session.commit()
    assert kpis(session, case)["resolve_by"].due_at == datetime(2026, 12, 28, 13, tzinfo=athens)

    for reason, at in (
        ("on_hold", datetime(2026, 12, 24, 17, tzinfo=athens)),
        ("in_progress", datetime(2026, 12, 28, 9, tzinfo=athens)),
    ):
        change_case_status(
            session=session,
            case=case,
            to_status=CaseStatus.ACTIVE,
            status_reason=reason,
            source="agent",
            changed_at=at,
        )
        session.commit()
    resumed = kpis(session, case)["resolve_by"]
    assert resumed.state is KpiState.IN_PROGRESS
    assert resumed.paused_minutes == 120
    assert resumed.due_at == datetime(2026, 12, 28, 15, tzinfo=athens)  # two working hours later
    assert resumed.warning_at == datetime(2026, 12, 28, 13, tzinfo=athens)  # Monday 11:00 + 2 h


def test_an_sla_for_some_priorities_applies_only_to_them(session) -> None:
    from models import Priority, Tier
    from tasks.sla import sla_for
    from tests.utils.factories import make_account, make_contact

    silver = Sla(name="Silver SLA", applies_to_tier=Tier.SILVER)
    critical = Sla(
        name="Silver critical SLA", applies_to_tier=Tier.SILVER, applies_to_priorities=["critical"]
    )
    session.add_all([silver, critical])
    session.flush()
    contact = make_contact(session, account=make_account(session, tier=Tier.SILVER))
    urgent = make_case(session, contact=contact, priority=Priority.CRITICAL)
    normal = make_case(session, contact=contact, priority=Priority.NORMAL)
    session.commit()

    assert sla_for(session, urgent).name == "Silver critical SLA"
    assert sla_for(session, normal).name == "Silver SLA"
    session.commit()
