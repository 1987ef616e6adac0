"""Goals and KPIs: what each goal metric means and which way is better, how far a goal has come, what counts as
rising, what support costs, and which error codes a knowledge article covers. Plain functions, no I/O."""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class MetricSpec:
    key: str
    label: str
    unit: str  # shown after the value: "cases", "%", "min"
    higher_is_better: bool
    meaning: str


METRICS: dict[str, MetricSpec] = {
    m.key: m
    for m in (
        MetricSpec(
            "cases_resolved",
            "Cases resolved",
            "cases",
            True,
            "cases resolved within the period (a case reopened since is not counted)",
        ),
        MetricSpec(
            "open_cases",
            "Open cases",
            "cases",
            False,
            "cases open at the end of the period (today while it runs); the target is a ceiling",
        ),
        MetricSpec(
            "sla_compliance_pct",
            "SLA compliance",
            "%",
            True,
            "SLA KPIs met in time among those that ended (succeeded or failed) within the period",
        ),
        MetricSpec(
            "median_first_response_minutes",
            "Median first response",
            "min",
            False,
            "median minutes from creation to a person's first response, cases created within the period",
        ),
    )
}


@dataclass(frozen=True)
class GoalProgress:
    progress_pct: float | None  # 0–100: how far toward the target (None: nothing measured yet)
    met: bool | None


def goal_progress(metric: str, target: float, actual: float | None) -> GoalProgress:
    """Progress toward a target, capped at 100 %: actual ÷ target where more is better; target ÷ actual where
    the target is a ceiling (100 % while at or under it)."""
    if actual is None:
        return GoalProgress(None, None)
    if METRICS[metric].higher_is_better:
        met = actual >= target
        pct = 100.0 if target <= 0 else 100.0 * actual / target
    else:
        met = actual <= target
        pct = 100.0 if met else 100.0 * target / actual
    return GoalProgress(round(min(pct, 100.0), 1), met)


def month_of(day: date) -> tuple[date, date]:
    """The calendar month a day falls in: its first and last day."""
    return day.replace(day=1), day.replace(day=calendar.monthrange(day.year, day.month)[1])


def median(values: Sequence[float]) -> float | None:
    """The median of sorted values (the middle one, or the mean of the two middle ones)."""
    if not values:
        return None
    mid = len(values) // 2
    return float(values[mid]) if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def median_slice(count: int) -> tuple[int, int]:
    """Where the median of `count` sorted values sits: (offset, how many), one value or the two middle ones
    (so a database sorts and returns at most two rows, whatever the count)."""
    return (count - 1) // 2, 1 if count % 2 else 2


def is_rising(recent: int, previous: int, *, min_count: int, rise_pct: float) -> bool:
    """Rising: at least `min_count` in the recent window and more than `rise_pct` % above the window before
    (anything from nothing counts, once it reaches `min_count`)."""
    return recent >= min_count and recent > previous * (1 + rise_pct / 100.0)


def change_pct(recent: int, previous: int) -> float | None:
    """The change from the window before, in percent (None: there was nothing before)."""
    return None if previous == 0 else round(100.0 * (recent - previous) / previous, 1)


def support_cost(minutes: float, hourly_rate: float) -> float:
    """Time spent on resolutions at an hourly rate, rounded to cents."""
    return round(minutes / 60.0 * hourly_rate, 2)


_ERROR_KEYWORD = re.compile(r"err\w*-(\d+)", re.IGNORECASE)  # error-14, errore-11, erro-17


def article_error_codes(keywords: Iterable[str] | None) -> set[int]:
    """The error codes an article covers: its keywords of the form `error-N` (or a spelling starting "err")."""
    codes = set()
    for keyword in keywords or ():
        if m := _ERROR_KEYWORD.fullmatch(str(keyword).strip()):
            codes.add(int(m.group(1)))
    return codes


def covered(product_id: int | None, code: int, articles: set[tuple[int | None, int]]) -> bool:
    """Whether a published article covers the code for the product: one for that product, or one for no
    product in particular."""
    return (product_id, code) in articles or (None, code) in articles
