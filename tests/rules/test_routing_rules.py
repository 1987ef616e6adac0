"""Routing: evaluated top to bottom, the first match wins, a default otherwise."""

import pytest

from carepath.rules.routing import AgentLoad, best_agent, first_matching_queue, required_skills

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


@pytest.mark.parametrize(
    ("error_code", "queue"),
    [(499, "Standard"), (500, "Boilers"), (599, "Boilers"), (600, "Standard"), (None, "Standard")],
)
def test_an_error_code_range_is_inclusive(error_code, queue) -> None:
    rules = [({"error_code": {"from": 500, "to": 599}}, "Boilers")]
    assert first_matching_queue({"error_code": error_code}, rules, default="Standard") == queue


@pytest.mark.parametrize(
    ("product_skill", "language", "origin", "needed"),
    [
        ("heating", "el", "iot", {"heating", "el", "iot"}),
        (None, "en", "email", {"en"}),
        (None, None, "phone", set()),
    ],
)
def test_required_skills_come_from_product_language_and_origin(product_skill, language, origin, needed):
    assert required_skills(product_skill=product_skill, language=language, origin=origin) == needed


def _agent(id_, capacity=2, load=0, **skills):
    return AgentLoad(id=id_, proficiency=skills, capacity=capacity, load=load)


@pytest.mark.parametrize(
    ("required", "agents", "chosen"),
    [
        # Only an agent holding every required skill qualifies.
        (["el", "heating"], [_agent(1, el=5), _agent(2, el=3, heating=3)], 2),
        # Best match: the highest proficiency on the required skills.
        (["en"], [_agent(1, en=3), _agent(2, en=5)], 2),
        # A full agent is skipped however good the match.
        (["en"], [_agent(1, en=3), _agent(2, capacity=1, load=1, en=5)], 1),
        # Equal match: the one with more free capacity, then the lower id.
        (["en"], [_agent(1, capacity=3, load=2, en=4), _agent(2, capacity=3, en=4)], 2),
        (["en"], [_agent(2, en=4), _agent(1, en=4)], 1),
        # No required skills: anyone with room, the least loaded first.
        ([], [_agent(1, capacity=5, load=4, en=1), _agent(2, capacity=5, load=1)], 2),
        # Nobody qualifies: the case waits in its queue.
        (["pt"], [_agent(1, en=5), _agent(2, capacity=1, load=1, pt=5)], None),
        (["en"], [], None),
    ],
)
def test_best_agent(required, agents, chosen) -> None:
    best = best_agent(required, agents)
    assert (best.id if best else None) == chosen
