"""The webhook receiver: signatures, validation, size limits, duplicates, and what reaches the inbox."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from models import InboxEvent, InboxState, WebhookRejection
from tests.utils.signing import CASES_SECRET, IOT_SECRET, carepath_headers, twilio_headers

BASE = "https://care.example.test"


def fault(event_id: str = "f-1", **over) -> dict:
    return {
        "event_id": event_id,
        "device_id": "DEV-000001",
        "error_code": 14,
        "occurred_at": datetime.now(UTC).isoformat(),
        **over,
    }


def post_signed(client, path: str, payload, *, secret: str = IOT_SECRET, **kw):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(path, content=body, headers=carepath_headers(secret, body, **kw))


def read(session, stmt):
    """Read in a short transaction (on SQLite an open one would hold the write lock the receiver needs)."""
    session.expire_all()
    rows = session.scalars(stmt).all()
    session.commit()
    return rows


def inbox(session) -> list[InboxEvent]:
    return read(session, select(InboxEvent).order_by(InboxEvent.id))


def rejections(session) -> list[WebhookRejection]:
    return read(session, select(WebhookRejection).order_by(WebhookRejection.id))


def test_signed_fault_is_stored_before_the_202(receiver, session) -> None:
    response = post_signed(receiver, "/webhooks/iot/faults", fault())
    assert response.status_code == 202
    [row] = inbox(session)
    assert response.json() == {"inbox_id": row.id, "duplicate": False}
    assert (row.source, row.kind, row.event_id, row.state) == ("iot", "fault", "f-1", InboxState.PENDING)
    assert row.payload["error_code"] == 14 and row.payload["device_id"] == "DEV-000001"


def test_resend_of_the_same_event_answers_the_same_id_and_adds_nothing(receiver, session) -> None:
    first = post_signed(receiver, "/webhooks/iot/faults", fault("dup"))
    second = post_signed(receiver, "/webhooks/iot/faults", fault("dup"))
    assert first.json()["inbox_id"] == second.json()["inbox_id"]
    assert second.json()["duplicate"] is True
    assert len(inbox(session)) == 1


def test_a_buffering_device_posts_an_array(receiver, session) -> None:
    response = post_signed(receiver, "/webhooks/iot/faults", [fault("a"), fault("b"), fault("a")])
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 3 and body["duplicates"] == 1
    assert body["inbox_ids"][0] == body["inbox_ids"][2]
    assert [r.event_id for r in inbox(session)] == ["a", "b"]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing X-Carepath-Signature"),
        ({"X-Carepath-Timestamp": "{now}", "X-Carepath-Signature": "sha256=00"}, "signature does not match"),
        ({"X-Carepath-Timestamp": "yesterday", "X-Carepath-Signature": "sha256=00"}, "not a Unix time"),
    ],
)
def test_bad_or_missing_signature_is_401_and_recorded(receiver, session, headers, reason) -> None:
    headers = {k: v.replace("{now}", str(int(time.time()))) for k, v in headers.items()}
    response = receiver.post(
        "/webhooks/iot/faults",
        content=json.dumps(fault()).encode(),
        headers={"Content-Type": "application/json", **headers},
    )
    assert response.status_code == 401 and reason in response.json()["error"]
    assert inbox(session) == []
    [rejection] = rejections(session)
    assert (rejection.source, rejection.status_code) == ("iot", 401) and reason in rejection.reason


def test_body_signed_with_another_sources_secret_is_refused(receiver, session) -> None:
    response = post_signed(receiver, "/webhooks/iot/faults", fault(), secret=CASES_SECRET)
    assert response.status_code == 401


def test_tampered_body_is_refused(receiver, session) -> None:
    body = json.dumps(fault()).encode()
    headers = carepath_headers(IOT_SECRET, body)
    response = receiver.post("/webhooks/iot/faults", content=body.replace(b"14", b"99"), headers=headers)
    assert response.status_code == 401 and inbox(session) == []


def test_replay_outside_the_window_is_refused(receiver, session) -> None:
    response = post_signed(receiver, "/webhooks/iot/faults", fault(), timestamp=int(time.time()) - 301)
    assert response.status_code == 401 and "window" in response.json()["error"]
    assert inbox(session) == []


def test_malformed_json_is_400(receiver, session) -> None:
    response = post_signed(receiver, "/webhooks/iot/faults", b'{"event_id": "x", ')
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    assert rejections(session)[0].status_code == 400


@pytest.mark.parametrize(
    ("path", "secret"), [("/webhooks/iot/faults", IOT_SECRET), ("/webhooks/cases/status", CASES_SECRET)]
)
def test_deeply_nested_json_is_400_and_recorded(receiver, session, path, secret) -> None:
    deep = b"[" * 60_000 + b"]" * 60_000  # 120 kB: under a 1 MiB limit, far past Python's recursion limit
    receiver.app.state.settings.webhook_max_body_bytes = 200_000
    response = post_signed(receiver, path, deep, secret=secret)
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"]
    assert rejections(session)[0].status_code == 400 and inbox(session) == []


def test_invalid_field_is_422_naming_the_field(receiver, session) -> None:
    response = post_signed(
        receiver, "/webhooks/iot/faults", fault(error_code="E-OVERHEAT", occurred_at="noon")
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"error_code", "occurred_at"}
    assert inbox(session) == []


def test_oversized_body_is_413(receiver, session) -> None:
    big = fault(message="x" * 100) | {"padding": "y" * 70_000}
    response = post_signed(receiver, "/webhooks/iot/faults", big)
    assert response.status_code == 413
    assert rejections(session)[0].status_code == 413 and inbox(session) == []


def test_case_status_webhook(receiver, session) -> None:
    change = {
        "event_id": "cs-1",
        "ticket_number": "CAS-00000-00001",
        "status": "resolved",
        "resolution": "Replaced the pressure sensor.",
        "changed_at": datetime.now(UTC).isoformat(),
    }
    response = post_signed(receiver, "/webhooks/cases/status", change, secret=CASES_SECRET)
    assert response.status_code == 202
    [row] = inbox(session)
    assert (row.source, row.kind, row.payload["status"]) == ("cases", "status", "resolved")
    bad = post_signed(receiver, "/webhooks/cases/status", change | {"status": "closed"}, secret=CASES_SECRET)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "status"


def twilio_post(
    client, path: str, form: dict[str, str], *, headers: dict | None = None, url: str | None = None
):
    body = urlencode(form)
    signed = twilio_headers(url or f"{BASE}{path}", form)
    return client.post(path, content=body, headers={**signed, **(headers or {})})


def test_twilio_status_callback_is_verified_and_stored(receiver, session) -> None:
    form = {
        "MessageSid": "SM123",
        "MessageStatus": "delivered",
        "AccountSid": "ACtest",
        "To": "+306912345678",
    }
    response = twilio_post(receiver, "/webhooks/twilio/status", form)
    assert response.status_code == 202
    [row] = inbox(session)
    assert (row.source, row.kind, row.event_id) == ("twilio", "status", "SM123:delivered:")
    assert row.payload == form


def test_twilio_signature_over_another_url_is_refused(receiver, session) -> None:
    form = {"MessageSid": "SM123", "MessageStatus": "delivered"}
    response = twilio_post(
        receiver, "/webhooks/twilio/status", form, url="https://elsewhere.test/webhooks/twilio/status"
    )
    assert response.status_code == 401 and inbox(session) == []


def test_twilio_signature_with_wrong_token_or_missing_is_refused(receiver, session) -> None:
    form = {"MessageSid": "SM1", "MessageStatus": "sent"}
    body = urlencode(form)
    wrong = twilio_headers(f"{BASE}/webhooks/twilio/status", form, token="other-token")
    assert receiver.post("/webhooks/twilio/status", content=body, headers=wrong).status_code == 401
    missing = {"Content-Type": "application/x-www-form-urlencoded"}
    assert receiver.post("/webhooks/twilio/status", content=body, headers=missing).status_code == 401


def test_twilio_inbound_answers_twiml_with_the_inbox_id(receiver, session) -> None:
    form = {"MessageSid": "SMin1", "From": "+306912345678", "To": "+15005550006", "Body": "STOP"}
    response = twilio_post(receiver, "/webhooks/twilio/inbound", form)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
    [row] = inbox(session)
    assert response.headers["x-carepath-inbox-id"] == str(row.id)
    assert (row.kind, row.payload["Body"]) == ("inbound", "STOP")


def test_sendgrid_events_are_verified_with_ecdsa(receiver, session, sendgrid_keys) -> None:
    events = [
        {
            "sg_event_id": "e1",
            "event": "delivered",
            "email": "a@b.gr",
            "timestamp": 1764000000,
            "sg_message_id": "abc.filter1",
            "carepath_message_id": "7",
        },
        {
            "sg_event_id": "e2",
            "event": "bounce",
            "email": "a@b.gr",
            "timestamp": 1764000001,
            "type": "bounce",
            "reason": "550 5.1.1 unknown user",
        },
    ]
    body = json.dumps(events).encode()
    response = receiver.post("/webhooks/sendgrid/events", content=body, headers=sendgrid_keys.headers(body))
    assert response.status_code == 202 and response.json()["accepted"] == 2
    assert [(r.source, r.event_id) for r in inbox(session)] == [("sendgrid", "e1"), ("sendgrid", "e2")]

    tampered = body.replace(b"bounce", b"delivered")
    assert (
        receiver.post(
            "/webhooks/sendgrid/events", content=tampered, headers=sendgrid_keys.headers(body)
        ).status_code
        == 401
    )
    stale = sendgrid_keys.headers(body, timestamp=int(time.time()) - 3600)
    assert receiver.post("/webhooks/sendgrid/events", content=body, headers=stale).status_code == 401
    assert len(inbox(session)) == 2
    assert len(rejections(session)) == 2


def test_behind_a_trusted_proxy_the_forwarded_url_is_what_twilio_signed(
    receiver, session, monkeypatch
) -> None:
    from fastapi.testclient import TestClient

    from carepath.settings import get_settings, reset_settings
    from receiver.app import create_app

    form = {"MessageSid": "SMp", "MessageStatus": "sent"}
    proxied = "https://hooks.carepath.example/webhooks/twilio/status"
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.carepath.example"}
    # Not trusted (default): the configured public base URL is used, so this signature fails.
    assert (
        twilio_post(receiver, "/webhooks/twilio/status", form, url=proxied, headers=headers).status_code
        == 401
    )
    monkeypatch.setenv("CAREPATH_TRUST_FORWARDED_HEADERS", "true")
    reset_settings()
    with TestClient(create_app(get_settings()), base_url="http://10.0.0.5:8000") as behind_proxy:
        response = twilio_post(behind_proxy, "/webhooks/twilio/status", form, url=proxied, headers=headers)
    assert response.status_code == 202
