"""Property tests (hypothesis) on every parser of outside input: webhook bodies (our JSON, Twilio's form,
SendGrid's events and Inbound Parse), .eml files, CSV and Parquet imports with their quality screening, and
web-shop order JSON. Whatever the input: a clear refusal or a success — never an unexpected exception — and a
refusal writes nothing.

Examples per property: CAREPATH_PROPERTY_EXAMPLES (default 20; raise it for a long search)."""

from __future__ import annotations

import json
import os
import string
from datetime import UTC, datetime
from urllib.parse import urlencode

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from carepath import quality
from carepath.db import get_engine, unit_of_work
from carepath.settings import get_settings
from models import Activity, Case, Contact, DeviceFault, InboxEvent, QuarantinedRow, WebhookRejection
from tests.utils.signing import IOT_SECRET, carepath_headers, twilio_headers

EXAMPLES = int(os.environ.get("CAREPATH_PROPERTY_EXAMPLES", "20"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples in every CI run
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
# An import validates each file with Great Expectations (about a second here): fewer examples, the same search.
IMPORTS = settings(PROPERTY, max_examples=max(5, EXAMPLES // 3))
BASE = "https://care.example.test"

# Text that tries hardest: control characters, quotes, separators, markup, SQL, surrogates' neighbours.
NASTY = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "\r\n",
            '"',
            "'; DROP TABLE support_case; --",
            "<script>alert(1)</script>",
            '=HYPERLINK("http://x")',
            "NaN",
            "null",
            "-0",
            "9" * 400,
            "1e309",
            "\ufeff",
            "\u202e",
            "ⅷ",
            "２０２６-01-01T00:00:00Z",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
            "+306912345678",
            "a@b.example",
        ]
    ),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | NASTY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NASTY, inner, max_size=4),
    max_leaves=12,
)


def counts() -> tuple[int, int]:
    with get_engine().connect() as conn:
        return (
            conn.scalar(select(func.count()).select_from(InboxEvent)),
            conn.scalar(select(func.count()).select_from(WebhookRejection)),
        )


def assert_answer(response, before: tuple[int, int], *, events: int = 1) -> None:
    """A 2xx that stored at most its events, or a 4xx with a reason that stored nothing and was recorded."""
    after = counts()
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]
        assert after == (before[0], before[1] + 1)
    else:
        assert after[1] == before[1] and 0 <= after[0] - before[0] <= events


# Quality screening (no database): a typed view of any text, never an exception.


@PROPERTY
@given(st.lists(NASTY, max_size=20))
def test_screening_reads_any_text_as_a_value_or_null(texts: list[str]) -> None:
    series = pd.Series(texts, dtype=object)
    numbers, times = quality.integer_values(series), quality.timestamp_values(series)
    assert len(numbers) == len(times) == len(texts)
    for text, number, moment in zip(texts, numbers, times, strict=True):
        if not pd.isna(number):
            assert text.strip().lstrip("+-").isdigit()
        if not pd.isna(moment):
            assert moment.tzinfo is not None


# Webhook bodies, signed (so the parser, not the signature check, is what answers).


@PROPERTY
@given(body=st.one_of(st.binary(max_size=300), JSON.map(lambda v: json.dumps(v).encode())))
def test_any_signed_body_on_a_json_webhook_is_stored_or_refused_with_a_reason(receiver, body: bytes) -> None:
    before = counts()
    response = receiver.post("/webhooks/iot/faults", content=body, headers=carepath_headers(IOT_SECRET, body))
    assert_answer(
        response,
        before,
        events=len(json.loads(body)) if response.status_code == 202 and body[:1] == b"[" else 1,
    )


FAULT = st.fixed_dictionaries(
    {
        "event_id": NASTY,
        "device_id": NASTY,
        "error_code": st.one_of(st.integers(), st.floats(allow_nan=False), NASTY),
        "occurred_at": st.one_of(
            NASTY,
            st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
        ),
    },
    optional={"message": NASTY},
)


