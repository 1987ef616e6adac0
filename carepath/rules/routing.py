"""Routing rules (Dynamics' routing rule sets): ordered conditions, first match names the queue."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Facts a condition may name. A condition's value is one value, a list of accepted values, or (for numbers
# such as error_code) an inclusive range {"from": 500, "to": 599}; either bound may be left out.
ROUTING_FACTS = ("tier", "origin", "priority", "product", "language", "error_code")


def matches(conditions: Mapping[str, Any], facts: Mapping[str, Any]) -> bool:
    """Every condition holds for the case's facts (no conditions: the catch-all rule)."""
    for name, wanted in conditions.items():
        if name not in ROUTING_FACTS:
            raise ValueError(
                f"routing condition on unknown fact {name!r} (known: {', '.join(ROUTING_FACTS)})"
            )
        value = facts.get(name)
        if isinstance(wanted, Mapping):
            if value is None or not wanted.get("from", value) <= value <= wanted.get("to", value):
                return False
            continue
        accepted = wanted if isinstance(wanted, list | tuple) else [wanted]
        if value not in accepted:
            return False
    return True


def first_matching_queue(
    facts: Mapping[str, Any], rules: Iterable[tuple[Mapping[str, Any], str]], default: str | None = None
) -> str | None:
    """The queue of the first rule (in order) whose conditions the case meets; `default` when none does."""
    for conditions, queue in rules:
        if matches(conditions, facts):
            return queue
    return default


def required_skills(*, product_skill: str | None, language: str | None, origin: str | None) -> frozenset[str]:
    """The skills a case needs: its product's skill area, its contact's language, and "iot" for device faults.

    Kept as data around this function: a product's skill area comes from `skill_areas` in
    data/organisation.json (stored as product.skill), the language from the contact."""
    needed = {s for s in (product_skill, language) if s}
    if origin == "iot":
        needed.add("iot")
    return frozenset(needed)


@dataclass
class AgentLoad:
    """An agent as assignment sees one: skill → proficiency (1–5), capacity, and open cases held now."""

    id: int
    proficiency: Mapping[str, int]
    capacity: int
    load: int = 0

    @property
    def free(self) -> int:
        return self.capacity - self.load


def best_agent(required: Iterable[str], agents: Iterable[AgentLoad]) -> AgentLoad | None:
    """The agent to take a case: holds every required skill and has free capacity; among those the highest
    total proficiency on the required skills, then the most free capacity, then the lowest id (stable).

    None when nobody qualifies: the case then waits in its queue. With no required skills, any agent with
    free capacity qualifies (the least loaded wins)."""
    required = tuple(required)
    best: AgentLoad | None = None
    best_key: tuple[int, int, int] | None = None
    for a in agents:
        if a.free <= 0 or any(s not in a.proficiency for s in required):
            continue
        key = (sum(a.proficiency[s] for s in required), a.free, -a.id)
        if best_key is None or key > best_key:
            best, best_key = a, key
    return best
