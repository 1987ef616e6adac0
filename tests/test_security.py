"""Security review, as tests: secrets never reach logs, the Prefect API (what its UI shows: flow runs, their
parameters, logs and artifacts) or error responses after a full run; phones and emails are masked in logs; the
tracking token is unguessable (≥ 128 bits from `secrets`) and compared in constant time; sign-in is limited
per email and per client address (tests/test_sign_in.py), the receiver per client and per source
(tests/test_hostile_input.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import string
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import make_url, select

from carepath import db
from carepath.rules import tickets
from carepath.settings import get_settings, reset_settings
from models import Case, CaseStatus, Message, MessageStatus
from tasks.case_status import change_case_status
from tasks.ingest import store_fault_events
from tests.utils.databases import BACKEND
from tests.utils.factories import (
    fault_event,
    make_account,
    make_contact,
    make_device,
    make_entitlement,
    make_product,
)
from tests.utils.flows import completed

# Known values for every secret Carepath holds: none may show anywhere but where it is used.
SECRETS = {
    "CAREPATH_IOT_WEBHOOK_SECRET": "iot-secret-5d1e8a0c7b",
    "CAREPATH_CASES_WEBHOOK_SECRET": "cases-secret-9f2b61d4e3",
    "CAREPATH_WEBSHOP_WEBHOOK_SECRET": "webshop-secret-0a7c3e9d55",
    "CAREPATH_PORTAL_WEBHOOK_SECRET": "portal-secret-47be02f1c8",
    "CAREPATH_TWILIO_AUTH_TOKEN": "twilio-token-e3b1c94a7f20",
    "CAREPATH_SENDGRID_API_KEY": "SG.sendgrid-key-6c0d2f8e91",
    "CAREPATH_SENDGRID_INBOUND_AUTH": "parse:inbound-password-1b9e7d",
    "CAREPATH_SUMMARY_API_TOKEN": "summary-token-8a4f60c2d7",
}
DB_PASSWORD = "db-password-73c9e1a05f"  # PostgreSQL only: trust authentication ignores it, a leak would not
PHONE, EMAIL = "+306947120018", "eleni.georgiou@helios-energy.example"  # no other test uses them


class Capture(logging.Handler):
    """Every log record of the process, formatted with its arguments and traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter("%(name)s %(message)s").format(record))


@pytest.fixture()
def known_secrets(providers, monkeypatch: pytest.MonkeyPatch, database_url: str):
    """The providers' stub, with every secret set to a known value (and the database URL given a password)."""
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        monkeypatch.setenv(
            "CAREPATH_DATABASE_URL", url.set(password=DB_PASSWORD).render_as_string(hide_password=False)
        )
    reset_settings()
    db.reset_engine()
    stub_credentials = providers.twilio_auth_token, providers.sendgrid_api_key
    providers.twilio_auth_token = SECRETS["CAREPATH_TWILIO_AUTH_TOKEN"]  # the stub refuses any other
    providers.sendgrid_api_key = SECRETS["CAREPATH_SENDGRID_API_KEY"]
    capture = Capture()
    loggers = [logging.getLogger(), logging.getLogger("prefect"), logging.getLogger("twilio")]
    for logger in loggers:
        logger.addHandler(capture)
    previous = logging.getLogger().level
    logging.getLogger().setLevel(logging.DEBUG)
    yield capture
    logging.getLogger().setLevel(previous)
    for logger in loggers:
        logger.removeHandler(capture)
    providers.twilio_auth_token, providers.sendgrid_api_key = stub_credentials
    monkeypatch.undo()
    reset_settings()
    db.reset_engine()


def secrets_in(text: str) -> list[str]:
    values = [*SECRETS.values(), SECRETS["CAREPATH_SENDGRID_INBOUND_AUTH"].split(":")[1]]
    values += [DB_PASSWORD] if BACKEND == "postgresql" else []
    return [v for v in values if v in text]


