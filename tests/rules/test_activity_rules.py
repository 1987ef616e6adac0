"""Activity rules: what counts as a first response, input checks, closing, the timeline's order."""

from datetime import UTC, datetime, timedelta

import pytest

from carepath.rules.activities import (
    ActivityInputError,
    check_activity,
    closing_state,
    counts_as_first_response,
    newest_first,
    parse_due,
)


@pytest.mark.parametrize(
    ("type", "direction", "automatic", "state", "planned", "counts"),
    [
        ("email", "outbound", False, "completed", False, True),  # an agent's reply
        ("sms", "outbound", False, "completed", False, True),
        ("phone_call", "outbound", False, "open", False, True),  # a call logged as it happens
        ("phone_call", "outbound", False, "completed", True, True),  # a planned call, made
        ("phone_call", "outbound", False, "open", True, False),  # a planned call, not made yet
        ("phone_call", "outbound", False, "cancelled", False, False),
        ("phone_call", "inbound", False, "completed", False, False),  # the customer called us
        ("phone_call", None, False, "completed", False, False),
        ("email", "outbound", True, "completed", False, False),  # an acknowledgement
        ("sms", "outbound", True, "completed", False, False),  # the IoT journey's text
        ("note", "outbound", False, "completed", False, False),
        ("task", "outbound", False, "completed", False, False),
    ],
)
def test_counts_as_first_response(type, direction, automatic, state, planned, counts) -> None:
    assert (
        counts_as_first_response(
            type=type, direction=direction, automatic=automatic, state=state, planned=planned
        )
        is counts
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("2026-12-07T15:00:00+02:00", datetime(2026, 12, 7, 13, tzinfo=UTC)),
        ("2026-12-07T15:00:00", datetime(2026, 12, 7, 15, tzinfo=UTC)),  # no offset: UTC
        ("2026-12-07", datetime(2026, 12, 7, tzinfo=UTC)),
    ],
)
def test_parse_due(value, expected) -> None:
    assert parse_due(value) == expected


@pytest.mark.parametrize("value", ["tomorrow", "2026-13-01", ""])
def test_parse_due_refuses_what_is_not_iso(value) -> None:
    with pytest.raises(ActivityInputError, match="ISO 8601"):
        parse_due(value)


@pytest.mark.parametrize(
    ("type", "direction", "subject", "error"),
    [
        ("fax", None, "x", "unknown activity type 'fax': one of phone_call, task, email, sms, note"),
        ("note", "sideways", "x", "unknown direction 'sideways'"),
        ("note", None, "  ", "needs a subject"),
    ],
)
def test_check_activity_names_what_is_allowed(type, direction, subject, error) -> None:
    with pytest.raises(ActivityInputError, match=error):
        check_activity(type=type, direction=direction, subject=subject)


def test_check_activity_accepts_every_type() -> None:
    for t in ("phone_call", "task", "email", "sms", "note"):
        check_activity(type=t, direction="inbound", subject="s")


@pytest.mark.parametrize(
    ("current", "cancel", "expected"),
    [("open", False, "completed"), ("open", True, "cancelled")],
)
def test_closing_state(current, cancel, expected) -> None:
    assert closing_state(current=current, cancel=cancel) == expected


@pytest.mark.parametrize("current", ["completed", "cancelled"])
def test_closing_a_closed_activity_is_refused(current) -> None:
    with pytest.raises(ActivityInputError, match=f"already {current}"):
        closing_state(current=current, cancel=False)


def test_newest_first_is_stable_at_the_same_moment() -> None:
    t = datetime(2026, 12, 7, 9, tzinfo=UTC)
    entries = [
        {"at": t, "kind": "activity", "n": 1},
        {"at": t + timedelta(minutes=1), "kind": "message", "n": 2},
        {"at": t, "kind": "status_change", "n": 3},
        {"at": t, "kind": "activity", "n": 4},
    ]
    assert [e["n"] for e in newest_first(entries)] == [2, 3, 4, 1]
