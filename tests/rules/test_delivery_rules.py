"""Delivery tracking rules: monotonic status, reasons, keywords."""

import pytest

from carepath.rules.delivery import advance_status, should_notify, sms_keyword, twilio_error_reason


@pytest.mark.parametrize(
    ("current", "incoming", "expected"),
    [
        ("sent", "delivered", "delivered"),
        ("delivered", "sent", "delivered"),  # a stale callback never moves a message backwards
        ("delivered", "undelivered", "delivered"),  # final states stay final
        ("sending", "sent", "sent"),
        ("sent", "queued", "sent"),
        ("sent", "undelivered", "undelivered"),
        ("sent", "failed", "failed"),
        ("blocked", "delivered", "blocked"),
        ("queued", "sending", "sending"),
    ],
)
def test_advance_status(current: str, incoming: str, expected: str) -> None:
    assert advance_status(current, incoming) == expected


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("30003", "unreachable destination handset"),
        ("30005", "unknown destination handset"),
        ("30006", "landline"),
        ("30007", "filtered"),
        ("30008", "unknown error"),
        ("21610", "opted out"),
        ("30034", "Twilio error 30034"),
        (None, None),
        ("", None),
    ],
)
def test_twilio_error_reason(code: str | None, reason: str | None) -> None:
    got = twilio_error_reason(code)
    assert (got is None) if reason is None else (reason in got)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("STOP", "opt_out"),
        (" stop ", "opt_out"),
        ("Unsubscribe", "opt_out"),
        ("END", "opt_out"),
        ("QUIT", "opt_out"),
        ("STOPALL", "opt_out"),
        ("REVOKE", "opt_out"),
        ("OPTOUT", "opt_out"),
        ("CANCEL", "opt_out"),
        ("START", "opt_in"),
        ("yes", "opt_in"),
        ("UNSTOP", "opt_in"),
        ("stop it please", None),
        ("Thanks!", None),
        ("", None),
        (None, None),
    ],
)
def test_sms_keyword(body: str | None, expected: str | None) -> None:
    assert sms_keyword(body) == expected


@pytest.mark.parametrize(
    ("status", "notify", "expected"),
    [
        ("resolved", ["resolved"], True),
        ("cancelled", ["resolved"], False),
        ("active", [], False),
        ("cancelled", ["resolved", "cancelled"], True),
    ],
)
def test_should_notify(status: str, notify: list[str], expected: bool) -> None:
    assert should_notify(status, notify) is expected
