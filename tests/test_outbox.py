"""The outbox sends each message at most once, counted at the provider stub: lost answers, crashes, bad sends.

Every test counts the requests the stub received, not only the database rows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from carepath.settings import PROJECT_ROOT, get_settings, reset_settings
from models import DeliveryEvent, Message, MessageChannel, MessageStatus
from models.base import utcnow
from tasks.messaging import (
    claim_queued_messages,
    drain_outbox,
    mark_attempted,
    outbox_row,
    outbox_waiting,
    reconcile_outbox,
    release_expired_leases,
)
from tests.utils.databases import BACKEND
from tests.utils.factories import make_contact

LEASE = timedelta(seconds=120)


def queue_messages(session, n: int, channel: MessageChannel = MessageChannel.SMS) -> list[int]:
    """`n` queued messages, each with a body of its own (as the tracking link makes ours)."""
    contact = make_contact(session)
    now = utcnow()
    rows = [
        outbox_row(
            key=f"test:{contact.id}:{i}",
            channel=channel,
            case_id=None,
            contact_id=contact.id,
            journey_step="test",
            to_address=contact.phone if channel is MessageChannel.SMS else contact.email,
            subject="Your case" if channel is MessageChannel.EMAIL else None,
            body=f"Message {i} for contact {contact.id}: https://care.example.test/track/T-{i}",
            template="test",
            blocked=None,
            now=now,
        )
        for i in range(n)
    ]
    session.execute(Message.__table__.insert(), rows)
    ids = list(session.scalars(select(Message.id).order_by(Message.id)))
    session.commit()
    return ids


def send(**kwargs):
    return drain_outbox(settings=get_settings(), **kwargs)


def reconcile():
    return reconcile_outbox(settings=get_settings())


def set_env(monkeypatch, **values) -> None:
    for key, value in values.items():
        monkeypatch.setenv(f"CAREPATH_{key.upper()}", str(value))
    reset_settings()


def wait_for(condition, timeout: float = 10.0) -> bool:
    """Poll `condition` until it holds or `timeout` passes; its last value."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def messages(session) -> list[Message]:
    """The messages as stored now (the read's transaction ends: SQLite's BEGIN IMMEDIATE would block)."""
    session.expire_all()
    rows = list(session.scalars(select(Message).order_by(Message.id)))
    session.commit()
    return rows


# §1: an answer that never came is an unknown outcome, looked up before anything is sent again.


def test_answer_after_the_time_out_is_unknown_then_settled_with_one_request(
    session, providers, monkeypatch
) -> None:
    set_env(monkeypatch, send_timeout_seconds=0.3)
    queue_messages(session, 1)
    providers.fail_next("twilio", status=201, delay=1.0)  # created, but answered after the client gave up

    summary = send()

    assert (summary.sent, summary.unknown) == (0, 1)
    [message] = messages(session)
    assert message.status is MessageStatus.UNKNOWN and "no answer" in message.status_reason
    assert wait_for(
        lambda: len(providers.twilio_creates()) == 1
    )  # the stub records once its slow answer is out

    assert reconcile().settled == 1

    [created] = providers.twilio_created()
    [message] = messages(session)
    assert (message.status, message.provider_message_id) == (MessageStatus.SENT, created["sid"])
    assert len(providers.twilio_creates()) == 1  # the look-up is a GET, never a second create
    lookups = [r for r in providers.requests if r.method == "GET"]
    assert len(lookups) == 1 and lookups[0].path.endswith("/Messages.json")


def test_connection_closed_after_the_request_was_read_sends_once(session, providers) -> None:
    queue_messages(session, 1)
    providers.fail_next("twilio", status=201, drop=True)  # created, then the connection closed unanswered

    assert send().unknown == 1
    assert reconcile().settled == 1

    assert len(providers.twilio_creates()) == 1
    [message] = messages(session)
    assert message.status is MessageStatus.SENT
    assert message.provider_message_id == providers.twilio_created()[0]["sid"]


