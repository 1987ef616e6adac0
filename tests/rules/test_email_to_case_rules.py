"""Email-to-case rules: ticket numbers in subjects, threading headers, machine-sent mail, reopen window."""

from datetime import UTC, datetime, timedelta

import pytest

from carepath.rules.email_to_case import (
    is_automatic,
    referenced_message_ids,
    sender_address,
    thread_decision,
    ticket_in_subject,
)


@pytest.mark.parametrize(
    ("subject", "ticket"),
    [
        ("RE: [CAS-7K3MQ-9XZ2B] Boiler pressure low", "CAS-7K3MQ-9XZ2B"),
        ("Fwd: about cas-7k3mq-9xz2b please", "CAS-7K3MQ-9XZ2B"),
        ("CAS-7K3MQ-9XZ2B", "CAS-7K3MQ-9XZ2B"),
        ("Boiler pressure low", None),
        ("CAS-7K3MQ-9XZ2", None),  # one digit short
        ("CAS-7K3MQ-9XZ2BB", None),  # one too many: not a ticket
        ("CAS-IK3MQ-9XZ2B", None),  # I is not a Crockford digit
        (None, None),
    ],
)
def test_ticket_in_subject(subject, ticket) -> None:
    assert ticket_in_subject(subject) == ticket


def test_referenced_ids_in_reply_to_first_then_newest_reference() -> None:
    ids = referenced_message_ids("<b@x>", "<a@x> <c@x> <b@x>")
    assert ids == ["b@x", "c@x", "a@x"]
    assert referenced_message_ids(None, None) == []


@pytest.mark.parametrize(
    ("headers", "sender", "content_type", "automatic"),
    [
        ({}, "eleni@helios-energy.gr", "text/plain", False),
        ({"Auto-Submitted": "no"}, "eleni@helios-energy.gr", None, False),
        ({"Auto-Submitted": "auto-replied"}, "eleni@helios-energy.gr", None, True),
        ({"Auto-Submitted": "auto-generated"}, "eleni@helios-energy.gr", None, True),
        ({"Precedence": "bulk"}, "news@x.example", None, True),
        ({"Precedence": "auto_reply"}, "a@x.example", None, True),
        ({"X-Autoreply": "yes"}, "a@x.example", None, True),
        ({"X-Auto-Response-Suppress": "All"}, "a@x.example", None, True),
        ({"Return-Path": "<>"}, "a@x.example", None, True),
        ({}, "a@x.example", "multipart/report; report-type=delivery-status", True),
        ({}, "MAILER-DAEMON@mx.example", None, True),
        ({}, "no-reply@shop.example", None, True),
    ],
)
def test_machine_sent_mail_is_recognised(headers, sender, content_type, automatic) -> None:
    assert (is_automatic(headers, sender, content_type) is not None) is automatic


@pytest.mark.parametrize(
    ("header", "address"),
    [
        ("Eleni Papadopoulou <Eleni@Helios-Energy.GR>", "eleni@helios-energy.gr"),
        (" eleni@helios-energy.gr ", "eleni@helios-energy.gr"),
        ("not an address", None),
        (None, None),
    ],
)
def test_sender_address(header, address) -> None:
    assert sender_address(header) == address


NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "resolved_hours_ago", "decision"),
    [
        ("active", None, "attach"),
        ("resolved", 23.9, "attach"),
        ("resolved", 24.0, "attach"),  # the boundary belongs to the window
        ("resolved", 24.1, "new"),
        ("cancelled", 1, "new"),
    ],
)
def test_thread_decision_before_and_after_the_window(status, resolved_hours_ago, decision) -> None:
    resolved_at = NOW - timedelta(hours=resolved_hours_ago) if resolved_hours_ago is not None else None
    assert (
        thread_decision(status=status, resolved_at=resolved_at, now=NOW, reopen_within_hours=24) == decision
    )