@PROPERTY
@given(faults=st.lists(FAULT, min_size=1, max_size=3))
def test_any_fault_array_is_stored_whole_or_refused_whole(receiver, faults: list[dict]) -> None:
    body = json.dumps(faults).encode()
    before = counts()
    response = receiver.post("/webhooks/iot/faults", content=body, headers=carepath_headers(IOT_SECRET, body))
    assert_answer(response, before, events=len(faults))
    if response.status_code == 202:  # every element valid: each stored (or a duplicate of one stored)
        assert len(response.json()["inbox_ids"]) == len(faults)


@PROPERTY
@given(form=st.dictionaries(NASTY, NASTY, max_size=6), sid=NASTY, status=NASTY)
def test_any_signed_twilio_form_is_stored_as_sent_or_refused(receiver, form, sid, status) -> None:
    fields = {**form, "MessageSid": sid, "MessageStatus": status}
    body = urlencode(fields).encode()
    headers = twilio_headers(BASE + "/webhooks/twilio/status", fields)
    before = counts()
    response = receiver.post("/webhooks/twilio/status", content=body, headers=headers)
    assert_answer(response, before)
    if response.status_code == 202 and not response.json()["duplicate"]:
        with get_engine().connect() as conn:
            stored = conn.scalar(select(InboxEvent.payload).order_by(InboxEvent.id.desc()).limit(1))
        assert stored == {k: v for k, v in fields.items()}


@PROPERTY
@given(events=st.lists(st.dictionaries(NASTY, JSON, max_size=5), max_size=3) | JSON)
def test_any_signed_sendgrid_event_body_is_stored_or_refused(receiver, sendgrid_keys, events) -> None:
    body = json.dumps(events).encode()
    before = counts()
    response = receiver.post("/webhooks/sendgrid/events", content=body, headers=sendgrid_keys.headers(body))
    assert_answer(response, before, events=len(events) if isinstance(events, list) else 1)


@PROPERTY
@given(raw=st.one_of(st.text(max_size=400), NASTY), subject=NASTY, sender=NASTY)
def test_any_inbound_parse_post_is_stored_or_refused(receiver, raw, subject, sender) -> None:
    import base64

    from pydantic import SecretStr

    receiver.app.state.settings.sendgrid_inbound_auth = SecretStr("parse:pw")
    fields = {"email": raw} if raw else {"headers": f"Subject: {subject}", "from": sender, "text": raw}
    files = {name: (None, value.encode("utf-8", "surrogatepass")) for name, value in fields.items()}
    before = counts()
    response = receiver.post(
        "/webhooks/sendgrid/inbound",
        files=files,
        headers={"Authorization": "Basic " + base64.b64encode(b"parse:pw").decode()},
    )
    assert_answer(response, before)
    if response.status_code == 202:
        with get_engine().connect() as conn:
            event_id = conn.scalar(select(InboxEvent.event_id).order_by(InboxEvent.id.desc()).limit(1))
        assert 0 < len(event_id) <= 200 and "\n" not in event_id


# .eml files: a case, an activity, or a refusal that leaves nothing behind.

HEADER_TEXT = NASTY.map(lambda s: s.replace("\r", " ").replace("\n", " "))
EMAIL = st.builds(
    lambda subject, sender, to, body, extra, message_id: "\r\n".join(
        [
            f"From: {sender}",
            f"To: {to}",
            f"Subject: {subject}",
            f"Message-ID: <{message_id}>",
            *extra,
            "Content-Type: text/plain; charset=utf-8",
            "",
            body,
        ]
    ).encode("utf-8", "surrogatepass"),
    subject=NASTY,  # line breaks included: a header-injection attempt
    sender=st.one_of(HEADER_TEXT, st.emails().map(lambda e: f"Someone <{e}>")),
    to=st.one_of(HEADER_TEXT, st.just("support@carepath.example")),
    body=st.text(max_size=200),
    extra=st.lists(
        st.sampled_from(
            [
                "Auto-Submitted: auto-replied",
                "In-Reply-To: <carepath.99999999999999999999@x>",
                "References: <<<>>>",
                "Content-Transfer-Encoding: base64",
                "Content-Type: multipart/mixed; boundary=",
                "Subject: =?utf-8?b?!!!?=",
                "From: =?x-unknown?q?=FF?= <a@b>",
            ]
        ),
        max_size=3,
    ),
    message_id=HEADER_TEXT,
)


