"""SLA rules: a pause extends the due time by the paused working minutes; who is told of a warning or a
failure; which SLA a case falls under."""

from datetime import timedelta

import pytest

from carepath.rules.sla import Calendar, SlaTerms, choose_sla, extend_for_pause, notice_recipients
from tests.rules.test_sla_rules import ATHENS_OFFICE, athens

AROUND_THE_CLOCK = Calendar()


@pytest.mark.parametrize(
    ("paused_at", "resumed_at", "due_at", "new_due", "paused_minutes"),
    [
        # Two working hours on a Wednesday: due moves two working hours on, over the lunch break.
        (
            athens(2026, 12, 2, 9),
            athens(2026, 12, 2, 11),
            athens(2026, 12, 2, 11, 30),
            athens(2026, 12, 2, 14, 30),
            120,
        ),
        # Paused Friday 17:00, resumed Monday 09:00: one hour Friday + one Monday, not 64 wall hours.
        (
            athens(2026, 12, 4, 17),
            athens(2026, 12, 7, 9),
            athens(2026, 12, 7, 10),
            athens(2026, 12, 7, 12),
            120,
        ),
        # Paused over Christmas (a Friday holiday) and the weekend: only Thursday's last hour counts.
        (
            athens(2026, 12, 24, 17),
            athens(2026, 12, 28, 8),
            athens(2026, 12, 28, 9),
            athens(2026, 12, 28, 10),
            60,
        ),
        # The extension itself skips the weekend: due Friday 17:30 + 60 working minutes → Monday 08:30.
        (
            athens(2026, 12, 4, 9),
            athens(2026, 12, 4, 10),
            athens(2026, 12, 4, 17, 30),
            athens(2026, 12, 7, 8, 30),
            60,
        ),
        # Paused and resumed on a Sunday: no working time passed, the due time stays.
        (athens(2026, 12, 6, 10), athens(2026, 12, 6, 15), athens(2026, 12, 7, 9), athens(2026, 12, 7, 9), 0),
    ],
)
def test_a_pause_extends_the_due_time_by_paused_business_minutes(
    paused_at, resumed_at, due_at, new_due, paused_minutes
) -> None:
    due, minutes = extend_for_pause(
        due_at=due_at, paused_at=paused_at, resumed_at=resumed_at, calendar=ATHENS_OFFICE
    )
    assert due == new_due
    assert minutes == paused_minutes


def test_around_the_clock_a_pause_is_its_wall_time() -> None:
    start = athens(2026, 12, 5, 10)  # a Saturday: every minute counts
    due, minutes = extend_for_pause(
        due_at=start + timedelta(hours=1),
        paused_at=start,
        resumed_at=start + timedelta(hours=2),
        calendar=AROUND_THE_CLOCK,
    )
    assert (due, minutes) == (start + timedelta(hours=3), 120)


OWNER, MANAGER, FALLBACK = "owner@x.example", "manager@x.example", "escalation@x.example"


@pytest.mark.parametrize(
    ("step", "owner", "manager", "fallback", "expected"),
    [
        ("warning", OWNER, MANAGER, FALLBACK, (OWNER,)),
        ("failure", OWNER, MANAGER, FALLBACK, (OWNER, MANAGER)),
        ("failure", OWNER, None, FALLBACK, (OWNER, FALLBACK)),  # no manager: the escalation address
        ("failure", None, MANAGER, FALLBACK, (MANAGER,)),  # unassigned case: the manager alone
        ("warning", None, MANAGER, FALLBACK, (MANAGER,)),  # a warning for nobody goes to the manager
        ("warning", None, None, FALLBACK, (FALLBACK,)),
        ("failure", OWNER, OWNER, FALLBACK, (OWNER,)),  # the owner manages the queue: one email
        ("failure", None, None, None, ()),
    ],
)
def test_notice_recipients(step, owner, manager, fallback, expected) -> None:
    assert notice_recipients(step=step, owner=owner, manager=manager, fallback=fallback) == expected


SLAS = [
    SlaTerms(3, None),
    SlaTerms(1, "gold"),
    SlaTerms(2, "silver", ("critical", "high")),
    SlaTerms(5, "silver"),
    SlaTerms(4, None, ("critical",)),
]


@pytest.mark.parametrize(
    ("tier", "priority", "expected"),
    [
        ("gold", "critical", 1),
        ("silver", "critical", 2),
        ("silver", "high", 2),  # tier and priority named beats the tier alone (5)
        ("silver", "low", 5),  # the silver SLA for high/critical does not apply; the silver one for all does
        ("standard", "critical", 4),  # priorities alone beat the SLA for every case
        ("standard", "normal", 3),
        (None, "normal", 3),
    ],
)
def test_choose_sla(tier, priority, expected) -> None:
    assert choose_sla(SLAS, tier=tier, priority=priority) == expected


def test_no_sla_applies() -> None:
    assert choose_sla([SlaTerms(1, "gold")], tier="silver", priority="normal") is None
