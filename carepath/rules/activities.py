"""Activities (Dynamics' phone call, task, email, SMS, note): what counts as a case's first response, what
an operator may record, and a customer's timeline in order.

Plain functions: no Prefect, session or HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

TYPES = ("phone_call", "task", "email", "sms", "note")
DIRECTIONS = ("inbound", "outbound")
STATES = ("open", "completed", "cancelled")
# What a person can do that answers the customer: write, text or call them (an article is sent as an email).
_RESPONDING_TYPES = frozenset({"email", "sms", "phone_call"})


class ActivityInputError(ValueError):
    """An activity that cannot be recorded as given; the message says what to change."""


def counts_as_first_response(
    *, type: str, direction: str | None, automatic: bool, state: str, planned: bool = False
) -> bool:
    """A person's outbound email, SMS or phone call to the customer that took place: completed, or recorded
    open without a due time (logged as it happens). One with a due time is planned, and counts once it is
    completed; a cancelled one never. Acknowledgements and journey notifications are automatic: never."""
    if type not in _RESPONDING_TYPES or direction != "outbound" or automatic:
        return False
    return state == "completed" or (state == "open" and not planned)


def parse_due(value: str | None) -> datetime | None:
    """An ISO 8601 due time; one without an offset is taken as UTC."""
    if value is None:
        return None
    try:
        due = datetime.fromisoformat(value)
    except ValueError:
        raise ActivityInputError(
            f"--due {value!r} is not an ISO 8601 time (e.g. 2026-12-07T15:00:00+02:00)"
        ) from None
    return due.replace(tzinfo=UTC) if due.tzinfo is None else due.astimezone(UTC)


def check_activity(*, type: str, direction: str | None, subject: str) -> None:
    """Refuse an unknown type or direction, or an empty subject, naming what is allowed."""
    if type not in TYPES:
        raise ActivityInputError(f"unknown activity type {type!r}: one of {', '.join(TYPES)}")
    if direction is not None and direction not in DIRECTIONS:
        raise ActivityInputError(f"unknown direction {direction!r}: inbound or outbound")
    if not subject.strip():
        raise ActivityInputError("an activity needs a subject")


def closing_state(*, current: str, cancel: bool) -> str:
    """The state an open activity is closed into: completed, or cancelled. Closing a closed one is refused."""
    if current != "open":
        raise ActivityInputError(f"the activity is already {current}")
    return "cancelled" if cancel else "completed"


def newest_first(entries: Iterable[dict]) -> list[dict]:
    """Timeline entries (each with an aware `at`) newest first; at the same moment, in kind order and then as
    given, so the order is stable from run to run."""
    order = {"status_change": 0, "message": 1, "activity": 2}
    indexed = list(enumerate(entries))
    indexed.sort(key=lambda ie: (-ie[1]["at"].timestamp(), order.get(ie[1]["kind"], 9), -ie[0]))
    return [e for _, e in indexed]
