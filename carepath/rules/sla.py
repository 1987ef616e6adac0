"""SLA clocks (Dynamics' SLA KPIs): business hours in a time zone, breaks, holidays, warning and failure times.

Plain functions: no Prefect, session or HTTP. Times in and out are aware datetimes (UTC in the database).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Calendar:
    """When the clock runs. `hours`: weekday → working spans ("08:00", "12:30"), so a lunch break is two spans;
    a weekday absent is closed; no hours at all is around the clock. `holidays`: closed days."""

    timezone: str = "UTC"
    hours: Mapping[str, tuple[tuple[time, time], ...]] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()

    @classmethod
    def from_data(
        cls,
        *,
        timezone: str,
        hours: Mapping[str, list],
        holidays: Iterable[date] = (),
        country: str | None = None,
    ) -> Calendar:
        """From the stored form ({"mon": ["08:00", "18:00"]} or {"mon": [["08:00", "12:30"], ["13:30", "18:00"]]}),
        with the country's public holidays (the `holidays` package) for the years around now."""
        spans: dict[str, tuple[tuple[time, time], ...]] = {}
        for day, value in (hours or {}).items():
            pairs = [value] if value and isinstance(value[0], str) else value
            spans[day] = tuple((time.fromisoformat(a), time.fromisoformat(b)) for a, b in pairs)
        closed = set(holidays)
        if country:
            closed |= _public_holidays(country, datetime.now(UTC).year)
        return cls(timezone=timezone, hours=spans, holidays=frozenset(closed))

    @property
    def around_the_clock(self) -> bool:
        return not self.hours and not self.holidays


@lru_cache(maxsize=64)
def _public_holidays(country: str, year: int) -> frozenset[date]:
    """The country's public holidays from the year before `year` to two years after (the `holidays` package;
    computing them takes tens of milliseconds, and every batch of new cases asks again: kept per process)."""
    import holidays as public_holidays

    return frozenset(public_holidays.country_holidays(country, years=range(year - 1, year + 3)))


def _spans_on(day: date, calendar: Calendar, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    if day in calendar.holidays:
        return []
    if not calendar.hours:
        start = datetime.combine(day, time(0), tz)
        return [(start, datetime.combine(day + timedelta(days=1), time(0), tz))]
    return [
        (datetime.combine(day, a, tz), datetime.combine(day, b, tz))
        for a, b in calendar.hours.get(_DAYS[day.weekday()], ())
    ]


def add_business_minutes(start: datetime, minutes: float, calendar: Calendar) -> datetime:
    """The moment `minutes` of working time after `start` (local wall-clock spans, so DST days are right)."""
    if calendar.around_the_clock:
        return start + timedelta(minutes=minutes)
    tz = ZoneInfo(calendar.timezone)
    local = start.astimezone(tz)
    left = timedelta(minutes=minutes)
    day = local.date()
    for _ in range(3 * 366):  # a calendar with no working time at all must not loop forever
        for open_at, close_at in _spans_on(day, calendar, tz):
            begin = max(open_at, local)
            if begin >= close_at:
                continue
            available = close_at.astimezone(UTC) - begin.astimezone(UTC)
            if left <= available:
                return (begin.astimezone(UTC) + left).astimezone(UTC)
            left -= available
        day += timedelta(days=1)
    raise ValueError("the calendar has no working time within three years")


def business_minutes_between(start: datetime, end: datetime, calendar: Calendar) -> float:
    """Working minutes from `start` to `end` (0 when end is not after start)."""
    if end <= start:
        return 0.0
    if calendar.around_the_clock:
        return (end - start).total_seconds() / 60
    tz = ZoneInfo(calendar.timezone)
    total = timedelta()
    day, last = start.astimezone(tz).date(), end.astimezone(tz).date()
    while day <= last:
        for open_at, close_at in _spans_on(day, calendar, tz):
            a, b = max(open_at, start.astimezone(tz)), min(close_at, end.astimezone(tz))
            if b > a:
                total += b.astimezone(UTC) - a.astimezone(UTC)
        day += timedelta(days=1)
    return total.total_seconds() / 60


def applies(
    *, tier: str | None, priority: str | None, sla_tier: str | None, sla_priorities: Iterable[str] = ()
) -> bool:
    """Whether an SLA applies to a case: its tier condition (None: any tier) and priorities (empty: any)."""
    priorities = list(sla_priorities)
    return (sla_tier is None or sla_tier == tier) and (not priorities or priority in priorities)


def state_at(*, now: datetime, warning_at: datetime, due_at: datetime) -> str:
    """Where a running KPI stands: in_progress, nearing_noncompliance (past its warning), or noncompliant."""
    if now >= due_at:
        return "noncompliant"
    if now >= warning_at:
        return "nearing_noncompliance"
    return "in_progress"


def extend_for_pause(
    *, due_at: datetime, paused_at: datetime, resumed_at: datetime, calendar: Calendar
) -> tuple[datetime, float]:
    """A due time moved on by a pause: by the working minutes the pause took on the SLA's calendar (a pause
    over a weekend or a holiday costs nothing of them), counted on from the old due time. Returns the new due
    time and the paused working minutes."""
    paused = business_minutes_between(paused_at, resumed_at, calendar)
    if paused <= 0:
        return due_at, 0.0
    return add_business_minutes(due_at, paused, calendar), paused


def notice_recipients(
    *, step: str, owner: str | None, manager: str | None, fallback: str | None
) -> tuple[str, ...]:
    """Who is told of a KPI's warning or failure. A warning goes to the case's owner; a failure to the owner and
    the queue's manager. The fallback (the escalation address) stands in for a missing manager, and for a
    missing owner, so that no notice goes to nobody. Each address once."""
    manager = manager or fallback
    wanted = (owner,) if step == "warning" else (owner, manager)
    if not any(wanted):
        wanted = (manager,)
    return tuple(dict.fromkeys(a for a in wanted if a))


@dataclass(frozen=True)
class SlaTerms:
    """An SLA as `choose_sla` weighs it: its id and its conditions."""

    id: int
    tier: str | None  # None: any tier
    priorities: tuple[str, ...] = ()  # empty: any priority


def choose_sla(slas: Iterable[SlaTerms], *, tier: str | None, priority: str | None) -> int | None:
    """The SLA for a case: the most specific that applies — one naming the tier and priorities, then one
    naming the tier, then one naming priorities, then one for every case; the lowest id among equals."""
    ordered = sorted(slas, key=lambda s: (s.tier is None, not s.priorities, s.id))
    return next(
        (
            s.id
            for s in ordered
            if applies(tier=tier, priority=priority, sla_tier=s.tier, sla_priorities=s.priorities)
        ),
        None,
    )
