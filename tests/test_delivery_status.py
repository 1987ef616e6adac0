"""Delivery tracking: Twilio callbacks, SendGrid events, STOP/START, out-of-order callbacks, analytics."""

from __future__ import annotations

import csv
import json
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from flows.delivery_analytics import delivery_analytics
from flows.delivery_status import delivery_status
from flows.inbox_sweep import inbox_sweep
from models import (
    Consent,
    ConsentStatus,
    DeliveryEvent,
    InboxEvent,
    InboxState,
    Message,
    MessageChannel,
    MessageStatus,
)
from tests.utils.factories import make_contact
from tests.utils.flows import completed
from tests.utils.signing import twilio_headers

pytestmark = pytest.mark.usefixtures("prefect_server")
BASE = "https://care.example.test"


def make_message(
    session,
    *,
    channel=MessageChannel.SMS,
    provider="twilio",
    provider_id="SM1",
    status=MessageStatus.SENT,
    contact=None,
) -> Message:
    contact = contact or make_contact(session)
    message = Message(
        idempotency_key=f"test:{provider_id}",
        channel=channel,
        contact_id=contact.id,
        journey_step="test",
        to_address=contact.phone if channel is MessageChannel.SMS else contact.email,
        body="hello",
        provider=provider,
        provider_message_id=provider_id,
        status=status,
    )
    session.add(message)
    session.commit()
    return message


def twilio_callback(client, form: dict[str, str], path: str = "/webhooks/twilio/status"):
    response = client.post(path, content=urlencode(form), headers=twilio_headers(f"{BASE}{path}", form))
    assert response.status_code in (200, 202), response.text
    return response


def run_delivery() -> dict:
    return completed(delivery_status)


def fresh(session, obj):
    session.expire_all()
    return session.get(type(obj), obj.id)


def test_delivered_callback_moves_the_message_and_is_kept(session, receiver) -> None:
    message = make_message(session)
    twilio_callback(receiver, {"MessageSid": "SM1", "MessageStatus": "delivered"})
    run_delivery()
    message = fresh(session, message)
    assert message.status is MessageStatus.DELIVERED
    assert [e.status for e in session.scalars(select(DeliveryEvent))] == ["delivered"]


