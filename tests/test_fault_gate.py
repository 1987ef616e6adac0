"""The IoT drain's data-quality gate (suite inbox_faults): a failing event is marked failed with the expectations
it failed and quarantined, while the good ones of the same batch still open their cases and text their owners."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from flows.iot_fault_journey import iot_fault_journey
from models import Case, DeviceFault, InboxEvent, InboxState, Message, MessageStatus, QuarantinedRow
from tasks.inbox import replay_failed
from tasks.ingest import store_fault_events
from tests.utils.factories import fault_event, make_contact, make_device
from tests.utils.flows import completed

pytestmark = pytest.mark.usefixtures("prefect_server")


def ingest(session, *events) -> None:
    store_fault_events(session=session, events=list(events))
    session.commit()


def inbox(session) -> dict[str, tuple[InboxState, str | None]]:
    rows = session.execute(select(InboxEvent.event_id, InboxEvent.state, InboxEvent.error)).all()
    session.rollback()
    return {e: (s, err) for e, s, err in rows}


def quarantine(session) -> dict[str, list[str]]:
    rows = session.execute(
        select(InboxEvent.event_id, QuarantinedRow.failed_expectations)
        .join(InboxEvent, InboxEvent.id == QuarantinedRow.inbox_event_id)
        .where(QuarantinedRow.kind == "inbox_faults")
    ).all()
    session.rollback()
    return dict(rows)


def test_bad_events_are_quarantined_and_the_good_ones_still_open_cases_and_text(session, providers) -> None:
    a, b, c = make_device(session), make_device(session), make_device(session)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    ingest(
        session,
        fault_event(a.device_id, 13, event_id="good-a"),
        fault_event(b.device_id, 14, event_id="good-b"),
        fault_event(c.device_id, 15, event_id="future", occurred_at=tomorrow),
        {**fault_event(a.device_id, 0, event_id="bad-code"), "error_code": "E-OVERHEAT"},
        {**fault_event(b.device_id, 12, event_id="fraction"), "error_code": 12.5},
        {**fault_event("", 12, event_id="no-device")},
    )

    figures = completed(iot_fault_journey)

    assert (figures["faults_claimed"], figures["faults_failed"], figures["faults_quarantined"]) == (6, 4, 4)
    assert figures["cases_opened"] == 2 and figures["sms_sent"] == 2
    assert len(providers.twilio_messages()) == 2  # at the provider: the good ones' owners, once each
    assert quarantine(session) == {
        "future": ["occurred_at_not_in_future"],
        "bad-code": ["error_code_is_integer"],
        "fraction": ["error_code_is_integer"],
        "no-device": ["device_id_is_present"],
    }
    events = inbox(session)
    assert events["good-a"] == (InboxState.PROCESSED, None)
    assert events["future"] == (
        InboxState.FAILED,
        "failed expectations: occurred_at_not_in_future (inbox_faults suite)",
    )
    state, error = events["bad-code"]
    assert state is InboxState.FAILED
    assert error.startswith("failed expectations: error_code_is_integer (inbox_faults suite); invalid fault:")
    assert "error_code" in error  # pydantic's own reason is kept after the names
    assert (
        session.scalar(select(func.count()).select_from(DeviceFault)) == 2
    )  # refused faults are not recorded
    raw = session.scalars(
        select(QuarantinedRow.raw)
        .join(InboxEvent, InboxEvent.id == QuarantinedRow.inbox_event_id)
        .where(InboxEvent.event_id == "bad-code")
    ).one()
    assert raw["error_code"] == "E-OVERHEAT"


def test_a_replayed_event_that_fails_again_keeps_one_quarantine_row(session, providers) -> None:
    device = make_device(session)
    ingest(
        session,
        fault_event(device.device_id, 3, event_id="late", occurred_at=datetime(2999, 1, 1, tzinfo=UTC)),
    )
    completed(iot_fault_journey)
    replay_failed(session=session, source="iot", kind="fault")
    session.commit()

    figures = completed(iot_fault_journey)

    assert figures["faults_quarantined"] == 1
    assert session.scalar(select(func.count()).select_from(QuarantinedRow)) == 1
    assert inbox(session)["late"][0] is InboxState.FAILED


def test_a_future_routine_fault_does_not_slip_past_the_gate(session, providers) -> None:
    """Non-critical faults of a quiet device are 'routine' on PostgreSQL (never materialised): the claim keeps
    a future-dated one out of that set, so the gate sees it."""
    device = make_device(session)
    soon = datetime.now(UTC) + timedelta(minutes=2)  # within the allowed clock skew (5 minutes)
    ingest(
        session,
        fault_event(device.device_id, 2, event_id="routine-now"),
        fault_event(device.device_id, 3, event_id="routine-soon", occurred_at=soon),
        fault_event(device.device_id, 4, event_id="routine-future", occurred_at=soon + timedelta(hours=1)),
    )

    figures = completed(iot_fault_journey)

    assert (figures["faults_failed"], figures["faults_quarantined"], figures["cases_opened"]) == (1, 1, 0)
    assert quarantine(session) == {"routine-future": ["occurred_at_not_in_future"]}
    assert sorted(session.scalars(select(DeviceFault.error_code))) == [2, 3]


def test_an_owner_phone_that_is_not_e164_is_a_warning_not_a_refusal(session, providers) -> None:
    from prefect.artifacts import Artifact

    owner = make_contact(session, phone="0030 210 1234567")
    device = make_device(session, owner=owner)
    ingest(session, fault_event(device.device_id, 20, event_id="warned"))

    figures = completed(iot_fault_journey)

    assert (figures["cases_opened"], figures["faults_quarantined"]) == (1, 0)
    message = session.scalars(select(Message)).one()
    assert message.status is MessageStatus.BLOCKED and "E.164" in message.status_reason
    assert providers.twilio_messages() == []
    assert session.scalar(select(func.count()).select_from(Case)) == 1
    artifact = Artifact.get("iot-fault-journey")
    assert "1 faults validated, 0 quarantined" in artifact.data
    assert "| `owner_phone_is_e164` |" in artifact.data and "| warning | 1 |" in artifact.data
