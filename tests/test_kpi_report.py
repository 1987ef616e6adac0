"""Goals and the KPI report on a small organisation whose every figure is worked out by hand below: goal
actuals and progress per agent, team and everyone; cases opened and resolved per day; SLA compliance; median
first response; open cases; faults and cost of support per product; rising products and error codes; knowledge
gaps. Then the files (real PNGs), the CLI through the installed entry point, and the flow with its artifact.

The report runs as of Monday 30 November 2026 over 7 days (24–30 Nov); "rising" compares 28–30 Nov with
25–27 Nov. Cases (created → first response → resolved; owner, team, product, error code, minutes on the
resolution):

    C1  24 Nov 09:00 → 09:10 → 24 Nov 15:00   ana  Gold      BOIL          14  30
    C2  24 Nov 10:00 → 10:30 → 26 Nov 11:00   ana  Gold      BOIL (device) 14  90
    C3  26 Nov 08:00 → 08:20 → 28 Nov 09:00   ben  Standard  HP             7  45
    C4  28 Nov 12:00 → 13:00 → open           ben  Standard  HP             7
    C5  29 Nov 12:00 → none  → open           ana  Gold      HP             7
    C6  30 Nov 07:00 → 07:05 → cancelled 08:00 –    Standard  –              –
    C7  20 Nov 10:00 → 10:40 → 25 Nov 10:00   ben  Gold      BOIL          14  60
    C8  10 Nov 10:00 → none  → open           ana  Gold      BOIL
    C9  22 Nov 10:00 → 10:25 → 23 Nov 10:00   ben  Standard  HP             7  100 (resolved before the 7 days)
    C10 25 Nov 09:00 → none  → reopened       ben  Standard  HP             7  20 (resolution kept, case active)
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from cli.commands import main as cli
from models import (
    Agent,
    Case,
    CaseStatus,
    CaseStatusChange,
    Channel,
    Device,
    DeviceFault,
    Goal,
    KnowledgeArticle,
    KpiInstance,
    KpiState,
    Product,
    Queue,
    ResolutionActivity,
    Sla,
    SlaKpi,
)
from tasks.goals import EVERYONE, Owner, measure
from tasks.kpi_report import KpiReportConfig, collect_kpis, records, write_report
from tasks.kpis import daily_activity, rising
from tests.utils.databases import embedded_only
from tests.utils.factories import make_contact
from tests.utils.flows import completed

ROOT = Path(__file__).resolve().parent.parent
AS_OF = date(2026, 11, 30)
CONFIG = KpiReportConfig(
    as_of=AS_OF, days=7, hourly_rate=90, trend_days=3, trend_min_count=5, rise_pct=50, gap_min_count=2
)
PNG = b"\x89PNG\r\n\x1a\n"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


class Org:
    """What the fixture made, by name."""

    def __init__(self, **ids: int) -> None:
        self.__dict__.update(ids)


@pytest.fixture()
def org(session: Session) -> Org:
    contact = make_contact(session)
    boil, hp, ev = (
        Product(sku="T-BOIL", name="Boiler B"),
        Product(sku="T-HP", name="Heat pump H"),
        Product(sku="T-EV", name="Charger E"),
    )
    ana, ben = Agent(name="Ana", email="ana@carepath.test"), Agent(name="Ben", email="ben@carepath.test")
    gold, standard = Queue(name="Gold support"), Queue(name="Standard support")
    sla = Sla(name="Test SLA")
    session.add_all([boil, hp, ev, ana, ben, gold, standard, sla])
    session.flush()
    first_response = SlaKpi(sla_id=sla.id, kpi="first_response", minutes=60, warn_after_minutes=45)
    resolve_by = SlaKpi(sla_id=sla.id, kpi="resolve_by", minutes=480, warn_after_minutes=400)
    d1 = Device(device_id="DEV-BOIL-1", product_id=boil.id, owner_contact_id=contact.id)
    d2 = Device(device_id="DEV-HP-1", product_id=hp.id, owner_contact_id=contact.id)
    d3 = Device(device_id="DEV-BARE-1", product_id=None, owner_contact_id=contact.id)
    session.add_all([first_response, resolve_by, d1, d2, d3])
    session.flush()

    def case(n, created, first, resolved, agent, queue, product=None, device=None, code=None, minutes=None):
        c = Case(
            ticket_number=f"CAS-K{n:04d}",
            title=f"case {n}",
            contact_id=contact.id,
            account_id=contact.account_id,
            product_id=product.id if product else None,
            device_id=device.device_id if device else None,
            error_code=code,
            origin=Channel.EMAIL,
            status=CaseStatus.RESOLVED if resolved else CaseStatus.ACTIVE,
            owner_agent_id=agent.id if agent else None,
            queue_id=queue.id,
            tracking_token=f"kpi-test-token-{n:04d}-abcdefghijklmnop",
            created_at=created,
            first_response_at=first,
            resolved_at=resolved,
        )
        session.add(c)
        session.flush()
        session.add(
            CaseStatusChange(case_id=c.id, to_status=CaseStatus.ACTIVE, source="test", changed_at=created)
        )
        if minutes is not None:
            session.add(
                ResolutionActivity(
                    case_id=c.id,
                    resolution="done",
                    time_spent_minutes=minutes,
                    created_at=resolved or at(26, 12),
                )
            )
        return c

    c1 = case(1, at(24, 9), at(24, 9, 10), at(24, 15), ana, gold, boil, code=14, minutes=30)
    c2 = case(2, at(24, 10), at(24, 10, 30), at(26, 11), ana, gold, device=d1, code=14, minutes=90)
    c3 = case(3, at(26, 8), at(26, 8, 20), at(28, 9), ben, standard, hp, code=7, minutes=45)
    c4 = case(4, at(28, 12), at(28, 13), None, ben, standard, hp, code=7)
    c5 = case(5, at(29, 12), None, None, ana, gold, hp, code=7)
    c6 = case(6, at(30, 7), at(30, 7, 5), None, None, standard)
    c6.status = CaseStatus.CANCELLED
    session.add(
        CaseStatusChange(
            case_id=c6.id,
            from_status=CaseStatus.ACTIVE,
            to_status=CaseStatus.CANCELLED,
            source="test",
            changed_at=at(30, 8),
        )
    )
    c7 = case(7, at(20, 10), at(20, 10, 40), at(25, 10), ben, gold, boil, code=14, minutes=60)
    c8 = case(8, at(10, 10), None, None, ana, gold, boil)
    c9 = case(9, at(22, 10), at(22, 10, 25), at(23, 10), ben, standard, hp, code=7, minutes=100)
    case(10, at(25, 9), None, None, ben, standard, hp, code=7, minutes=20)  # resolved on the 26th, reopened

    def kpi(c, sla_kpi, due, state, succeeded=None, failed=None):
        session.add(
            KpiInstance(
                case_id=c.id,
                sla_kpi_id=sla_kpi.id,
                state=state,
                started_at=c.created_at,
                warning_at=due - timedelta(minutes=15),
                due_at=due,
                succeeded_at=succeeded,
                failed_at=failed,
            )
        )

    ok, failed = KpiState.SUCCEEDED, KpiState.NONCOMPLIANT
    kpi(c1, first_response, at(24, 10), ok, at(24, 9, 10))  # met, 24th
    kpi(c2, first_response, at(24, 11), ok, at(24, 10, 30))  # met, 24th
    kpi(c1, resolve_by, at(24, 17), ok, at(24, 15))  # met, 24th
    kpi(c7, resolve_by, at(25, 12), ok, at(25, 10))  # met, 25th
    kpi(c3, first_response, at(26, 9), ok, at(26, 8, 20))  # met, 26th
    kpi(c3, resolve_by, at(27, 8), failed, failed=at(27, 8))  # missed, 27th
    kpi(c4, first_response, at(28, 12, 45), ok, at(28, 13))  # succeeded late: missed, 28th
    kpi(c5, first_response, at(29, 13), failed, failed=at(29, 13))  # missed, 29th
    kpi(c8, first_response, at(10, 11), KpiState.IN_PROGRESS)  # still running: left out
    kpi(c6, first_response, at(30, 8), KpiState.CANCELLED)  # cancelled: left out
    kpi(c9, first_response, at(22, 11), ok, at(22, 10, 25))  # ended before the 7 days

    event = iter(range(1, 1000))

    def faults(device_id: str, code: int, when: datetime, n: int) -> None:
        for i in range(n):
            session.add(
                DeviceFault(
                    inbox_event_id=next(event),
                    device_id=device_id,
                    error_code=code,
                    occurred_at=when + timedelta(minutes=i),
                    critical=False,
                )
            )

    faults("DEV-BOIL-1", 14, at(20, 12), 4)  # before the 7 days
    faults("DEV-BOIL-1", 14, at(25, 12), 2)
    faults("DEV-BOIL-1", 14, at(28, 12), 3)
    faults("DEV-BOIL-1", 14, at(29, 12), 3)
    faults("DEV-HP-1", 7, at(26, 12), 4)
    faults("DEV-HP-1", 7, at(30, 12), 5)
    faults("DEV-HP-1", 9, at(29, 12), 2)
    faults("DEV-BARE-1", 3, at(24, 12), 1)
    faults("DEV-BARE-1", 3, at(30, 12), 1)
    faults("DEV-UNKNOWN", 3, at(27, 12), 1)  # a device not (or no longer) registered

    def article(number: str, product, keywords: list[str], published: bool = True) -> None:
        session.add(
            KnowledgeArticle(
                article_number=number,
                title=number,
                content="…",
                keywords=keywords,
                product_id=product.id if product else None,
                published=published,
            )
        )

    article("KA-T1", boil, ["boiler", "error-14"])  # covers (BOIL, 14)
    article("KA-T2", hp, ["error-7"], published=False)  # a draft covers nothing
    article("KA-T3", ev, ["error-7"])  # another product's article
    article("KA-T4", None, ["errore-9"])  # a general article: code 9 on every product
    session.commit()
    return Org(ana=ana.id, ben=ben.id, gold=gold.id, standard=standard.id, boil=boil.id, hp=hp.id)


def test_cases_and_sla_per_day(org: Org, session: Session) -> None:
    with session.begin():
        daily = daily_activity(session=session, first=date(2026, 11, 24), last=AS_OF)
    assert [d.day for d in daily.index] == list(range(24, 31))
    assert daily["opened"].tolist() == [2, 1, 1, 0, 1, 1, 1]  # C1 C2 | C10 | C3 | – | C4 | C5 | C6
    assert daily["resolved"].tolist() == [1, 1, 1, 0, 1, 0, 0]  # C1 | C7 | C2 | – | C3 (C10 reopened)
    assert daily["sla_met"].tolist() == [3, 1, 1, 0, 0, 0, 0]
    assert daily["sla_missed"].tolist() == [0, 0, 0, 1, 1, 1, 0]
    pct = daily["sla_compliance_pct"].tolist()
    assert pct[:6] == [100.0, 100.0, 100.0, 0.0, 0.0, 0.0] and pct[6] != pct[6]  # NaN: nothing ended


@pytest.mark.parametrize(
    ("metric", "owner", "start", "end", "expected"),
    [
        ("cases_resolved", "everyone", 1, 30, 5.0),  # C1 C2 C3 C7 C9
        ("cases_resolved", "ana", 1, 30, 2.0),  # C1 C2
        ("cases_resolved", "everyone", 24, 30, 4.0),
        ("open_cases", "everyone", 1, 30, 4.0),  # C4 C5 C8 C10
        ("open_cases", "standard", 1, 30, 2.0),  # C4 C10 (C6 cancelled)
        ("open_cases", "everyone", 1, 27, 3.0),  # at the 27th's end: C3 (resolved the 28th), C8, C10
        ("sla_compliance_pct", "everyone", 24, 30, 62.5),  # 5 of 8
        ("sla_compliance_pct", "gold", 24, 30, 80.0),  # C1×2, C2, C7 met; C5 missed
        ("sla_compliance_pct", "ben", 28, 30, 0.0),  # C4 late
        ("sla_compliance_pct", "everyone", 30, 30, None),  # nothing ended
        ("median_first_response_minutes", "everyone", 24, 30, 20.0),  # 5 10 20 30 60
        ("median_first_response_minutes", "gold", 1, 30, 30.0),  # 10 30 40
        ("median_first_response_minutes", "ben", 1, 30, 32.5),  # 20 25 40 60
        ("median_first_response_minutes", "ana", 29, 30, None),  # C5 has no response
    ],
)
def test_goal_metrics(org: Org, session: Session, metric, owner, start, end, expected) -> None:
    owners = {
        "everyone": EVERYONE,
        "ana": Owner(agent_id=org.ana),
        "ben": Owner(agent_id=org.ben),
        "gold": Owner(queue_id=org.gold),
        "standard": Owner(queue_id=org.standard),
    }
    with session.begin():
        value = measure(
            session=session,
            metric=metric,
            period_start=date(2026, 11, start),
            period_end=date(2026, 11, end),
            owner=owners[owner],
            as_of=AS_OF,
        )
    assert value == expected


TOTALS = {
    "cases_opened": 7,
    "cases_resolved": 4,
    "open_cases": 4,  # C4 C5 C8 C10
    "sla_met": 5,
    "sla_ended": 8,
    "sla_compliance_pct": 62.5,
    "median_first_response_minutes": 20.0,
    "device_faults": 22,  # 8 boiler, 11 heat pump, 3 without a product
    "resolution_minutes": 245,  # C1 30 + C2 90 + C7 60; C3 45 + C10 20 (C9's was before the 7 days)
    "support_cost": 367.5,  # 245 min at 90 an hour
}
COST = [
    {
        "sku": "T-BOIL",
        "product": "Boiler B",
        "cases": 3,
        "minutes": 180,
        "cost": 270.0,
        "cost_per_case": 90.0,
    },
    {
        "sku": "T-HP",
        "product": "Heat pump H",
        "cases": 2,
        "minutes": 65,
        "cost": 97.5,
        "cost_per_case": 48.75,
    },
]
RISING = [  # faults 28–30 Nov against 25–27 Nov; at least 5 and more than 50 % up
    {
        "subject": "product",
        "source": "faults",
        "sku": "T-HP",
        "product": "Heat pump H",
        "error_code": None,
        "recent": 7,
        "previous": 4,
        "change_pct": 75.0,
    },
    {
        "subject": "product",
        "source": "faults",
        "sku": "T-BOIL",
        "product": "Boiler B",
        "error_code": None,
        "recent": 6,
        "previous": 2,
        "change_pct": 200.0,
    },
    {
        "subject": "error code",
        "source": "faults",
        "sku": "T-BOIL",
        "product": "Boiler B",
        "error_code": 14,
        "recent": 6,
        "previous": 2,
        "change_pct": 200.0,
    },
]  # heat pump code 7: 5 against 4 (25 %); code 9: 2; cases: 2 at most
GAPS = [  # (boiler, 14) has KA-T1; code 9 the general KA-T4; code 7's articles are a draft and another product's
    {"sku": "T-HP", "product": "Heat pump H", "error_code": 7, "faults": 9, "cases": 4},
    {"sku": "(no product)", "product": "(no product)", "error_code": 3, "faults": 3, "cases": 0},
]
GOALS = [  # (cli arguments, actual, progress %, met)
    (["cases_resolved", "10"], 5.0, 50.0, False),
    (["cases_resolved", "2", "--agent", "ANA@carepath.test"], 2.0, 100.0, True),
    (["open_cases", "1", "--team", "standard support"], 2.0, 50.0, False),
    (["sla_compliance_pct", "80", "--from", "2026-11-24", "--to", "2026-11-30"], 62.5, 78.1, False),
    (["median_first_response_minutes", "30", "--team", "Gold support"], 30.0, 100.0, True),
    (["median_first_response_minutes", "15", "--agent", "ben@carepath.test"], 32.5, 46.2, False),
]


def goal_set(capsys, metric: str, target: str, *extra: str) -> tuple[int, dict | str]:
    """`carepath goal set … --json`: the exit code and the goal printed, or what stderr said."""
    capsys.readouterr()
    period = [] if "--from" in extra else ["--from", "2026-11-01"]  # to: the end of that month
    code = cli(["goal", "set", "--metric", metric, "--target", target, *period, *extra, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else err.strip()


def test_goals_set_from_the_cli_are_measured_at_once(org: Org, session: Session, capsys) -> None:
    for args, actual, progress, met in GOALS:
        code, goal = goal_set(capsys, *args)
        assert code == 0 and goal["created"] is True
        assert (goal["actual"], goal["progress_pct"], goal["met"]) == (actual, progress, met), args
    assert (
        goal["agent"] == "ben@carepath.test" and goal["team"] is None and goal["period_end"] == "2026-11-30"
    )

    # The same metric, period and owner again changes the target of that goal.
    code, again = goal_set(capsys, "cases_resolved", "5")
    assert code == 0 and again["created"] is False and (again["progress_pct"], again["met"]) == (100.0, True)
    capsys.readouterr()
    assert cli(["goals", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["goals"]
    assert len(listed) == 6 and {g["id"] for g in listed} >= {again["id"]}
    assert cli(["goals", "--on", "2026-11-23", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["goals"]) == 5  # not the 24–30 Nov SLA goal

    refused = [
        goal_set(capsys, "cases_resolved", "3", "--agent", "nobody@carepath.test"),
        goal_set(capsys, "open_cases", "3", "--team", "Platinum"),
        goal_set(capsys, "sla_compliance_pct", "120"),
        goal_set(capsys, "cases_resolved", "3", "--from", "2026-11-30", "--to", "2026-11-01"),
    ]
    assert refused == [
        (2, "goal refused: no agent with the email nobody@carepath.test"),
        (2, "goal refused: no team (queue) named 'Platinum'; teams: Gold support, Standard support"),
        (2, "goal refused: target 120 is out of range for sla_compliance_pct"),
        (2, "goal refused: the period ends (2026-11-01) before it starts (2026-11-30)"),
    ]
    with pytest.raises(SystemExit):  # an agent's or a team's, not both
        cli(["goal", "set", "--metric", "open_cases", "--target", "1", "--agent", "a@b.c", "--team", "Gold"])

    assert cli(["goal", "remove", str(again["id"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"id": again["id"], "removed": True}
    assert cli(["goal", "remove", str(again["id"])]) == 1


def test_one_goal_per_metric_period_and_owner_everyone_included(org: Org, session: Session) -> None:
    from sqlalchemy.exc import IntegrityError

    def goal(**owner) -> Goal:
        return Goal(name="g", metric="open_cases", period_start=AS_OF, period_end=AS_OF, target=1, **owner)

    for duplicate in ({}, {"owner_queue_id": org.gold}):
        session.add_all([goal(**duplicate), goal(**duplicate)])
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()
    session.add(goal(owner_agent_id=org.ana, owner_queue_id=org.gold))
    with pytest.raises(IntegrityError):  # one owner at most
        session.commit()
    session.rollback()
    session.add_all([goal(), goal(owner_agent_id=org.ana), goal(owner_queue_id=org.gold)])
    session.commit()


def test_the_report_figures(org: Org, session: Session, capsys) -> None:
    for args, *_ in GOALS:
        assert goal_set(capsys, *args)[0] == 0
    later = Goal(
        name="December",
        metric="cases_resolved",
        period_start=date(2026, 12, 1),
        period_end=date(2026, 12, 31),
        target=100,
    )
    earlier = Goal(
        name="October",
        metric="cases_resolved",
        period_start=date(2026, 10, 1),
        period_end=date(2026, 10, 31),
        target=100,
    )
    session.add_all([later, earlier])
    session.commit()

    report = collect_kpis(CONFIG).as_json()

    assert (report["first"], report["as_of"], report["hourly_rate"]) == ("2026-11-24", "2026-11-30", 90.0)
    assert report["totals"] == TOTALS
    assert [(r["day"], r["opened"], r["resolved"]) for r in report["daily"]][:2] == [
        ("2026-11-24", 2, 1),
        ("2026-11-25", 1, 1),
    ]
    assert report["daily"][-1]["sla_compliance_pct"] is None
    assert [(r["sku"], r["faults"]) for r in report["faults_per_product"]] == [
        ("T-HP", 11),
        ("T-BOIL", 8),
        ("(no product)", 3),
    ]
    assert report["cost_per_product"] == COST
    assert report["rising"] == RISING
    assert report["kb_gaps"] == GAPS
    goals = sorted(report["goals"], key=lambda g: g["id"])  # the report orders them by period and metric
    assert [(g["actual"], g["progress_pct"], g["met"]) for g in goals] == [
        (actual, progress, met) for _, actual, progress, met in GOALS
    ]
    session.expire_all()
    assert (session.get(Goal, later.id).actual, session.get(Goal, earlier.id).actual) == (None, None)
    session.commit()


def test_the_hourly_rate_comes_from_settings_unless_given(org: Org) -> None:
    from carepath.settings import Settings

    settings = Settings(_env_file=None, support_hourly_rate=120, support_currency="GBP")
    report = collect_kpis(CONFIG.model_copy(update={"hourly_rate": None}), settings=settings)
    assert (report.hourly_rate, report.currency) == (120, "GBP")
    assert report.cost["cost"].tolist() == [360.0, 130.0]  # 180 and 65 minutes at 120 an hour
    assert report.totals["support_cost"] == 490.0


def test_cases_and_error_codes_of_cases_rising(session: Session) -> None:
    """Cases (not faults) counted by the case's product or its device's; a case without an error code counts
    for its product only. 29–30 Nov against 27–28 Nov, at least 3 and more than 50 % up."""
    contact = make_contact(session)
    p1, p2 = Product(sku="T-P1", name="P1"), Product(sku="T-P2", name="P2")
    session.add_all([p1, p2])
    session.flush()
    device = Device(device_id="DEV-P1", product_id=p1.id, owner_contact_id=contact.id)
    session.add(device)
    session.flush()
    for n, (day, product, code, via_device) in enumerate(
        [
            (27, p1, 5, False),
            (29, p1, 5, False),
            (29, p1, 5, False),
            (30, p1, 5, True),  # P1 through its device: 3 against 1
            (27, p2, 6, False),
            (28, p2, 6, False),
            (29, p2, 6, False),
            (30, p2, 6, False),
            (30, p2, 6, False),  # code 6: 3 against 2 (50 %, not more)
            (30, p2, None, False),  # P2: 4 against 2
        ]
    ):
        session.add(
            Case(
                ticket_number=f"CAS-R{n:04d}",
                title="r",
                contact_id=contact.id,
                product_id=None if via_device else product.id,
                device_id=device.device_id if via_device else None,
                error_code=code,
                origin=Channel.PHONE,
                tracking_token=f"kpi-rising-token-{n:04d}-abcdefghijk",
                created_at=at(day, 10),
            )
        )
    session.commit()
    with session.begin():
        frame = rising(session=session, as_of=AS_OF, days=2, min_count=3, rise_pct=50)
    assert [
        (r["subject"], r["source"], r["sku"], r["error_code"], r["recent"], r["previous"])
        for r in records(frame)
    ] == [
        ("product", "cases", "T-P2", None, 4, 2),
        ("product", "cases", "T-P1", None, 3, 1),
        ("error code", "cases", "T-P1", 5, 3, 1),
    ]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def test_the_files_are_real_charts_and_a_markdown_report(org: Org, tmp_path: Path) -> None:
    files = write_report(collect_kpis(CONFIG), tmp_path / "out")
    assert [p.name for p in files] == [
        "kpi-report-2026-11-30-cases-per-day.png",
        "kpi-report-2026-11-30-sla-compliance.png",
        "kpi-report-2026-11-30-faults-per-product.png",
        "kpi-report-2026-11-30-cost-per-product.png",
        "kpi-report-2026-11-30.md",
    ]
    assert all(p.is_absolute() and p.parent == tmp_path / "out" for p in files)
    for chart in files[:4]:
        assert png_size(chart) == (900, 400) and chart.stat().st_size > 10_000
    markdown = files[-1].read_text(encoding="utf-8")
    for chart in files[:4]:
        assert f"]({chart.name})" in markdown
    for figure in (
        "62.5 % (5 of 8)",
        "20 min",
        "367.50 EUR (245 min)",
        "| Heat pump H | T-HP | 2 | 65 | 97.50 | 48.75 |",
        "| error code | faults | Boiler B | 14 | 6 | 2 | +200 % |",
        "| Heat pump H | T-HP | 7 | 9 | 4 |",
    ):
        assert figure in markdown, figure


def test_an_empty_database_still_gives_every_file(engine, tmp_path: Path) -> None:
    files = write_report(collect_kpis(KpiReportConfig(as_of=AS_OF)), tmp_path)
    assert len(files) == 5 and all(png_size(p) == (900, 400) for p in files[:4])
    markdown = files[-1].read_text(encoding="utf-8")
    assert "No goal covers these days" in markdown and "Nothing rising." in markdown


def carepath(*args: str, database_url: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """The installed console script, as an operator runs it: no Prefect server, nothing of the test's env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CAREPATH_"))}
    env |= {
        "CAREPATH_DATABASE_URL": database_url,
        "CAREPATH_ENV_FILE": "",
        "CAREPATH_REPORTS_DIR": str(tmp_path / "reports"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }
    return subprocess.run(
        [str(Path(sys.executable).with_name("carepath")), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_prints_exactly_the_files(org: Org, database_url: str, tmp_path: Path) -> None:
    done = carepath(
        "kpi-report",
        "--out",
        str(tmp_path / "kpi"),
        "--as-of",
        "2026-11-30",
        "--days",
        "7",
        "--json",
        database_url=database_url,
        tmp_path=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert list(result) == ["files"]
    files = [Path(p) for p in result["files"]]
    assert all(p.is_absolute() and p.exists() and p.parent == tmp_path / "kpi" for p in files)
    assert sum(p.suffix == ".png" for p in files) == 4 and files[-1].suffix == ".md"
    assert {"cases-per-day", "sla-compliance", "faults-per-product"} <= {
        p.stem.split("30-")[-1] for p in files
    }


@embedded_only
def test_the_cli_on_a_fresh_clone_without_a_database(tmp_path: Path) -> None:
    """No database file, no schema, no --out: the embedded SQLite is created and the default folder used."""
    done = carepath(
        "kpi-report", "--json", database_url=f"sqlite:///{tmp_path / 'new.db'}", tmp_path=tmp_path
    )
    assert done.returncode == 0, done.stderr
    files = [Path(p) for p in json.loads(done.stdout)["files"]]
    assert len(files) == 5 and all(p.exists() and p.parent == tmp_path / "reports" for p in files)
    assert all(png_size(p) == (900, 400) for p in files[:4])
    assert "warning" not in done.stderr.lower()


@pytest.mark.usefixtures("prefect_server")
def test_the_flow_publishes_the_report_with_its_charts(org: Org, tmp_path: Path) -> None:
    import base64

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.kpi_report import kpi_report_flow

    result = completed(
        kpi_report_flow,
        as_of=AS_OF,
        days=7,
        hourly_rate=90,
        trend_days=3,
        gap_min_count=2,
        out_dir=str(tmp_path),
    )
    assert result["totals"] == TOTALS and result["kb_gaps"] == GAPS and result["rising"] == RISING
    files = [Path(p) for p in result["files"]]
    assert all(p.exists() for p in files)
    with get_client(sync_client=True) as client:
        artifacts = {
            key: client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                limit=1,
                sort="CREATED_DESC",
            )[0]
            for key in ("kpi-report", "kpi-report-progress")
        }
    report = artifacts["kpi-report"]
    assert report.type == "markdown" and "62.5 % (5 of 8)" in report.data
    # Each chart is in the artifact itself (a data: URI the UI's markdown shows), byte for byte the file.
    images = report.data.split("](data:image/png;base64,")[1:]
    assert len(images) == 4
    assert base64.b64decode(images[0].split(")")[0]) == files[0].read_bytes()
    assert (
        artifacts["kpi-report-progress"].type == "progress" and artifacts["kpi-report-progress"].data == 100.0
    )


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_the_report_on_a_dask_cluster_is_the_same_report(
    org: Org, session: Session, tmp_path: Path, dask_cluster
) -> None:
    """The report's parts go to the cluster's worker processes (CAREPATH_BATCH_TASK_RUNNER=dask), the charts
    are drawn by the flow's process: the same figures and goals as the thread runner's."""
    from flows.kpi_report import kpi_report_flow
    from tests.utils.dask_runs import computed_on, on_dask

    session.add(
        Goal(
            name="November",
            metric="cases_resolved",
            period_start=date(2026, 11, 1),
            period_end=date(2026, 11, 30),
            target=10,
        )
    )
    session.commit()
    params = {"as_of": AS_OF, "days": 7, "hourly_rate": 90, "trend_days": 3, "gap_min_count": 2}

    def figures(result: dict) -> dict:
        goals = [{k: v for k, v in g.items() if k != "computed_at"} for g in result["goals"]]
        return {k: v for k, v in result.items() if k != "files"} | {"goals": goals}

    on_threads = completed(kpi_report_flow, **params, out_dir=str(tmp_path / "threads"))
    before = computed_on(dask_cluster, "collect_part")
    dasked = completed(on_dask(kpi_report_flow, dask_cluster), **params, out_dir=str(tmp_path / "dask"))

    assert figures(dasked) == figures(on_threads)
    assert dasked["totals"] == TOTALS and dasked["rising"] == RISING and dasked["kb_gaps"] == GAPS
    # resolved in November and still resolved: C1, C2, C3, C7, C9 (C10 was reopened)
    assert [(g["name"], g["actual"]) for g in dasked["goals"]] == [("November", 5.0)]
    assert len(computed_on(dask_cluster, "collect_part") - before) == 7  # every part, on the cluster
    assert [Path(p).name for p in dasked["files"]] == [Path(p).name for p in on_threads["files"]]
    assert all(Path(p).parent == tmp_path / "dask" for p in dasked["files"])