def test_unknown_and_not_at_the_provider_waits_out_the_grace_period_then_is_sent_again_once(
    session, providers, monkeypatch
) -> None:
    queue_messages(session, 1)
    providers.fail_next("twilio", status=201, drop=True, create=False)  # lost before Twilio kept it

    assert send().unknown == 1
    first = reconcile()
    assert (first.settled, first.resent, first.still_unknown) == (0, 0, 1)  # within the grace period
    assert len(providers.twilio_creates()) == 1

    set_env(monkeypatch, reconcile_grace_seconds=0)
    again = reconcile()

    assert (again.settled, again.resent, again.still_unknown) == (0, 1, 0)
    assert len(providers.twilio_creates()) == 2 and len(providers.twilio_created()) == 1
    [message] = messages(session)
    assert (message.status, message.resends) == (MessageStatus.SENT, 1)
    assert message.provider_message_id == providers.twilio_created()[0]["sid"]
    assert reconcile().resent == 0  # nothing left to settle; never a third request
    assert len(providers.twilio_creates()) == 2


def test_a_resend_that_is_lost_too_is_never_sent_a_third_time(session, providers, monkeypatch) -> None:
    set_env(monkeypatch, reconcile_grace_seconds=0)
    queue_messages(session, 1)
    providers.fail_next("twilio", 2, status=201, drop=True, create=False)

    send()
    reconcile()  # resent once, lost again
    summary = reconcile()

    assert len(providers.twilio_creates()) == 2
    [message] = messages(session)
    assert message.status is MessageStatus.FAILED and "after one resend" in message.status_reason
    assert summary.resent == 0


def test_500_then_201_is_two_requests_and_one_message(session, providers) -> None:
    queue_messages(session, 1)
    providers.fail_next("twilio", status=500)

    assert send().sent == 1

    assert [r.status for r in providers.twilio_creates()] == [500, 201]
    [message] = messages(session)
    assert (message.status, message.attempts) == (MessageStatus.SENT, 2)


@pytest.mark.parametrize("provider", ["twilio", "sendgrid"])
def test_429_waits_as_long_as_retry_after_says(session, providers, provider) -> None:
    channel = MessageChannel.SMS if provider == "twilio" else MessageChannel.EMAIL
    queue_messages(session, 1, channel)
    providers.fail_next(provider, status=429, headers={"Retry-After": "1"})

    assert send().sent == 1

    first, second = [r for r in providers.requests if r.provider == provider and r.method == "POST"]
    assert (first.status, second.status) == (429, 201 if provider == "twilio" else 202)
    assert second.received_at - first.received_at >= 0.95  # the test backoff alone is 0.01 s


def test_refused_connection_is_retried_at_once(session, providers, monkeypatch) -> None:
    """Nothing listens on the first address: the request provably never left, so it is simply retried."""
    from carepath.channels.twilio_sms import TwilioSmsSender
    from tasks.messaging.claims import ClaimedMessage
    from tasks.messaging.sending import SendPolicy, deliver_one

    dead = TwilioSmsSender(
        account_sid="ACtest",
        auth_token="test-token",
        from_number="+15005550006",
        base_url="http://127.0.0.1:9",
    )
    m = ClaimedMessage(1, MessageChannel.SMS, "+306912345678", None, "hi", "k", None, None)
    outcome = deliver_one(m, sms_sender=dead, email_sender=None, policy=SendPolicy(None, 3, 0.01, 1))
    assert outcome.error is not None and outcome.error.transient and outcome.attempts == 3
    assert outcome.unknown is None


# §2: one bad send never loses the others' outcomes; a crash strands nothing.


def test_ten_sends_where_one_answer_cannot_be_read_keep_nine_sent_and_one_unknown(session, providers) -> None:
    queue_messages(session, 10)
    providers.fail_next("twilio", 3, status=201)
    providers.fail_next("twilio", status=201, body=b'{"sid": "SM-broken", ')  # malformed JSON: ValueError

    summary = send()

    assert (summary.sent, summary.unknown, summary.failed) == (9, 1, 0)
    assert len(providers.twilio_creates()) == 10
    rows = messages(session)
    sent = [m for m in rows if m.status is MessageStatus.SENT]
    [unknown] = [m for m in rows if m.status is MessageStatus.UNKNOWN]
    created = {m["body"]: m["sid"] for m in providers.twilio_created()}
    assert all(m.provider_message_id == created[m.body] for m in sent)
    assert "Error" in unknown.status_reason or "JSON" in unknown.status_reason
    events = session.scalars(select(DeliveryEvent.status).where(DeliveryEvent.message_id == unknown.id)).all()
    session.commit()
    assert events == ["unknown"]


