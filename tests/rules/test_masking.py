"""Masking phones, emails and tracking tokens for logs (carepath.masking): pure functions."""

from __future__ import annotations

import pytest

from carepath.masking import mask_address, mask_email, mask_phone, mask_text


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+306912345678", "+30*******678"),
        ("+1 415-555-0100", "+14******100"),
        ("6912345678", "69*****678"),
        ("12345", "*****"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_phone_keeps_the_country_and_the_last_three_digits(phone, masked) -> None:
    assert mask_phone(phone) == masked


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("maria.papadopoulou@helios.example", "m***@helios.example"),
        ("a@b.example", "a***@b.example"),
        ('"odd@local"@x.example', '"***@x.example'),
        ("no-at-sign", "***"),
        ("", ""),
    ],
)
def test_mask_email_keeps_the_first_letter_and_the_domain(email, masked) -> None:
    assert mask_email(email) == masked


def test_mask_address_masks_each_kind_as_what_it_is() -> None:
    assert mask_address("+306912345678") == "+30*******678"
    assert mask_address("maria@helios.example") == "m***@helios.example"


def test_mask_text_masks_every_email_phone_and_tracking_token_in_free_text() -> None:
    text = (
        "maria@helios.example is not a known contact; call +30 691 234 5678 or +306912345678; "
        "see https://care.example/track/CAS-1?t=Zx8_k-9aQ and {'email': ('a.b@c.example', 'x@y.example')}"
    )
    masked = mask_text(text)
    for secret in ("maria@", "691 234 5678", "306912345678", "Zx8_k-9aQ", "a.b@c", "x@y.example"):
        assert secret not in masked
    assert "m***@helios.example" in masked and "?t=***" in masked and "CAS-1" in masked
    assert mask_text("no personal data: 42 faults, error 14") == "no personal data: 42 faults, error 14"