def _email_rows() -> tuple[int, int, int]:
    with get_engine().connect() as conn:
        return tuple(conn.scalar(select(func.count()).select_from(m)) for m in (Case, Activity, Contact))


@PROPERTY
@given(raw=st.one_of(EMAIL, st.binary(max_size=400)))
def test_any_email_becomes_a_case_an_activity_or_a_clean_refusal(engine, raw: bytes) -> None:
    from tasks.email_to_case import EmailRefused, ingest_email

    before = _email_rows()
    try:
        with unit_of_work() as session:
            outcome = ingest_email(session=session, raw=raw, settings=get_settings())
    except EmailRefused as exc:
        assert str(exc)
        assert _email_rows() == before  # refused: nothing of it was written
        return
    cases, activities, contacts = _email_rows()
    assert cases - before[0] == (1 if outcome.case_created else 0)
    assert activities - before[1] in (
        0,
        1,
        2,
    )  # none for an email seen before; its own, and an acknowledgement
    assert contacts - before[2] in (0, 1)
    with get_engine().connect() as conn:
        subject = conn.scalar(select(Activity.subject).where(Activity.id == outcome.activity_id))
    assert "\n" not in subject and "\r" not in subject and len(subject) <= 300


# Imports: a CSV or Parquet file is loaded and quarantined row by row, or refused whole.

CELL = st.one_of(NASTY, st.text(alphabet=string.printable, max_size=20))


def _import_rows() -> tuple[int, int, int]:
    with get_engine().connect() as conn:
        return tuple(
            conn.scalar(select(func.count()).select_from(m)) for m in (Contact, QuarantinedRow, DeviceFault)
        )


def _import(kind: str, path) -> dict | None:
    """The import's figures, or None when the file was refused whole (with a reason)."""
    from tasks.imports import KINDS
    from tasks.imports.files import ImportFileError
    from tasks.imports.run import import_source, inspect_source

    try:
        source = inspect_source(KINDS[kind], str(path))
    except ImportFileError as exc:
        assert path.name in str(exc)
        return None
    summary = import_source(KINDS[kind], source)
    assert summary.loaded + summary.quarantined <= summary.rows
    return summary.as_json()


@IMPORTS
@given(
    header=st.permutations(["email", "first_name", "last_name", "phone", "account_number"]),
    rows=st.lists(st.lists(CELL, min_size=0, max_size=7), max_size=6),
    raw_tail=st.binary(max_size=30),
)
def test_any_contacts_csv_is_loaded_row_by_row_or_refused_whole(
    engine, tmp_path_factory, header, rows, raw_tail
) -> None:
    import csv
    import io

    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    path = tmp_path_factory.mktemp("csv") / "contacts.csv"
    path.write_bytes(text.getvalue().encode("utf-8", "surrogatepass") + raw_tail)
    before = _import_rows()
    figures = _import("contacts", path)
    if figures is None:
        assert _import_rows() == before


@IMPORTS
@given(
    codes=st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=1, max_size=5),
    floats=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=5, max_size=5),
    times=st.lists(
        st.one_of(st.none(), st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))),
        min_size=5,
        max_size=5,
    ),
    texts=st.lists(st.one_of(st.none(), NASTY), min_size=5, max_size=5),
    as_float=st.booleans(),
)
def test_any_parquet_faults_file_is_loaded_row_by_row(
    engine, tmp_path_factory, codes, floats, times, texts, as_float
) -> None:
    n = len(codes)
    table = pa.table(
        {
            "event_id": [f"pq-{i}-{t}" for i, t in enumerate(texts[:n])],
            "device_id": texts[:n],
            "error_code": pa.array(floats[:n]) if as_float else pa.array(codes, pa.int64()),
            "occurred_at": pa.array(
                [t.replace(tzinfo=UTC) if t else None for t in times[:n]], pa.timestamp("us", tz="UTC")
            ),
            "message": texts[:n],
        }
    )
    path = tmp_path_factory.mktemp("pq") / "faults.parquet"
    pq.write_table(table, path)
    figures = _import("faults", path)
    assert figures is not None and figures["loaded"] + figures["quarantined"] == n


