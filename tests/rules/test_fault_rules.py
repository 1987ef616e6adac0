"""The IoT fault journey's rules, without Prefect or a database."""

from datetime import UTC, datetime, timedelta

import pytest

from carepath.rules.faults import Fault, FaultAction, FaultRules, count_in_window, is_critical, plan_device

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "threshold", "expected"),
    [
        (10, 10, False),
        (11, 10, True),
        (0, 10, False),
        (9, 10, False),
        (500, 10, True),
        (5, 4, True),
        (4, 4, False),
    ],
)
def test_critical_only_above_threshold(code: int, threshold: int, expected: bool) -> None:
    assert is_critical(code, threshold) is expected


@pytest.mark.parametrize(
    ("offsets", "at", "window", "expected"),
    [
        ([0], 0, 60, 1),
        ([0, 10, 20], 20, 60, 3),
        ([0, 10, 20], 20, 15, 2),  # 0 is outside [5, 20]
        ([0, 10, 20], 10, 60, 2),  # later faults do not count for an earlier one
        ([0, 60], 60, 60, 2),  # the window's start is inclusive
        ([], 0, 60, 0),
    ],
)
def test_count_in_window(offsets: list[int], at: int, window: int, expected: int) -> None:
    times = sorted(T0 + timedelta(minutes=o) for o in offsets)
    assert count_in_window(times, T0 + timedelta(minutes=at), timedelta(minutes=window)) == expected


def fault(ref: int, code: int, minute: int, device: str = "DEV-1") -> Fault:
    return Fault(ref=ref, device_id=device, error_code=code, occurred_at=T0 + timedelta(minutes=minute))


def actions(plan) -> list[str]:
    return [d.action.value for d in plan.decisions]


def test_first_critical_fault_opens_and_repeats_attach() -> None:
    plan = plan_device(
        "DEV-1",
        [fault(3, 14, 20), fault(1, 14, 0), fault(2, 14, 10)],
        earlier_fault_times=[],
        has_open_case=False,
        rules=FaultRules(),
    )
    assert actions(plan) == ["open_case", "attach", "attach"]
    assert [d.fault.ref for d in plan.decisions] == [1, 2, 3]  # time order, not arrival order
    assert [d.frequency for d in plan.decisions] == [1, 2, 3]
    assert plan.opens_case.fault.ref == 1


def test_non_critical_faults_are_only_recorded() -> None:
    plan = plan_device(
        "DEV-1",
        [fault(1, 10, 0), fault(2, 3, 1)],
        earlier_fault_times=[],
        has_open_case=False,
        rules=FaultRules(),
    )
    assert actions(plan) == ["record", "record"]
    assert plan.opens_case is None and plan.attached == []
    assert [d.frequency for d in plan.decisions] == [None, None]  # only critical faults are counted


def test_open_case_means_attach_not_open() -> None:
    plan = plan_device(
        "DEV-1", [fault(1, 30, 0)], earlier_fault_times=[], has_open_case=True, rules=FaultRules()
    )
    assert actions(plan) == ["attach"]


@pytest.mark.parametrize(
    ("min_count", "earlier_minutes", "expected"),
    [
        (1, [], ["open_case", "attach"]),
        (2, [], ["record", "open_case"]),
        (3, [], ["record", "record"]),
        (3, [-30], ["record", "open_case"]),  # an earlier recorded fault within the window counts
        (3, [-90], ["record", "record"]),  # …but not one before the window
    ],
)
def test_minimum_frequency_before_a_case_opens(
    min_count: int, earlier_minutes: list[int], expected: list[str]
) -> None:
    rules = FaultRules(threshold=10, window=timedelta(minutes=60), min_count=min_count)
    plan = plan_device(
        "DEV-1",
        [fault(1, 12, 0), fault(2, 12, 5)],
        earlier_fault_times=[T0 + timedelta(minutes=m) for m in earlier_minutes],
        has_open_case=False,
        rules=rules,
    )
    assert actions(plan) == expected


def test_non_critical_faults_count_towards_frequency() -> None:
    rules = FaultRules(min_count=2)
    plan = plan_device(
        "DEV-1", [fault(1, 2, 0), fault(2, 12, 1)], earlier_fault_times=[], has_open_case=False, rules=rules
    )
    assert actions(plan) == ["record", "open_case"]
    assert plan.decisions[1].action is FaultAction.OPEN_CASE and plan.decisions[1].frequency == 2


def test_ticket_numbers_are_readable_and_distinct() -> None:
    import re

    from carepath.rules.tickets import new_ticket_number, new_tracking_token

    tickets = {new_ticket_number() for _ in range(5000)}
    assert len(tickets) == 5000
    assert all(re.fullmatch(r"CAS-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}", t) for t in tickets)
    assert len({new_tracking_token() for _ in range(100)}) == 100