# The plan under which `UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` claimed 2n here: a
# nested-loop semi join that rescans the locking subquery for every outer row, each rescan skipping the rows
# the last one locked. The planner picks it by cost; these settings pin it, so the test does not depend on luck.
_RESCAN_PLAN = ("enable_hashjoin", "enable_mergejoin", "enable_hashagg", "enable_material", "enable_sort")


def test_claim_takes_exactly_its_limit_whatever_plan_postgresql_picks(session, engine) -> None:
    queue_messages(session, 1000)
    if BACKEND == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE message"))  # fresh statistics, as measured

    with session.begin():
        if BACKEND == "postgresql":
            for setting in _RESCAN_PLAN:
                session.execute(text(f"SET LOCAL {setting} = off"))
        claim = claim_queued_messages(session=session, limit=500, lease=LEASE)

    assert len(claim.messages) == 500
    sending = session.scalar(select(func.count()).where(Message.status == MessageStatus.SENDING))
    session.commit()
    assert sending == 500


def test_an_expired_lease_gives_back_the_unattempted_and_marks_the_attempted_unknown(session) -> None:
    queue_messages(session, 5)
    with session.begin():
        claim = claim_queued_messages(session=session, limit=5, lease=LEASE)
    with session.begin():
        mark_attempted(session=session, claim=claim, messages=claim.messages[:2], lease=LEASE)

    with session.begin():
        early = release_expired_leases(session=session)
    with session.begin():
        later = release_expired_leases(session=session, now=utcnow() + LEASE + timedelta(seconds=1))

    assert (early.requeued, early.unknown) == (0, 0)
    assert (later.requeued, later.unknown) == (3, 2)
    statuses = [m.status for m in messages(session)]
    assert statuses == [MessageStatus.UNKNOWN] * 2 + [MessageStatus.QUEUED] * 3


def test_a_claim_taken_over_after_its_lease_sends_nothing(session, providers) -> None:
    queue_messages(session, 1)
    with session.begin():
        stale = claim_queued_messages(session=session, limit=1, lease=LEASE)
    with session.begin():
        release_expired_leases(session=session, now=utcnow() + LEASE + timedelta(seconds=1))
    assert send().sent == 1  # another worker takes the message back and sends it

    with session.begin():
        held, _ = mark_attempted(session=session, claim=stale, messages=stale.messages, lease=LEASE)
    assert held == []  # the first worker's claim no longer holds it: it must not send
    assert len(providers.twilio_creates()) == 1


def test_queued_messages_are_seen_without_any_new_event(session) -> None:
    with session.begin():
        assert not outbox_waiting(session=session)
    queue_messages(session, 1)
    with session.begin():
        assert outbox_waiting(session=session)


