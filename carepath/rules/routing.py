"""Routing rules (Dynamics' routing rule sets): ordered conditions, first match names the queue."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Facts a condition may name. A condition's value is one value or a list of accepted values.
ROUTING_FACTS = ("tier", "origin", "priority", "product", "language")


def matches(conditions: Mapping[str, Any], facts: Mapping[str, Any]) -> bool:
    """Every condition holds for the case's facts (no conditions: the catch-all rule)."""
    for name, wanted in conditions.items():
        if name not in ROUTING_FACTS:
            raise ValueError(
                f"routing condition on unknown fact {name!r} (known: {', '.join(ROUTING_FACTS)})"
            )
        accepted = wanted if isinstance(wanted, list | tuple) else [wanted]
        if facts.get(name) not in accepted:
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
