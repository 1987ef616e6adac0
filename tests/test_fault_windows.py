"""Faults over time, cheaply and on both databases: the stub's fault windows, a provider outage longer than
every attempt (deferred, then sent once), and a receiver whose database is away (503 with Retry-After)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import httpx
from sqlalchemy import select

from carepath.settings import get_settings, reset_settings
from deployments.serve import free_port
from models import InboxEvent, MessageStatus
from stubs.provider_stub import ProviderStub
from tasks.messaging import drain_outbox, release_leases
from tests.test_outbox import messages, queue_messages, set_env
from tests.utils.signing import IOT_SECRET, carepath_headers


def post_sms(stub: ProviderStub) -> int:
    """One Messages create, as the Twilio SDK sends it; the status answered."""
    response = httpx.post(
        f"{stub.base_url}/2010-04-01/Accounts/ACtest/Messages.json",
        data={"To": "+306912345678", "From": "+15005550006", "Body": "Hi"},
        auth=("ACtest", "test-token"),
    )
    return response.status_code


def test_a_fault_window_answers_every_send_while_open_then_the_next_window_then_health() -> None:
    with ProviderStub() as stub:
        stub.fault_window("twilio", 2.5, status=500)
        stub.fault_window("twilio", 2.5, status=429, headers={"Retry-After": "1"})
        assert [post_sms(stub), post_sms(stub)] == [500, 500]
        time.sleep(stub.faults_over() - 1.25)  # into the middle of the second window
        assert post_sms(stub) == 429
        time.sleep(stub.faults_over())
        assert post_sms(stub) == 201
        assert [r.status for r in stub.twilio_creates()] == [500, 500, 429, 201]
        assert len(stub.twilio_created()) == 1


def test_every_nth_send_and_a_dropped_answer_after_creating() -> None:
    with ProviderStub() as stub:
        stub.fault_window("twilio", 30, status=201, drop=True, create=True, every=2)
        statuses = []
        for _ in range(4):
            try:
                statuses.append(post_sms(stub))
            except httpx.HTTPError:
                statuses.append(0)
        assert statuses == [201, 0, 201, 0]
        assert len(stub.twilio_created()) == 4  # the dropped ones were created all the same
        assert all(r.accepted for r in stub.twilio_creates())
        stub.reset()
        assert stub.faults_over() == 0 and post_sms(stub) == 201


def test_the_control_endpoint_opens_windows_and_reports_counts_for_a_stub_in_another_process() -> None:
    with ProviderStub() as stub:
        opened = httpx.post(
            f"{stub.base_url}/_stub/faults", json={"provider": "twilio", "seconds": 30, "status": 503}
        )
        assert opened.status_code == 201 and 29 < opened.json()["ends_in"] <= 30
        assert post_sms(stub) == 503
        counts = httpx.get(f"{stub.base_url}/_stub/requests").json()
        assert (
            counts["twilio_creates"] == 1 and counts["twilio_created"] == 0 and counts["faults_over_in"] > 29
        )
        bad = httpx.post(f"{stub.base_url}/_stub/faults", json={"provider": "mailgun", "seconds": 1})
        assert bad.status_code == 400 and "mailgun" in bad.json()["error"]


def test_a_provider_down_longer_than_every_attempt_defers_then_sends_once(
    session, providers, monkeypatch
) -> None:
    """500s outlast the attempts: the message is not failed but held, claimable by nobody, then queued again
    when its wait is over; sent once when the provider is back."""
    set_env(monkeypatch, send_max_attempts=2, send_defer_seconds=0.3)
    drain_outbox(settings=get_settings())  # nothing queued yet: the SDKs are imported before the window opens
    queue_messages(session, 1)
    providers.fault_window("twilio", 1.0, status=500)

    first = drain_outbox(settings=get_settings())
    [held] = messages(session)
    assert (first.deferred, first.failed) == (1, 0), (first, providers.requests)
    assert (
        held.status is MessageStatus.SENDING
        and held.attempted_at is None
        and "deferred" in held.status_reason
    )
    assert drain_outbox(settings=get_settings()).claimed == 0  # held: nobody spins on it

    time.sleep(providers.faults_over() + 0.1)  # the provider recovers; the wait is long over
    assert release_leases().requeued == 1
    assert drain_outbox(settings=get_settings()).sent == 1
    [sent] = messages(session)
    assert sent.status is MessageStatus.SENT
    assert [r.status for r in providers.twilio_creates()] == [500, 500, 201]
    assert len(providers.twilio_created()) == 1


def test_a_receiver_whose_database_is_away_answers_503_with_retry_after(engine, monkeypatch) -> None:
    """Nothing listens where the database should be: the fault is not stored, and the answer says so."""
    from fastapi.testclient import TestClient

    from receiver.app import create_app

    monkeypatch.setenv(
        "CAREPATH_DATABASE_URL", f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/none"
    )
    monkeypatch.setenv("CAREPATH_IOT_WEBHOOK_SECRET", IOT_SECRET)
    reset_settings()
    body = json.dumps(
        {
            "event_id": "away-1",
            "device_id": "DEV-1",
            "error_code": 14,
            "occurred_at": datetime.now(UTC).isoformat(),
        }
    ).encode()
    try:
        with TestClient(create_app(get_settings()), base_url="https://care.example.test") as client:
            response = client.post(
                "/webhooks/iot/faults", content=body, headers=carepath_headers(IOT_SECRET, body)
            )
    finally:
        monkeypatch.undo()
        reset_settings()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "send it again" in response.json()["error"]
    with engine.connect() as conn:
        assert conn.execute(select(InboxEvent.id)).first() is None
