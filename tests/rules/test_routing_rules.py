"""Routing: evaluated top to bottom, the first match wins, a default otherwise."""

import pytest

from carepath.rules.routing import first_matching_queue

RULES = [
    ({"tier": "gold"}, "Gold support"),
    ({"origin": "iot"}, "IoT triage"),
    ({"tier": "silver", "priority": ["critical", "high"]}, "Silver priority"),
    ({"product": "CP-EV-600"}, "EV charging"),
]


@pytest.mark.parametrize(
    ("facts", "queue"),
    [
        ({"tier": "gold", "origin": "iot"}, "Gold support"),  # order decides: gold comes first
        ({"tier": "silver", "origin": "iot"}, "IoT triage"),
        ({"tier": "silver", "origin": "email", "priority": "high"}, "Silver priority"),
        ({"tier": "silver", "origin": "email", "priority": "normal"}, "Standard"),
        ({"tier": "standard", "origin": "web", "product": "CP-EV-600"}, "EV charging"),
        ({}, "Standard"),
    ],
)
def test_first_match_wins_else_the_default(facts, queue) -> None:
    assert first_matching_queue(facts, RULES, default="Standard") == queue


def test_a_catch_all_rule_matches_everything() -> None:
    assert first_matching_queue({"tier": "x"}, [({}, "Everyone")]) == "Everyone"


def test_an_unknown_fact_is_an_error_not_a_silent_miss() -> None:
    with pytest.raises(ValueError, match="unknown fact 'colour'"):
        first_matching_queue({}, [({"colour": "red"}, "Q")])