async def what_prefect_shows(since: datetime | None = None) -> str:
    """What the Prefect API holds, as JSON: flow runs with parameters, task runs, logs, artifacts — of every run
    of the session, or only of the flow runs started after `since` (other tests' runs publish, on purpose,
    artifacts that show a customer to an agent, e.g. the customer summary)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogWorker

    await APILogWorker.drain_all()
    async with get_client() as client:
        if since is None:
            flow_runs = await client.read_flow_runs()
            runs, logs, artifacts = FlowRunFilter(), LogFilter(), ArtifactFilter()
        else:
            runs = FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(after_=since))
            flow_runs = await client.read_flow_runs(flow_run_filter=runs)
            ids = [r.id for r in flow_runs]
            logs = LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids))
            artifacts = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids))
        parts = [r.model_dump_json() for r in flow_runs]
        parts += [t.model_dump_json() for t in await client.read_task_runs(flow_run_filter=runs)]
        parts += [a.model_dump_json() for a in await client.read_artifacts(artifact_filter=artifacts)]
        parts += [log.model_dump_json() for log in await client.read_logs(log_filter=logs)]
    return "\n".join(parts)


@pytest.mark.usefixtures("prefect_server")
def test_a_full_run_leaks_no_secret_and_logs_no_phone_or_email(session, known_secrets) -> None:
    from flows.case_status_journey import case_status_journey
    from flows.iot_fault_journey import iot_fault_journey

    started = datetime.now(UTC)
    account = make_account(session)
    owner = make_contact(session, account=account, phone=PHONE, language="el")
    owner.email = EMAIL
    device = make_device(session, owner=owner, product=make_product(session))
    make_entitlement(session, account=account, channels=["iot", "email"])
    store_fault_events(
        session=session,
        events=[fault_event(device.device_id, 14, occurred_at=datetime.now(UTC) - timedelta(minutes=1))],
    )
    session.commit()

    completed(iot_fault_journey)  # fault → case → SMS through Twilio's SDK, at the stub
    case = session.scalars(select(Case)).one()
    change_case_status(
        session=session, case=case, to_status=CaseStatus.RESOLVED, source="agent", resolution="Fixed"
    )
    session.commit()
    completed(case_status_journey)  # resolved → email through SendGrid's SDK, at the stub
    sent = session.scalars(select(Message.channel, Message.status).select_from(Message)).all()
    assert sorted(m.value for m in sent) == ["email", "sms"]
    assert set(session.scalars(select(Message.status))) == {MessageStatus.SENT}

    shown = asyncio.run(what_prefect_shows())  # secrets: nowhere on the server, whichever run
    assert "iot_fault_journey" in shown or "iot-fault-journey" in shown  # the runs are there to be read
    leaked = [line[:300] for line in known_secrets.lines if secrets_in(line)]
    assert secrets_in(shown) == [] and leaked == []
    ours = asyncio.run(what_prefect_shows(since=started))  # the customer: not in what these journeys left
    assert "iot-fault-journey" in ours or "iot_fault_journey" in ours
    personal = [
        line[:400] for line in [*ours.splitlines(), *known_secrets.lines] if PHONE in line or EMAIL in line
    ]
    assert personal == []


def test_error_answers_carry_no_secret(receiver, monkeypatch) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    settings = get_settings()
    receiver.app.state.settings = settings
    body = json.dumps({"event_id": "x"}).encode()
    answers = [
        receiver.post(
            "/webhooks/iot/faults",
            content=body,
            headers={"X-Carepath-Timestamp": "1", "X-Carepath-Signature": "sha256=0"},
        ),
        receiver.post(
            "/webhooks/twilio/status",
            content=b"MessageSid=SM1",
            headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"},
        ),
        receiver.post(
            "/webhooks/sendgrid/inbound",
            content=b"x",
            headers={"Authorization": "Basic " + base64.b64encode(b"parse:wrong").decode()},
        ),
        receiver.get("/customers/summary", params={"key": "x"}, headers={"Authorization": "Bearer wrong"}),
        receiver.get("/track/CAS-00000-00000", params={"t": "guess"}),
        receiver.post("/portal/sign-in", json={"email": "x", "password": "p"}),
    ]
    assert all(400 <= a.status_code < 500 for a in answers), [a.status_code for a in answers]
    everything = "\n".join(f"{a.headers}\n{a.text}" for a in answers)
    assert secrets_in(everything) == []
    assert "**********" in repr(settings.twilio_auth_token) and secrets_in(repr(settings)) == []


# The tracking token: from the operating system's CSPRNG, at least 128 bits, compared in constant time
# (tests/test_tracking_page.py::test_token_is_compared_in_constant_time_either_way spies on hmac.compare_digest).


def test_the_tracking_token_has_at_least_128_bits_from_the_secrets_module(monkeypatch) -> None:
    drawn: list[int] = []
    real = tickets.secrets.token_urlsafe

    def token_urlsafe(nbytes: int) -> str:
        drawn.append(nbytes)
        return real(nbytes)

    monkeypatch.setattr(tickets.secrets, "token_urlsafe", token_urlsafe)
    tokens = {tickets.new_tracking_token() for _ in range(2000)}
    assert drawn and all(n * 8 >= 128 for n in drawn)  # the secrets module, ≥ 16 bytes each time
    assert len(tokens) == 2000  # no repeat
    alphabet = set(string.ascii_letters + string.digits + "-_")
    assert all(set(t) <= alphabet and len(t) * math.log2(len(alphabet)) >= 128 for t in tokens)
