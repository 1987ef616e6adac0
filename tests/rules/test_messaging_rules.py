"""Who may be texted or emailed, and which provider errors are worth a retry."""

import pytest

from carepath.rules.messaging import email_block_reason, is_e164, is_transient, sms_block_reason


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("+306912345678", True),
        ("+48512345678", True),
        ("+3912", False),
        ("306912345678", False),
        ("+30 691 234 5678", False),
        ("", False),
        (None, False),
        ("+1555", False),
    ],
)
def test_e164(phone: str | None, expected: bool) -> None:
    assert is_e164(phone) is expected


@pytest.mark.parametrize(
    ("phone", "consent", "reason_starts"),
    [
        ("+306912345678", "opted_in", None),
        ("+306912345678", None, "consent: no SMS opt-in"),
        ("+306912345678", "opted_out", "consent: contact opted out"),
        (None, "opted_in", "address: contact has no mobile phone"),
        ("+3912", "opted_in", "address: phone number '+3912' is not a valid E.164"),
    ],
)
def test_sms_block_reason(phone: str | None, consent: str | None, reason_starts: str | None) -> None:
    reason = sms_block_reason(phone=phone, consent=consent)
    if reason_starts is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(reason_starts)


@pytest.mark.parametrize(
    ("email", "consent", "blocked"),
    [
        ("a@b.gr", None, False),
        ("a@b.gr", "opted_in", False),
        ("a@b.gr", "opted_out", True),
        (None, None, True),
    ],
)
def test_email_block_reason(email: str | None, consent: str | None, blocked: bool) -> None:
    assert (email_block_reason(email=email, consent=consent) is not None) is blocked


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (500, 20500, True),
        (503, None, True),
        (429, 20429, True),
        (None, None, True),
        (400, 21211, False),
        (400, 21610, False),
        (401, 20003, False),
        (404, 20404, False),
    ],
)
def test_transient(status: int | None, code: int | None, expected: bool) -> None:
    assert is_transient(http_status=status, code=code) is expected


@pytest.mark.parametrize(
    ("phone", "phone_valid", "blocked"),
    [
        ("+306912345678", True, False),
        ("+306912345678", False, True),  # an earlier check said no: trusted, not re-parsed
        ("+3912", True, False),  # an earlier check said yes: trusted
        ("+3912", None, True),  # not checked before: checked now
        ("+306912345678", None, False),
    ],
)
def test_sms_block_reason_uses_an_earlier_phone_check(
    phone: str, phone_valid: bool | None, blocked: bool
) -> None:
    reason = sms_block_reason(phone=phone, consent="opted_in", phone_valid=phone_valid)
    assert (reason is not None) is blocked
    if blocked:
        assert "not a valid E.164" in reason
