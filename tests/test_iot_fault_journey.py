"""The IoT fault → case → SMS journey, end to end: real database, real Prefect API, real SDKs at a stub."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from flows.iot_fault_journey import iot_fault_journey
from models import (
    Case,
    CaseStatus,
    CaseStatusChange,
    Channel,
    Consent,
    ConsentStatus,
    Contact,
    DeliveryEvent,
    DeviceFault,
    InboxEvent,
    InboxState,
    Message,
    MessageChannel,
    MessageStatus,
    Priority,
)
from tasks.ingest import store_fault_events
from tests.utils.factories import (
    fault_event,
    make_account,
    make_contact,
    make_device,
    make_entitlement,
    make_product,
)
from tests.utils.flows import completed

pytestmark = pytest.mark.usefixtures("prefect_server")


def ingest(session, *events):
    stored = store_fault_events(session=session, events=list(events))
    session.commit()
    return stored


def run_journey(**params):
    return completed(iot_fault_journey, **params)


def test_threshold_boundary_10_is_not_critical_11_is(session, providers) -> None:
    d10, d11 = make_device(session), make_device(session)
    ingest(session, fault_event(d10.device_id, 10), fault_event(d11.device_id, 11))

    figures = run_journey()

    cases = session.scalars(select(Case)).all()
    assert [c.device_id for c in cases] == [d11.device_id]
    faults = {f.device_id: f for f in session.scalars(select(DeviceFault))}
    assert faults[d10.device_id].critical is False and faults[d10.device_id].case_id is None
    assert faults[d11.device_id].critical is True and faults[d11.device_id].case_id == cases[0].id
    assert len(providers.twilio_messages()) == 1
    assert figures["cases_opened"] == 1 and figures["sms_sent"] == 1
    states = session.scalars(select(InboxEvent.state)).all()
    assert states == [InboxState.PROCESSED, InboxState.PROCESSED]


def test_case_is_mapped_from_the_fault_and_sms_carries_ticket_and_tracking_link(
    session, providers, settings
) -> None:
    product = make_product(session, sku="BOILER-7", name="Boiler controller")
    account = make_account(session)
    owner = make_contact(session, account=account, phone="+306912345678", language="el", first_name="Ελένη")
    device = make_device(session, owner=owner, product=product)
    entitlement = make_entitlement(session, account=account, channels=["iot", "email"])
    occurred = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    ingest(session, fault_event(device.device_id, 14, occurred_at=occurred, message="Boiler pressure low"))

    run_journey()

    case = session.scalars(select(Case)).one()
    assert re.fullmatch(r"CAS-[0-9A-Z]{5}-[0-9A-Z]{5}", case.ticket_number)
    assert case.title == f"Boiler controller {device.device_id}: critical fault 14 (Boiler pressure low)"
    assert (case.device_id, case.error_code, case.priority, case.origin, case.status) == (
        device.device_id,
        14,
        Priority.CRITICAL,
        Channel.IOT,
        CaseStatus.ACTIVE,
    )
    assert (case.contact_id, case.account_id, case.product_id) == (owner.id, account.id, product.id)
    assert case.entitlement_id == entitlement.id
    assert case.fault_occurrences == 1 and case.fault_frequency == 1
    assert case.first_fault_at == occurred
    assert len(case.tracking_token) >= 32
    history = session.scalars(select(CaseStatusChange).where(CaseStatusChange.case_id == case.id)).all()
    assert [(h.from_status, h.to_status, h.source) for h in history] == [
        (None, CaseStatus.ACTIVE, "iot_fault_journey")
    ]

    [sms] = providers.twilio_messages()
    assert sms.path == "/2010-04-01/Accounts/ACtest/Messages.json"
    assert sms.form["To"] == "+306912345678"
    assert sms.form["From"] == "+15005550006"
    link = f"https://care.example.test/track/{case.ticket_number}?t={case.tracking_token}"
    assert case.ticket_number in sms.form["Body"] and link in sms.form["Body"]
    assert sms.form["Body"].startswith("Γεια σας Ελένη")  # the contact's language
    assert sms.form["StatusCallback"] == "https://care.example.test/webhooks/twilio/status"
    assert sms.headers["authorization"] == "Basic " + base64.b64encode(b"ACtest:test-token").decode()

    message = session.scalars(select(Message)).one()
    assert message.status is MessageStatus.SENT and message.provider == "twilio"
    assert message.provider_message_id == sms.response["sid"]
    assert message.idempotency_key == f"case:{case.id}:iot_fault_sms"


def test_repeat_faults_attach_to_the_open_case_and_send_one_sms(session, providers) -> None:
    device = make_device(session)
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    ingest(
        session,
        *[fault_event(device.device_id, 14, occurred_at=t0 + timedelta(minutes=m)) for m in (0, 10, 20)],
    )
    run_journey()
    ingest(session, fault_event(device.device_id, 15, occurred_at=t0 + timedelta(minutes=25)))
    run_journey()

    case = session.scalars(select(Case)).one()
    session.refresh(case)
    assert case.fault_occurrences == 4
    assert case.fault_frequency == 4
    assert case.last_fault_at == (t0 + timedelta(minutes=25)).replace(microsecond=(t0.microsecond))
    assert (
        session.scalar(select(func.count()).select_from(DeviceFault).where(DeviceFault.case_id == case.id))
        == 4
    )
    assert len(providers.twilio_messages()) == 1
    assert session.scalar(select(func.count()).select_from(Message)) == 1


def test_minimum_frequency_holds_the_case_back(session, providers, monkeypatch) -> None:
    device = make_device(session)
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    ingest(session, fault_event(device.device_id, 20, occurred_at=t0))
    run_journey(min_count=2)
    assert session.scalar(select(func.count()).select_from(Case)) == 0
    ingest(session, fault_event(device.device_id, 20, occurred_at=t0 + timedelta(minutes=5)))
    run_journey(min_count=2)
    case = session.scalars(select(Case)).one()
    assert case.fault_frequency == 2 and case.fault_occurrences == 1
    assert len(providers.twilio_messages()) == 1


def test_no_consent_blocks_the_sms_with_a_reason(session, providers) -> None:
    no_consent = make_device(session, owner=make_contact(session, sms_consent=None))
    opted_out = make_device(session, owner=make_contact(session, sms_consent=ConsentStatus.OPTED_OUT))
    ingest(session, fault_event(no_consent.device_id, 17), fault_event(opted_out.device_id, 17))

    run_journey()

    messages = session.scalars(select(Message)).all()
    reasons = sorted(m.status_reason for m in messages)
    assert all(m.status is MessageStatus.BLOCKED for m in messages)
    assert reasons == ["consent: contact opted out of SMS", "consent: no SMS opt-in on record"]
    assert session.scalar(select(func.count()).select_from(Case)) == 2  # the cases still open
    assert providers.twilio_messages() == []


def test_phone_that_is_not_e164_is_blocked_before_any_request(session, providers) -> None:
    device = make_device(session, owner=make_contact(session, phone="+3912"))
    ingest(session, fault_event(device.device_id, 11))
    run_journey()
    message = session.scalars(select(Message)).one()
    assert message.status is MessageStatus.BLOCKED
    assert "not a valid E.164" in message.status_reason
    assert providers.requests == []


def test_phone_is_checked_when_the_contact_is_written_and_rechecked_when_changed_behind_the_orm(
    session, providers
) -> None:
    good = make_contact(session, phone="+306912345678")
    bad = make_contact(session, phone="+3912")
    session.commit()
    assert (good.phone_checked, good.phone_valid) == ("+306912345678", True)
    assert (bad.phone_checked, bad.phone_valid) == ("+3912", False)
    bad.phone = "+306912345679"  # through the ORM: checked again
    session.commit()
    assert (bad.phone_checked, bad.phone_valid) == ("+306912345679", True)
    # A writer that bypasses the ORM leaves the check stale: the drain must not trust it.
    session.execute(update(Contact).where(Contact.id == good.id).values(phone="+3913"))
    session.commit()
    ingest(
        session,
        fault_event(make_device(session, owner=good).device_id, 11),
        fault_event(make_device(session, owner=bad).device_id, 11),
    )

    run_journey()

    by_contact = {m.contact_id: m for m in session.scalars(select(Message))}
    assert by_contact[good.id].status is MessageStatus.BLOCKED
    assert "'+3913' is not a valid E.164" in by_contact[good.id].status_reason
    assert by_contact[bad.id].status is MessageStatus.SENT
    assert [m.form["To"] for m in providers.twilio_messages()] == ["+306912345679"]


def test_number_the_provider_rejects_fails_with_code_and_reason(session, providers) -> None:
    device = make_device(session, owner=make_contact(session, phone="+48512345678"))
    ingest(session, fault_event(device.device_id, 11))
    providers.fail_next("twilio", status=400, code=21211)

    run_journey()

    message = session.scalars(select(Message)).one()
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "21211")
    assert message.status_reason == "invalid 'To' phone number"
    assert message.attempts == 1  # permanent: not retried
    assert len(providers.requests) == 1
    event = session.scalars(select(DeliveryEvent)).one()
    assert (event.status, event.error_code) == ("failed", "21211")


def test_opted_out_at_the_provider_records_an_sms_opt_out(session, providers) -> None:
    owner = make_contact(session)
    device = make_device(session, owner=owner)
    ingest(session, fault_event(device.device_id, 11))
    providers.fail_next("twilio", status=400, code=21610)

    run_journey()

    message = session.scalars(select(Message)).one()
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "21610")
    consent = session.scalars(select(Consent).where(Consent.contact_id == owner.id)).one()
    assert (consent.channel, consent.status, consent.source) == (
        MessageChannel.SMS,
        ConsentStatus.OPTED_OUT,
        "twilio:21610",
    )


@pytest.mark.parametrize("failure", [{"status": 500}, {"status": 429, "code": 20429}])
def test_transient_error_then_success_sends_exactly_one_sms(session, providers, failure) -> None:
    device = make_device(session)
    ingest(session, fault_event(device.device_id, 11))
    providers.fail_next("twilio", **failure)

    run_journey()

    assert [r.status for r in providers.requests] == [failure["status"], 201]
    assert len(providers.twilio_messages()) == 1
    message = session.scalars(select(Message)).one()
    assert (message.status, message.attempts) == (MessageStatus.SENT, 2)


def test_rerunning_the_flow_or_the_send_task_never_sends_twice(session, providers) -> None:
    from prefect import flow

    from tasks.messaging import send_queued_messages

    device = make_device(session)
    ingest(session, fault_event(device.device_id, 11))
    run_journey()
    run_journey()

    @flow
    def resend() -> int:
        return send_queued_messages().sent + send_queued_messages().sent

    assert resend() == 0
    assert len(providers.twilio_messages()) == 1


def test_same_event_id_twice_is_processed_once(session, providers) -> None:
    device = make_device(session)
    event = fault_event(device.device_id, 12, event_id="dup-1")
    first = ingest(session, event)
    second = ingest(session, dict(event))
    assert first[0].created and not second[0].created
    assert first[0].inbox_id == second[0].inbox_id

    run_journey()
    ingest(session, dict(event))  # a resend after processing is still a no-op
    run_journey()

    assert session.scalar(select(func.count()).select_from(InboxEvent)) == 1
    assert session.scalar(select(func.count()).select_from(DeviceFault)) == 1
    assert len(providers.twilio_messages()) == 1


def test_unknown_device_fails_with_a_reason_and_can_be_replayed(session, providers) -> None:
    from tasks.inbox import replay_failed

    ingest(session, fault_event("DEV-NOPE", 30, event_id="unknown-1"))
    figures = run_journey()
    event = session.scalars(select(InboxEvent)).one()
    assert event.state is InboxState.FAILED
    assert event.error == "unknown device 'DEV-NOPE': no such device is registered (replay once it is)"
    assert figures["faults_failed"] == 1 and providers.requests == []

    make_device(session, device_id="DEV-NOPE")
    replay_failed(session=session, source="iot", kind="fault")
    session.commit()
    run_journey()
    session.refresh(event)
    assert event.state is InboxState.PROCESSED and event.error is None
    assert session.scalars(select(Case.device_id)).all() == ["DEV-NOPE"]
    assert len(providers.twilio_messages()) == 1


def test_a_bad_event_does_not_stop_the_rest_of_the_batch(session, providers) -> None:
    good_a, good_b = make_device(session), make_device(session)
    ingest(
        session,
        fault_event(good_a.device_id, 13),
        fault_event(good_b.device_id, 13),
        {
            "event_id": "bad-code",
            "device_id": good_a.device_id,
            "error_code": "E-OVERHEAT",
            "occurred_at": datetime.now(UTC).isoformat(),
        },
        {
            "event_id": "no-zone",
            "device_id": good_a.device_id,
            "error_code": 12,
            "occurred_at": "2026-11-25T10:00:00",
        },
    )

    figures = run_journey()

    states = {k: v for k, v in session.execute(select(InboxEvent.event_id, InboxEvent.state))}
    errors = {k: v for k, v in session.execute(select(InboxEvent.event_id, InboxEvent.error))}
    assert states["bad-code"] is InboxState.FAILED and "error_code" in errors["bad-code"]
    assert states["no-zone"] is InboxState.FAILED and "occurred_at" in errors["no-zone"]
    assert sum(s is InboxState.PROCESSED for s in states.values()) == 2
    assert figures["cases_opened"] == 2
    assert len(providers.twilio_messages()) == 2


def test_without_credentials_the_local_channel_sends_and_stores(session, caplog) -> None:
    device = make_device(session)
    ingest(session, fault_event(device.device_id, 11))
    with caplog.at_level("INFO", logger="carepath.outbox"):
        run_journey()
    message = session.scalars(select(Message)).one()
    assert message.status is MessageStatus.SENT and message.provider == "local"
    assert message.provider_message_id.startswith("local-")
    assert any(message.body in r.getMessage() for r in caplog.records)


def test_far_time_zones_pydantic_accepts_are_stored_as_the_same_instant(session, providers) -> None:
    # +16:00 is valid ISO 8601 and valid to pydantic, but beyond what PostgreSQL stores as an offset.
    device = make_device(session)
    first = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    ingest(session, fault_event(device.device_id, 20, occurred_at=first))
    run_journey()
    ingest(
        session,
        {
            "event_id": "far-east",
            "device_id": device.device_id,
            "error_code": 21,
            "occurred_at": "2026-11-26T01:30:00+16:00",  # 09:30 UTC: attaches to the open case
        },
    )

    figures = run_journey()

    assert figures["faults_failed"] == 0 and figures["faults_attached"] == 1
    case = session.scalars(select(Case)).one()
    assert case.fault_occurrences == 2
    assert case.last_fault_at == datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    times = sorted(session.scalars(select(DeviceFault.occurred_at)))
    assert times == [first, datetime(2026, 11, 25, 9, 30, tzinfo=UTC)]


def test_batches_drain_everything_pending(session, providers) -> None:
    devices = [make_device(session) for _ in range(7)]
    ingest(session, *[fault_event(d.device_id, 11) for d in devices])
    figures = run_journey(batch_size=3)
    assert figures["faults_claimed"] == 7 and figures["cases_opened"] == 7
    assert len(providers.twilio_messages()) == 7
