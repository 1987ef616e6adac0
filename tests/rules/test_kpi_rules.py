"""Goal and KPI rules: progress toward a target (either direction), rising, support cost, medians, and the
error codes an article covers."""

from __future__ import annotations

from datetime import date

import pytest

from carepath.rules.kpis import (
    METRICS,
    GoalProgress,
    article_error_codes,
    change_pct,
    covered,
    goal_progress,
    is_rising,
    median,
    median_slice,
    month_of,
    support_cost,
)


@pytest.mark.parametrize(
    ("metric", "target", "actual", "expected"),
    [
        ("cases_resolved", 150, 75, GoalProgress(50.0, False)),
        ("cases_resolved", 150, 150, GoalProgress(100.0, True)),
        ("cases_resolved", 150, 180, GoalProgress(100.0, True)),  # capped: the table shows the actual
        ("cases_resolved", 0, 0, GoalProgress(100.0, True)),
        ("sla_compliance_pct", 80, 62.5, GoalProgress(78.1, False)),
        ("open_cases", 25, 10, GoalProgress(100.0, True)),  # a ceiling: under it is 100 %
        ("open_cases", 1, 2, GoalProgress(50.0, False)),
        ("open_cases", 0, 0, GoalProgress(100.0, True)),
        ("median_first_response_minutes", 15, 32.5, GoalProgress(46.2, False)),
        ("median_first_response_minutes", 30, 30, GoalProgress(100.0, True)),
        ("sla_compliance_pct", 95, None, GoalProgress(None, None)),  # nothing measured yet
    ],
)
def test_goal_progress(metric: str, target: float, actual: float | None, expected: GoalProgress) -> None:
    assert goal_progress(metric, target, actual) == expected


def test_every_metric_says_which_way_is_better() -> None:
    assert {k: m.higher_is_better for k, m in METRICS.items()} == {
        "cases_resolved": True,
        "open_cases": False,
        "sla_compliance_pct": True,
        "median_first_response_minutes": False,
    }


@pytest.mark.parametrize(
    ("recent", "previous", "min_count", "rise_pct", "rising"),
    [
        (6, 2, 5, 50, True),
        (5, 4, 5, 50, False),  # 25 % up
        (7, 4, 5, 50, True),  # 75 % up
        (6, 4, 5, 50, False),  # exactly 50 % up is not more than 50 %
        (4, 0, 5, 50, False),  # too few, however new
        (5, 0, 5, 50, True),  # from nothing, once at the minimum
        (5, 5, 5, 0, False),  # level is not rising
    ],
)
def test_is_rising(recent: int, previous: int, min_count: int, rise_pct: float, rising: bool) -> None:
    assert is_rising(recent, previous, min_count=min_count, rise_pct=rise_pct) is rising


def test_change_pct() -> None:
    assert (change_pct(6, 2), change_pct(7, 4), change_pct(2, 0), change_pct(1, 3)) == (
        200.0,
        75.0,
        None,
        -66.7,
    )


def test_support_cost() -> None:
    assert (support_cost(180, 90), support_cost(65, 90), support_cost(1, 60.0), support_cost(0, 50)) == (
        270.0,
        97.5,
        1.0,
        0.0,
    )


@pytest.mark.parametrize(
    ("count", "where"),
    [(0, (-1, 2)), (1, (0, 1)), (2, (0, 2)), (5, (2, 1)), (4, (1, 2)), (1_000_000, (499_999, 2))],
)
def test_median_slice(count: int, where: tuple[int, int]) -> None:
    assert median_slice(count) == where


def test_median() -> None:
    assert (median([5, 10, 20, 30, 60]), median([25, 40]), median([7]), median([])) == (20.0, 32.5, 7.0, None)


def test_month_of() -> None:
    assert month_of(date(2026, 2, 14)) == (date(2026, 2, 1), date(2026, 2, 28))
    assert month_of(date(2028, 2, 29)) == (date(2028, 2, 1), date(2028, 2, 29))
    assert month_of(date(2026, 12, 31)) == (date(2026, 12, 1), date(2026, 12, 31))


@pytest.mark.parametrize(
    ("keywords", "codes"),
    [
        (["boiler", "error-14", "pressure"], {14}),
        (["errore-11", "error-11"], {11}),
        (["Error-7", " erro-17 "], {7, 17}),
        (["error 14", "error-", "e-14", "terror-3", "error-1x"], set()),
        (None, set()),
    ],
)
def test_article_error_codes(keywords: list[str] | None, codes: set[int]) -> None:
    assert article_error_codes(keywords) == codes


def test_covered_by_the_products_article_or_a_general_one() -> None:
    articles = {(1, 14), (None, 9)}
    assert covered(1, 14, articles) and covered(2, 9, articles) and covered(None, 9, articles)
    assert not covered(2, 14, articles) and not covered(None, 14, articles)