def test_sigkill_mid_send_then_restart_sends_every_message_exactly_once(
    session, providers, monkeypatch
) -> None:
    """200 SMS, the sender killed with SIGKILL after 60 requests, started again: each customer gets one."""
    total, kill_after = 200, 60
    queue_messages(session, total)
    providers.fail_next("twilio", total, status=201, delay=0.02)  # slow enough to be killed mid-wave
    env = {
        **os.environ,
        "CAREPATH_TWILIO_ACCOUNT_SID": "ACtest",
        "CAREPATH_TWILIO_AUTH_TOKEN": "test-token",
        "CAREPATH_TWILIO_BASE_URL": providers.base_url,
        "CAREPATH_DATABASE_URL": get_settings().database_url,
    }
    code = (
        "from carepath.settings import get_settings\n"
        "from tasks.messaging import drain_outbox\n"
        "drain_outbox(settings=get_settings(), batch_size=40)\n"
    )
    sender = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while len(providers.twilio_creates()) < kill_after and time.monotonic() < deadline:
            assert sender.poll() is None, "the sender finished before it could be killed"
            time.sleep(0.002)
        sender.send_signal(signal.SIGKILL)
    finally:
        sender.wait(10)
    time.sleep(0.3)  # requests already in the stub finish (each answers after 0.02 s)
    stranded = messages(session)
    assert any(m.status is MessageStatus.SENDING for m in stranded)  # the kill left claims behind
    assert any(m.status is MessageStatus.QUEUED for m in stranded)

    # The restart: leases run out, unknown outcomes are looked up, the rest is sent.
    with session.begin():
        release_expired_leases(session=session, now=utcnow() + LEASE + timedelta(seconds=1))
    set_env(monkeypatch, reconcile_grace_seconds=0)
    reconcile()
    send()

    rows = messages(session)
    created = providers.twilio_created()
    by_body = {}
    for m in created:
        by_body.setdefault(m["body"], []).append(m["sid"])
    assert len(created) == total and all(len(sids) == 1 for sids in by_body.values())  # exactly once each
    assert all(m.status is MessageStatus.SENT for m in rows)
    assert all(m.provider_message_id == by_body[m.body][0] for m in rows)  # the accepted ones kept their ids


# SendGrid has no look-up: its events, carrying our id, settle an unknown email.


def test_sendgrid_event_settles_an_unknown_email(session, providers) -> None:
    from tasks.delivery import drain_delivery_batch
    from tasks.inbox import store_events

    [message_id] = queue_messages(session, 1, MessageChannel.EMAIL)
    providers.fail_next("sendgrid", status=202, drop=True)

    assert send().unknown == 1
    with session.begin():
        store_events(
            session=session,
            source="sendgrid",
            kind="event",
            events=[
                (
                    "sg-evt-1",
                    {
                        "event": "delivered",
                        "sg_event_id": "sg-evt-1",
                        "sg_message_id": "abc123XYZ.filter0001",
                        "carepath_message_id": str(message_id),
                        "timestamp": int(time.time()),
                    },
                )
            ],
        )
    with session.begin():
        drain_delivery_batch(session=session, limit=10)

    [message] = messages(session)
    assert (message.status, message.provider_message_id) == (MessageStatus.DELIVERED, "abc123XYZ")
    assert message.status_reason is None
    assert reconcile().resent == 0
    assert len([r for r in providers.requests if r.provider == "sendgrid"]) == 1  # never sent again


def test_reconcile_messages_command_prints_exactly_its_contract(
    session, providers, capsys, prefect_server
) -> None:
    from cli.commands import main

    queue_messages(session, 1)
    providers.fail_next("twilio", status=201, drop=True)
    send()
    capsys.readouterr()

    assert main(["reconcile-messages", "--json"]) == 0

    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(out) == {"settled": 1, "resent": 0, "still_unknown": 0}
    assert len(providers.twilio_creates()) == 1


def test_sms_rate_limit_paces_sends_through_the_prefect_server(prefect_server, monkeypatch) -> None:
    """Slots come from the server's global rate limit: 5 slots at 5/s, then 5 more wait about a second (a
    used-up rate is a 423 the quick path waits out), never an error and never a skipped limit."""
    from tasks.messaging import ensure_sms_rate_limit
    from tasks.messaging.claims import ClaimedMessage
    from tasks.messaging.drain import _take_rate_slots_quickly, take_rate_slots

    set_env(monkeypatch, sms_rate_limit_name="test-sms-pacing", sms_per_second=5)
    ensure_sms_rate_limit()
    sms = [
        ClaimedMessage(i, MessageChannel.SMS, "+306912345678", None, "b", f"k{i}", None, None)
        for i in range(5)
    ]

    started = time.monotonic()
    take_rate_slots("test-sms-pacing", sms)
    take_rate_slots("test-sms-pacing", sms)
    elapsed = time.monotonic() - started

    assert elapsed >= 0.8  # the second five waited for the first five to decay at 5/s
    assert _take_rate_slots_quickly("test-sms-pacing", 1)  # Prefect's public client call, not the fallback