@PROPERTY
@given(raw=st.binary(max_size=200))
def test_a_file_that_is_not_parquet_is_refused_whole(engine, tmp_path_factory, raw) -> None:
    path = tmp_path_factory.mktemp("pq") / "faults.parquet"
    path.write_bytes(raw)
    before = _import_rows()
    assert _import("faults", path) is None and _import_rows() == before


# Web-shop orders: a validated order or one line naming the bad fields.


@PROPERTY
@given(
    raw=st.one_of(
        JSON,
        st.fixed_dictionaries(
            {"order_id": NASTY, "email": NASTY, "first_name": NASTY, "last_name": NASTY},
            optional={"phone": NASTY, "products": st.lists(NASTY, max_size=3), "company": NASTY},
        ),
    )
)
def test_any_order_json_parses_or_names_its_bad_fields(raw) -> None:
    from tasks.webshop import parse_order

    try:
        order = parse_order(raw)
    except ValueError as exc:
        assert str(exc).startswith("invalid order: ") and "\n" not in str(exc)
        return
    assert order.order_id and "@" in order.email


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe", b"[" * 100_000, b'{"order_id": 1e999}', b"null", b'{"order_id": "' + b"9" * 5000 + b'"}'],
    ids=["not-utf8", "deep", "huge-number", "null", "long-id"],
)
def test_the_order_command_refuses_hostile_files_with_a_message(engine, tmp_path, capsys, content) -> None:
    from cli.commands import main

    path = tmp_path / "order.json"
    path.write_bytes(content)
    assert main(["webshop-order", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() and "Traceback" not in err


# What the properties found, kept as plain cases.


def test_a_csv_with_a_header_and_no_records_imports_nothing(engine, tmp_path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("email,first_name,last_name,phone,account_number\n", encoding="utf-8")
    assert _import("contacts", path) == {"loaded": 0, "quarantined": 0, "failed_expectations": {}}


def test_a_quote_never_closed_refuses_the_file_before_any_chunk_loads(engine, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CAREPATH_IMPORT_CHUNK_ROWS", "1")  # chunk 1 would load before the reader got stuck
    from carepath.settings import reset_settings

    reset_settings()
    path = tmp_path / "contacts.csv"
    path.write_text(
        "email,first_name,last_name,phone,account_number\n"
        "maria@helios-energy.example,Maria,P,,\n"
        '"never closed,x,y,,\n',
        encoding="utf-8",
    )
    before = _import_rows()
    assert _import("contacts", path) is None and _import_rows() == before
    monkeypatch.undo()
    reset_settings()


@pytest.mark.parametrize(
    "headers",
    [
        "In-Reply-To: <carepath.99999999999999999999@carepath.example>",
        "Message-ID: <>",
        "Message-ID: < >",
        "From: Someone <>",
    ],
)
def test_malformed_reply_headers_open_a_case_or_refuse_cleanly(engine, headers) -> None:
    from tasks.email_to_case import EmailRefused, ingest_email

    raw = f"From: maria@helios-energy.example\r\nTo: support@carepath.example\r\nSubject: Hello\r\n{headers}\r\n\r\nHi".encode()
    try:
        with unit_of_work() as session:
            outcome = ingest_email(session=session, raw=raw, settings=get_settings())
    except EmailRefused as exc:
        assert "From" in str(exc) or "address" in str(exc)
        return
    assert outcome.case_created and outcome.ticket.startswith("CAS-")
