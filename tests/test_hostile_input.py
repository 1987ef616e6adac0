"""Hostile input, case by case: bodies at and past the size limit, wrong media types, bytes that are not UTF-8,
numbers and times out of range, SQL- and HTML-looking text (escaped on the tracking page and in the KPI report),
line breaks in email subjects, and request floods (429 with Retry-After). Each: a 4xx with a reason, recorded, and
nothing half written; or accepted and shown harmless."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime
from urllib.parse import urlencode

import pandas as pd
import pytest
from pydantic import SecretStr
from sqlalchemy import inspect, select

from models import CaseStatus, InboxEvent, Message, MessageStatus, WebhookRejection
from receiver.tracking import _templates
from tasks.case_status import change_case_status
from tests.test_case_status_journey import make_case
from tests.utils.signing import CASES_SECRET, IOT_SECRET, carepath_headers, twilio_headers

BASE = "https://care.example.test"
LIMIT = 65_536  # the receiver fixture's CAREPATH_WEBHOOK_MAX_BODY_BYTES


def fault(event_id: str = "f-1", **over) -> dict:
    return {
        "event_id": event_id,
        "device_id": "DEV-000001",
        "error_code": 14,
        "occurred_at": datetime.now(UTC).isoformat(),
        **over,
    }


def read(session, stmt):
    session.expire_all()
    rows = session.scalars(stmt).all()
    session.commit()
    return rows


def inbox(session) -> list[InboxEvent]:
    return read(session, select(InboxEvent).order_by(InboxEvent.id))


def rejections(session) -> list[WebhookRejection]:
    return read(session, select(WebhookRejection).order_by(WebhookRejection.id))


def post_signed(client, path: str, body: bytes, *, secret: str = IOT_SECRET, **headers):
    return client.post(path, content=body, headers={**carepath_headers(secret, body), **headers})


def padded_to(size: int) -> bytes:
    """A valid signed fault whose JSON is exactly `size` bytes."""
    bare = json.dumps(fault(padding="")).encode()
    return json.dumps(fault(padding="p" * (size - len(bare)))).encode()


# Size limits: the limit itself is accepted, one byte more is 413, declared or streamed.


def test_a_body_of_exactly_the_limit_is_accepted_and_one_byte_more_is_413(receiver, session) -> None:
    at_limit, over = padded_to(LIMIT), padded_to(LIMIT + 1)
    assert (len(at_limit), len(over)) == (LIMIT, LIMIT + 1)
    assert post_signed(receiver, "/webhooks/iot/faults", at_limit).status_code == 202
    refused = post_signed(receiver, "/webhooks/iot/faults", over.replace(b'"f-1"', b'"f-2"'))
    assert refused.status_code == 413 and f"{LIMIT}-byte limit" in refused.json()["error"]
    assert [r.event_id for r in inbox(session)] == ["f-1"]
    assert [(r.source, r.status_code) for r in rejections(session)] == [("iot", 413)]


def test_a_streamed_body_without_a_length_is_cut_at_the_limit(receiver, session) -> None:
    over = padded_to(LIMIT + 1)

    def chunks():
        for i in range(0, len(over), 4096):
            yield over[i : i + 4096]

    response = receiver.post(
        "/webhooks/iot/faults", content=chunks(), headers=carepath_headers(IOT_SECRET, over)
    )
    assert response.status_code == 413 and "exceeds" in response.json()["error"]
    assert inbox(session) == [] and rejections(session)[0].status_code == 413


# Media types: a body that says it is something else is 415 with a reason, recorded.


@pytest.mark.parametrize(
    ("path", "media", "expected"),
    [
        ("/webhooks/iot/faults", "text/plain", 415),
        ("/webhooks/iot/faults", "application/x-www-form-urlencoded", 415),
        ("/webhooks/iot/faults", "application/vnd.carepath+json", 202),  # a JSON type still
        ("/webhooks/cases/status", "", 415),
    ],
)
def test_our_json_sources_refuse_another_media_type(receiver, session, path, media, expected) -> None:
    body = json.dumps(fault()).encode()
    secret = CASES_SECRET if "cases" in path else IOT_SECRET
    response = receiver.post(
        path, content=body, headers={**carepath_headers(secret, body), "Content-Type": media}
    )
    assert response.status_code == expected, response.text
    if expected == 415:
        assert "post application/json" in response.json()["error"]
        assert inbox(session) == [] and rejections(session)[0].status_code == 415


def test_twilio_and_sendgrid_refuse_another_media_type(receiver, session, sendgrid_keys) -> None:
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    as_json = json.dumps(form).encode()
    twilio = receiver.post(
        "/webhooks/twilio/status",
        content=as_json,
        headers={
            **twilio_headers(BASE + "/webhooks/twilio/status", form),
            "Content-Type": "application/json",
        },
    )
    events = urlencode({"sg_event_id": "e1"}).encode()
    sendgrid = receiver.post(
        "/webhooks/sendgrid/events",
        content=events,
        headers={**sendgrid_keys.headers(events), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (twilio.status_code, sendgrid.status_code) == (415, 415)
    assert (
        "x-www-form-urlencoded" in twilio.json()["error"] and "application/json" in sendgrid.json()["error"]
    )
    assert inbox(session) == [] and [r.status_code for r in rejections(session)] == [415, 415]


# Bytes that are not UTF-8: 400 with the reason, or kept readable with replacement characters.


def test_json_that_is_not_utf8_is_400(receiver, session) -> None:
    body = json.dumps(fault()).encode().replace(b"DEV-000001", b"DEV-\xff\xfe\xc3")
    response = post_signed(receiver, "/webhooks/iot/faults", body)
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    assert inbox(session) == [] and rejections(session)[0].status_code == 400


@pytest.mark.parametrize(
    ("escape", "what"), [("\\u0000", "NUL"), ("\\ud800", "unpaired surrogate")], ids=["nul", "lone-surrogate"]
)
def test_text_no_database_keeps_is_400_before_anything_is_stored(receiver, session, escape, what) -> None:
    # PostgreSQL's jsonb refuses both: stored with good events in one flush, it would fail them all.
    good, bad = json.dumps(fault("good")), json.dumps(fault("bad")).replace("DEV-000001", f"DEV{escape}1")
    response = post_signed(receiver, "/webhooks/iot/faults", f"[{good}, {bad}]".encode())
    assert response.status_code == 400 and what in response.json()["error"]
    form = receiver.post(
        "/webhooks/twilio/status",
        content=b"MessageSid=SM%00&MessageStatus=sent",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"},
    )
    assert form.status_code == 400 and "NUL" in form.json()["error"]
    assert inbox(session) == [] and [r.status_code for r in rejections(session)] == [400, 400]


def test_a_twilio_form_that_is_not_utf8_is_400(receiver, session) -> None:
    body = b"MessageSid=SM1&MessageStatus=deliv\xffered"
    response = receiver.post(
        "/webhooks/twilio/status",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"},
    )
    assert response.status_code == 400 and "malformed form body" in response.json()["error"]
    assert inbox(session) == []


def test_an_inbound_email_field_that_is_not_utf8_is_kept_with_replacement_characters(
    receiver, session
) -> None:
    receiver.app.state.settings.sendgrid_inbound_auth = SecretStr("parse:pw")
    boundary = "XyZ"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="email"\r\n\r\n'.encode()
        + b"From: a@b.example\r\nSubject: caf\xe9\r\nMessage-ID: <m1@b.example>\r\n\r\nbody \xff\r\n"
        + f"--{boundary}--\r\n".encode()
    )
    response = receiver.post(
        "/webhooks/sendgrid/inbound",
        content=body,
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Authorization": "Basic " + base64.b64encode(b"parse:pw").decode(),
        },
    )
    assert response.status_code == 202, response.text
    [row] = inbox(session)
    assert "caf\ufffd" in row.payload["raw"] and row.event_id == "m1@b.example"


# Numbers and times out of range: 422 naming the field, nothing stored.


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (json.dumps(fault(error_code=10**30)).encode(), 422, "error_code"),
        (
            json.dumps(fault()).encode().replace(b'"error_code": 14', b'"error_code": 1e999'),
            422,
            "error_code",
        ),
        (
            json.dumps(fault()).encode().replace(b'"error_code": 14', b'"error_code": ' + b"9" * 5000),
            400,
            None,
        ),
        (json.dumps(fault(occurred_at="9999-12-31T23:59:59-14:00")).encode(), 422, "occurred_at"),
        (json.dumps(fault(occurred_at="0001-01-01T00:00:00+14:00")).encode(), 422, "occurred_at"),
        (json.dumps(fault(occurred_at="2026-02-30T10:00:00Z")).encode(), 422, "occurred_at"),
    ],
    ids=["huge-int", "float-overflow", "5000-digits", "after-9999-in-utc", "before-year-1-in-utc", "feb-30"],
)
def test_numbers_and_times_out_of_range_are_refused(receiver, session, body, status, field) -> None:
    response = post_signed(receiver, "/webhooks/iot/faults", body)
    assert response.status_code == status, response.text
    assert response.json()["error"]
    if field:
        assert field in {e["field"] for e in response.json()["errors"]}
    assert inbox(session) == [] and rejections(session)[0].status_code == status


def test_a_sendgrid_timestamp_that_is_no_time_is_422(receiver, session, sendgrid_keys) -> None:
    body = json.dumps([{"sg_event_id": "e1", "event": "delivered", "timestamp": 10**20}]).encode()
    response = receiver.post("/webhooks/sendgrid/events", content=body, headers=sendgrid_keys.headers(body))
    assert response.status_code == 422 and "0.timestamp" in {e["field"] for e in response.json()["errors"]}
    assert inbox(session) == []


def test_far_past_and_far_future_times_that_exist_are_stored_as_sent(receiver, session) -> None:
    for event_id, at in (("past", "0001-01-01T00:00:00Z"), ("future", "9999-12-31T23:59:59Z")):
        body = json.dumps(fault(event_id, occurred_at=at)).encode()
        assert post_signed(receiver, "/webhooks/iot/faults", body).status_code == 202
    assert [r.payload["occurred_at"] for r in inbox(session)] == [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
    ]


# SQL- and HTML-looking text: stored as text, shown escaped.

HOSTILE_TITLE = "<script>alert('x')</script>'; DROP TABLE support_case; --"
HOSTILE_REASON = '<img src=x onerror="alert(1)">'


def test_the_tracking_page_escapes_what_a_case_holds(receiver, session) -> None:
    case = make_case(session)
    case.title = HOSTILE_TITLE
    session.commit()
    change_case_status(
        session=session,
        case=case,
        to_status=CaseStatus.RESOLVED,
        source="test",
        status_reason=HOSTILE_REASON,
        resolution="<b>fixed</b> & done",
    )
    session.commit()
    html = receiver.get(f"/track/{case.ticket_number}", params={"t": case.tracking_token}).text
    assert "<script>" not in html and "<img" not in html and "<b>fixed" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&#39;; DROP TABLE support_case; --" in html
    assert (
        "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
        and "&lt;b&gt;fixed&lt;/b&gt; &amp; done" in html
    )
    as_json = receiver.get(
        f"/track/{case.ticket_number}", params={"t": case.tracking_token, "format": "json"}
    )
    assert as_json.json()["title"] == HOSTILE_TITLE  # JSON carries it as data, exactly
    assert "support_case" in inspect(session.get_bind()).get_table_names()  # it was only ever a parameter
    assert _templates.autoescape("track.html.j2")


def test_a_hostile_ticket_or_token_in_the_url_is_a_plain_404(receiver, session) -> None:
    make_case(session)
    for ticket, token in (("' OR 1=1 --", "' OR '1'='1"), ("<script>", "<script>"), ("%00", "\x00")):
        response = receiver.get(f"/track/{ticket}", params={"t": token})
        assert response.status_code == 404 and "<script>" not in response.text


def test_the_kpi_report_escapes_names_from_data() -> None:
    from tasks.kpi_report import KpiReport, KpiReportConfig, render_markdown

    totals = dict.fromkeys(
        ["cases_opened", "cases_resolved", "open_cases", "device_faults", "sla_met", "sla_ended"], 0
    ) | {
        "sla_compliance_pct": None,
        "median_first_response_minutes": None,
        "support_cost": 0.0,
        "resolution_minutes": 0,
    }
    report = KpiReport(
        as_of=date(2026, 1, 31),
        first=date(2026, 1, 2),
        config=KpiReportConfig(as_of=date(2026, 1, 31)),
        hourly_rate=60.0,
        currency="EUR",
        totals=totals,
        faults=pd.DataFrame(
            [{"product": "<img src=x onerror=alert(1)>", "sku": "A|B\nC", "faults": 3}],
        ),
    )
    markdown = render_markdown(
        report,
        images=dict.fromkeys(
            ["cases-per-day", "sla-compliance", "faults-per-product", "cost-per-product"], "x.png"
        ),
    )
    assert "<img src=x" not in markdown
    assert "| &lt;img src=x onerror=alert(1)&gt; | A\\|B C | 3 |" in markdown


# Header injection: a line break in a subject never makes a second header, whatever sends it.


def test_a_subject_with_line_breaks_reaches_sendgrid_as_one_line(session, providers, settings) -> None:
    from tasks.messaging import drain_outbox, queue_contact_email

    case = make_case(session)
    message_id, _ = queue_contact_email(
        session=session,
        case_id=case.id,
        contact_id=case.contact_id,
        step="hostile-subject",
        subject="Your case\r\nBcc: everyone@evil.example\r\n\r\n<html>",
        body="Hello",
        template="test",
        now=datetime.now(UTC),
    )
    session.commit()
    drain_outbox(settings=settings, ids=[message_id])
    [mail] = providers.sendgrid_mails()
    subject = mail.json["subject"]
    assert subject == "Your case Bcc: everyone@evil.example <html>"
    assert "bcc" not in mail.json["personalizations"][0]
    stored = read(session, select(Message).where(Message.id == message_id))[0]
    assert stored.status is MessageStatus.SENT and "\n" not in stored.subject


def test_the_local_email_channel_logs_one_subject_line(caplog) -> None:
    from carepath.channels.base import OutgoingEmail
    from carepath.channels.local import LocalEmailSender
    from tasks.messaging.sending import one_line

    email = OutgoingEmail(
        to="maria@helios.example", subject=one_line("A\r\nBcc: x@y"), text="t", idempotency_key="k"
    )
    with caplog.at_level("INFO", logger="carepath.outbox"):
        LocalEmailSender().send_email(email)
    [line] = [r.getMessage() for r in caplog.records]
    assert line.split("\n")[0] == "Email to m***@helios.example: A Bcc: x@y"


# Floods: per client address and per source, 429 with Retry-After and a reason, recorded, nothing stored.


def test_a_client_over_its_rate_gets_429_with_retry_after_and_is_recorded(receiver, session) -> None:
    from receiver.rate_limits import RequestRates

    receiver.app.state.rates = RequestRates(per_client="3/minute", per_source=None)
    answers = [
        post_signed(receiver, "/webhooks/iot/faults", json.dumps(fault(f"e{i}")).encode()) for i in range(5)
    ]
    assert [a.status_code for a in answers] == [202, 202, 202, 429, 429]
    refused = answers[3]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "per client" in refused.json()["error"]
    assert [r.event_id for r in inbox(session)] == ["e0", "e1", "e2"]
    assert [(r.source, r.status_code) for r in rejections(session)] == [("iot", 429), ("iot", 429)]
    # The tracking page is the same client: over its rate too (a token guesser is slowed the same way).
    assert receiver.get("/track/CAS-00000-00000", params={"t": "guess"}).status_code == 429
    assert receiver.get("/healthz").status_code == 200  # never limited


def test_a_source_over_its_rate_is_refused_for_every_client_and_others_go_on(receiver, session) -> None:
    from receiver.rate_limits import RequestRates

    receiver.app.state.settings.trust_forwarded_headers = True  # behind a proxy: clients by X-Forwarded-For
    receiver.app.state.rates = RequestRates(per_client="2/minute", per_source="3/minute")

    def post(event_id: str, client: str, path: str = "/webhooks/iot/faults", secret: str = IOT_SECRET):
        body = json.dumps(fault(event_id) if "iot" in path else status_change(event_id)).encode()
        return post_signed(receiver, path, body, secret=secret, **{"X-Forwarded-For": client}).status_code

    assert [post("a1", "10.0.0.1"), post("a2", "10.0.0.1"), post("a3", "10.0.0.1")] == [202, 202, 429]
    assert [post("b1", "10.0.0.2"), post("c1", "10.0.0.3")] == [202, 429]  # iot's 3 are spent
    assert post("d1", "10.0.0.4", "/webhooks/cases/status", CASES_SECRET) == 202  # another source goes on
    reasons = [(r.status_code, r.remote_addr, r.reason) for r in rejections(session)]
    assert [r[0] for r in reasons] == [429, 429]
    assert (
        "per client exceeded for 10.0.0.1" in reasons[0][2] and "per source exceeded for iot" in reasons[1][2]
    )
    assert sorted(r.event_id for r in inbox(session)) == ["a1", "a2", "b1", "d1"]


def status_change(event_id: str) -> dict:
    return {
        "event_id": event_id,
        "ticket_number": "CAS-00000-00000",
        "status": "resolved",
        "changed_at": datetime.now(UTC).isoformat(),
    }


def test_rates_are_settings_with_defaults_far_above_the_benchmarks() -> None:
    from limits import parse

    from carepath.settings import Settings

    defaults = Settings(_env_file=None)
    per_client, per_source = (
        parse(defaults.receiver_rate_limit_per_client),
        parse(defaults.receiver_rate_limit_per_source),
    )
    assert per_client.amount / per_client.get_expiry() >= 5000  # bench/ingest peaks near 3,000 events/s
    assert per_source.amount / per_source.get_expiry() >= per_client.amount / per_client.get_expiry()
    with pytest.raises(ValueError, match="receiver_rate_limit_per_client"):
        Settings(_env_file=None, receiver_rate_limit_per_client="lots")
