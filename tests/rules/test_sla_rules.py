"""SLA clocks: business hours across a weekend, a holiday, a lunch break and a DST change; KPI states."""

from datetime import UTC, date, datetime, time, timedelta

import pytest

from carepath.rules.sla import Calendar, add_business_minutes, applies, business_minutes_between, state_at

ATHENS_OFFICE = Calendar.from_data(
    timezone="Europe/Athens",
    hours={d: [["08:00", "12:00"], ["13:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
    holidays=[date(2026, 12, 25)],
)


def athens(y, m, d, hh, mm=0):
    from zoneinfo import ZoneInfo

    return datetime(y, m, d, hh, mm, tzinfo=ZoneInfo("Europe/Athens"))


@pytest.mark.parametrize(
    ("start", "minutes", "due"),
    [
        (athens(2026, 12, 2, 9), 60, athens(2026, 12, 2, 10)),  # inside a span
        (athens(2026, 12, 2, 11, 30), 60, athens(2026, 12, 2, 13, 30)),  # across the lunch break
        (
            athens(2026, 12, 4, 17, 30),
            60,
            athens(2026, 12, 7, 8, 30),
        ),  # Friday evening → Monday, over the weekend
        (
            athens(2026, 12, 5, 10),
            15,
            athens(2026, 12, 7, 8, 15),
        ),  # raised on Saturday: the clock starts Monday
        (
            athens(2026, 12, 24, 17, 50),
            15,
            athens(2026, 12, 28, 8, 5),
        ),  # Christmas Day (25th, Friday) is closed
        (athens(2026, 12, 2, 19), 15, athens(2026, 12, 3, 8, 15)),  # after hours: next morning
    ],
)
def test_business_minutes_across_breaks_weekends_and_holidays(start, minutes, due) -> None:
    assert add_business_minutes(start, minutes, ATHENS_OFFICE) == due.astimezone(UTC)
    assert business_minutes_between(start, due, ATHENS_OFFICE) == pytest.approx(minutes)


def test_around_the_clock_is_wall_clock_time() -> None:
    start = datetime(2026, 12, 5, 23, 50, tzinfo=UTC)  # a Saturday night: gold is 24/7
    assert add_business_minutes(start, 15, Calendar()) == start + timedelta(minutes=15)


def test_a_dst_change_counts_real_minutes() -> None:
    # Europe/Athens leaves summer time on 2026-10-25 at 04:00 → 03:00; a 24/7 calendar in that zone.
    cal = Calendar.from_data(timezone="Europe/Athens", hours={d: [["00:00", "23:59"]] for d in ("sun",)})
    start = athens(2026, 10, 25, 2)
    assert add_business_minutes(start, 180, cal) - start.astimezone(UTC) == timedelta(minutes=180)


def test_the_holidays_package_closes_public_holidays() -> None:
    cal = Calendar.from_data(
        timezone="Europe/Athens", hours={"mon": ["08:00", "18:00"], "tue": ["08:00", "18:00"]}, country="GR"
    )
    # 2026-04-13 is Orthodox Easter Monday in Greece: closed; the clock runs on Tuesday.
    assert add_business_minutes(athens(2026, 4, 13, 9), 30, cal) == athens(2026, 4, 14, 8, 30).astimezone(UTC)


@pytest.mark.parametrize(
    ("now_minutes", "state"),
    [(9, "in_progress"), (10, "nearing_noncompliance"), (14, "nearing_noncompliance"), (15, "noncompliant")],
)
def test_gold_first_response_states_at_the_boundaries(now_minutes, state) -> None:
    start = datetime(2026, 12, 3, 9, tzinfo=UTC)
    assert (
        state_at(
            now=start + timedelta(minutes=now_minutes),
            warning_at=start + timedelta(minutes=10),
            due_at=start + timedelta(minutes=15),
        )
        == state
    )


@pytest.mark.parametrize(
    ("tier", "priority", "sla_tier", "priorities", "expected"),
    [
        ("gold", "normal", "gold", [], True),
        ("silver", "normal", "gold", [], False),
        ("gold", "low", None, ["critical"], False),
        ("x", "critical", None, ["critical"], True),
    ],
)
def test_applicable_when(tier, priority, sla_tier, priorities, expected) -> None:
    assert applies(tier=tier, priority=priority, sla_tier=sla_tier, sla_priorities=priorities) is expected


def test_time_parsing_keeps_spans() -> None:
    assert ATHENS_OFFICE.hours["mon"] == ((time(8), time(12)), (time(13), time(18)))