def test_out_of_order_callback_never_moves_a_message_backwards(session, receiver) -> None:
    message = make_message(session)
    twilio_callback(receiver, {"MessageSid": "SM1", "MessageStatus": "delivered"})
    twilio_callback(receiver, {"MessageSid": "SM1", "MessageStatus": "sent"})  # late and stale
    run_delivery()
    twilio_callback(receiver, {"MessageSid": "SM1", "MessageStatus": "queued"})
    run_delivery()
    assert fresh(session, message).status is MessageStatus.DELIVERED
    assert [e.status for e in session.scalars(select(DeliveryEvent).order_by(DeliveryEvent.id))] == [
        "delivered",
        "sent",
        "queued",
    ]  # every event is kept all the same


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("30003", "unreachable destination handset"),
        ("30005", "unknown destination handset"),
        ("30006", "landline or unreachable carrier"),
        ("30007", "filtered"),
        ("30008", "unknown error"),
        ("30410", "Twilio error 30410"),
    ],
)
def test_undelivered_keeps_code_and_human_reason(session, receiver, code, reason) -> None:
    message = make_message(session)
    twilio_callback(receiver, {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": code})
    run_delivery()
    message = fresh(session, message)
    assert (message.status, message.error_code) == (MessageStatus.UNDELIVERED, code)
    assert reason in message.status_reason


def test_21610_in_a_callback_opts_the_contact_out_of_sms(session, receiver) -> None:
    message = make_message(session)
    twilio_callback(receiver, {"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "21610"})
    run_delivery()
    consent = session.scalars(
        select(Consent).where(Consent.contact_id == message.contact_id, Consent.channel == MessageChannel.SMS)
    ).one()
    assert (consent.status, consent.source) == (ConsentStatus.OPTED_OUT, "twilio:21610")
    assert fresh(session, message).status is MessageStatus.FAILED


def test_callback_before_its_message_is_recorded_is_retried_by_the_sweep(session, receiver) -> None:
    twilio_callback(receiver, {"MessageSid": "SM-early", "MessageStatus": "delivered"})
    run_delivery()
    event = session.scalars(select(InboxEvent)).one()
    assert event.state is InboxState.FAILED and "unknown message SID 'SM-early'" in event.error
    message = make_message(session, provider_id="SM-early")
    completed(inbox_sweep, retry_after_seconds=0)
    assert fresh(session, message).status is MessageStatus.DELIVERED
    assert fresh(session, event).state is InboxState.PROCESSED


@pytest.mark.parametrize(
    ("keyword", "expected"),
    [
        ("STOP", ConsentStatus.OPTED_OUT),
        ("unsubscribe", ConsentStatus.OPTED_OUT),
        ("Cancel", ConsentStatus.OPTED_OUT),
        ("END", ConsentStatus.OPTED_OUT),
        ("QUIT", ConsentStatus.OPTED_OUT),
        ("STOPALL", ConsentStatus.OPTED_OUT),
        ("REVOKE", ConsentStatus.OPTED_OUT),
        ("OPTOUT", ConsentStatus.OPTED_OUT),
        ("START", ConsentStatus.OPTED_IN),
        ("YES", ConsentStatus.OPTED_IN),
        ("unstop", ConsentStatus.OPTED_IN),
    ],
)
def test_inbound_keywords_change_sms_consent(session, receiver, keyword, expected) -> None:
    initial = ConsentStatus.OPTED_OUT if expected is ConsentStatus.OPTED_IN else ConsentStatus.OPTED_IN
    contact = make_contact(session, phone="+306912345678", sms_consent=initial)
    session.commit()
    twilio_callback(
        receiver,
        {"MessageSid": f"SMin-{keyword}", "From": "+306912345678", "Body": keyword},
        path="/webhooks/twilio/inbound",
    )
    run_delivery()
    consent = session.scalars(select(Consent).where(Consent.contact_id == contact.id)).one()
    session.refresh(consent)
    assert consent.status is expected and consent.source == f"sms:{keyword.upper()}"


def test_stop_then_start(session, receiver) -> None:
    contact = make_contact(session, phone="+48512345678")
    session.commit()
    for n, word in enumerate(["STOP", "START"]):
        twilio_callback(
            receiver,
            {"MessageSid": f"SMx{n}", "From": "+48512345678", "Body": word},
            path="/webhooks/twilio/inbound",
        )
        run_delivery()
        session.expire_all()
        status = session.scalars(select(Consent.status).where(Consent.contact_id == contact.id)).one()
        session.commit()  # end the read: on SQLite an open transaction holds the lock the receiver needs
        assert status is (ConsentStatus.OPTED_OUT if word == "STOP" else ConsentStatus.OPTED_IN)


def post_sendgrid(client, keys, events):
    body = json.dumps(events).encode()
    response = client.post("/webhooks/sendgrid/events", content=body, headers=keys.headers(body))
    assert response.status_code == 202, response.text


def test_sendgrid_events_update_email_messages(session, receiver, sendgrid_keys) -> None:
    delivered = make_message(session, channel=MessageChannel.EMAIL, provider="sendgrid", provider_id="sgA")
    bounced = make_message(session, channel=MessageChannel.EMAIL, provider="sendgrid", provider_id="sgB")
    dropped = make_message(session, channel=MessageChannel.EMAIL, provider="sendgrid", provider_id="sgC")
    post_sendgrid(
        receiver,
        sendgrid_keys,
        [
            {
                "sg_event_id": "1",
                "event": "processed",
                "timestamp": 1764000000,
                "sg_message_id": "sgA.filter0001",
            },
            {
                "sg_event_id": "2",
                "event": "delivered",
                "timestamp": 1764000001,
                "carepath_message_id": str(delivered.id),
            },
            {
                "sg_event_id": "3",
                "event": "bounce",
                "timestamp": 1764000002,
                "sg_message_id": "sgB.f",
                "type": "blocked",
                "reason": "550 5.7.1 rejected by policy",
                "status": "5.7.1",
            },
            {
                "sg_event_id": "4",
                "event": "dropped",
                "timestamp": 1764000003,
                "sg_message_id": "sgC.f",
                "reason": "Bounced Address",
            },
            {
                "sg_event_id": "5",
                "event": "deferred",
                "timestamp": 1764000004,
                "sg_message_id": "sgA.f",
                "response": "421 try later",
            },
        ],
    )
    run_delivery()
    assert fresh(session, delivered).status is MessageStatus.DELIVERED
    b = fresh(session, bounced)
    assert b.status is MessageStatus.BOUNCED and b.status_reason == "blocked: 550 5.7.1 rejected by policy"
    d = fresh(session, dropped)
    assert d.status is MessageStatus.DROPPED and d.status_reason == "Bounced Address"
    assert len(session.scalars(select(DeliveryEvent)).all()) == 5


@pytest.mark.parametrize("kind", ["unsubscribe", "spamreport"])
def test_unsubscribe_and_spam_report_opt_out_of_email(session, receiver, sendgrid_keys, kind) -> None:
    message = make_message(session, channel=MessageChannel.EMAIL, provider="sendgrid", provider_id="sgZ")
    post_sendgrid(
        receiver,
        sendgrid_keys,
        [
            {
                "sg_event_id": "u1",
                "event": kind,
                "timestamp": 1764000000,
                "carepath_message_id": str(message.id),
            }
        ],
    )
    run_delivery()
    consent = session.scalars(
        select(Consent).where(
            Consent.contact_id == message.contact_id, Consent.channel == MessageChannel.EMAIL
        )
    ).one()
    assert (consent.status, consent.source) == (ConsentStatus.OPTED_OUT, f"sendgrid:{kind}")


def test_delivery_analytics_counts_by_channel_status_and_reason(session, tmp_path, monkeypatch) -> None:
    from carepath.settings import reset_settings

    monkeypatch.setenv("CAREPATH_REPORTS_DIR", str(tmp_path))
    reset_settings()
    make_message(session, provider_id="a", status=MessageStatus.DELIVERED)
    make_message(session, provider_id="b", status=MessageStatus.DELIVERED)
    m = make_message(session, provider_id="c", status=MessageStatus.UNDELIVERED)
    m.status_reason = "unreachable destination handset"
    session.commit()
    path = delivery_analytics()
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["channel"], r["status"], r["reason"], r["messages"]) for r in rows} == {
        ("sms", "delivered", "", "2"),
        ("sms", "undelivered", "unreachable destination handset", "1"),
    }
