"""Announcing accepted events to Prefect, and what happens when Prefect cannot be reached."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import httpx
import pytest
from prefect.settings import PREFECT_API_URL
from sqlalchemy import select

from carepath.settings import get_settings, reset_settings
from flows.inbox_sweep import inbox_sweep
from models import InboxEvent, InboxState
from tests.utils.factories import make_device
from tests.utils.flows import completed
from tests.utils.signing import IOT_SECRET, carepath_headers

pytestmark = pytest.mark.usefixtures("prefect_server")


def post_fault(client, device_id: str, event_id: str):
    body = json.dumps(
        {
            "event_id": event_id,
            "device_id": device_id,
            "error_code": 14,
            "occurred_at": datetime.now(UTC).isoformat(),
        }
    ).encode()
    return client.post("/webhooks/iot/faults", content=body, headers=carepath_headers(IOT_SECRET, body))


def receiver_with(monkeypatch, api_url: str):
    from fastapi.testclient import TestClient

    from receiver.app import create_app

    monkeypatch.setenv("CAREPATH_PREFECT_API_URL", api_url)
    monkeypatch.setenv("CAREPATH_ANNOUNCE_INTERVAL_MS", "10")
    reset_settings()
    return TestClient(create_app(get_settings()), base_url="https://care.example.test")


def test_accepted_events_are_announced_to_prefect(receiver, session, monkeypatch) -> None:
    api = PREFECT_API_URL.value()
    device = make_device(session)
    session.commit()
    with receiver_with(monkeypatch, api) as client:
        assert post_fault(client, device.device_id, "ann-1").status_code == 202
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            session.expire_all()
            row = session.scalars(select(InboxEvent)).one()
            session.commit()
            if row.announced_at:
                break
            time.sleep(0.1)
    assert row.announced_at is not None
    names: list = []
    deadline = time.monotonic() + 15
    while ("carepath.iot.fault", [row.id]) not in names and time.monotonic() < deadline:
        time.sleep(0.5)  # the server persists events asynchronously
        events = httpx.post(
            f"{api}/events/filter", json={"filter": {"event": {"prefix": ["carepath."]}}}
        ).json()
        names = [(e["event"], e["payload"].get("inbox_ids")) for e in events.get("events", [])]
    assert ("carepath.iot.fault", [row.id]) in names


def test_prefect_unreachable_loses_nothing_and_the_sweep_picks_it_up(
    receiver, session, monkeypatch, providers
) -> None:
    device = make_device(session)
    session.commit()
    with receiver_with(monkeypatch, "http://127.0.0.1:9/api") as client:  # nothing listens on port 9
        response = post_fault(client, device.device_id, "down-1")
        assert response.status_code == 202
        time.sleep(0.3)
    session.expire_all()
    row = session.scalars(select(InboxEvent)).one()
    session.commit()
    assert row.state is InboxState.PENDING and row.announced_at is None

    monkeypatch.delenv("CAREPATH_PREFECT_API_URL")
    reset_settings()
    assert completed(inbox_sweep, announce_after_seconds=0)["announced"] == 1
    session.expire_all()
    row = session.get(InboxEvent, row.id)
    assert row.state is InboxState.PROCESSED and row.announced_at is not None
    assert len(providers.twilio_messages()) == 1
