"""End to end through the served stack on loopback: Prefect server, deployments, worker, receiver, drain loop.

A signed IoT fault posted to the receiver becomes an SMS at the Twilio stub; a case resolved through the
status webhook becomes an email at the SendGrid stub; the fault's Prefect event triggers its deployment.
On a Prefect server that requires an auth string, every deployment trigger of prefect.yaml runs its
deployment, and that run (no drain loop, no sweep) does the work.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from deployments.serve import free_port, loopback_env, serve_command
from models import Case, Message, MessageChannel, MessageStatus
from tests.utils.databases import embedded_only
from tests.utils.factories import make_contact, make_device
from tests.utils.signing import CASES_SECRET, IOT_SECRET, TWILIO_TOKEN, carepath_headers, twilio_headers

ROOT = Path(__file__).resolve().parent.parent
AUTH_STRING = "carepath:e2e-auth-string"


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@contextmanager
def served_stack(
    database_url: str, stub, tmp_path: Path, *, drain_loop: bool, auth_string: str | None = None
) -> Iterator[dict]:
    """`make serve` on free loopback ports, pointed at the stub; with `auth_string`, a Prefect server that
    requires it (PREFECT_SERVER_API_AUTH_STRING) and every client of it using it (PREFECT_API_AUTH_STRING)."""
    stub.reset()
    prefect_port, receiver_port = free_port(), free_port()
    env = loopback_env(
        database_url=database_url,
        prefect_home=str(tmp_path / "prefect"),
        receiver_port=receiver_port,
        provider_url=stub.base_url,
        iot_secret=IOT_SECRET,
        cases_secret=CASES_SECRET,
    )
    if auth_string:
        env |= {"PREFECT_SERVER_API_AUTH_STRING": auth_string, "PREFECT_API_AUTH_STRING": auth_string}
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        serve_command(prefect_port=prefect_port, receiver_port=receiver_port, drain_loop=drain_loop),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: teardown can reach every process it started
    )
    receiver = f"http://127.0.0.1:{receiver_port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError((tmp_path / "serve.log").read_text())
        try:
            return httpx.get(f"{receiver}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 360, "the stack to come up")  # generous: a loaded CI machine
        auth = tuple(auth_string.split(":", 1)) if auth_string else None
        with httpx.Client(base_url=f"http://127.0.0.1:{prefect_port}/api", auth=auth, timeout=5) as prefect:
            yield {"receiver": receiver, "prefect": prefect, "stub": stub}
    finally:
        proc.terminate()  # the stack stops its own processes (SIGKILL after a 10-second grace)
        try:
            proc.wait(45)
        except subprocess.TimeoutExpired:
            proc.kill()
        with suppress(ProcessLookupError):  # whatever outlived it (it should not): never left running
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture()
def stack(engine, database_url, provider_stub_server, tmp_path) -> Iterator[dict]:
    """The default stack: no API authentication, the drain loop handling work as it arrives."""
    with served_stack(database_url, provider_stub_server, tmp_path, drain_loop=True) as served:
        yield served


@pytest.fixture()
def authenticated_stack(engine, database_url, provider_stub_server, tmp_path) -> Iterator[dict]:
    """A stack whose Prefect server requires an auth string, and no drain loop: only triggered deployment
    runs handle the inbox."""
    with served_stack(
        database_url, provider_stub_server, tmp_path, drain_loop=False, auth_string=AUTH_STRING
    ) as served:
        yield served


def completed_runs(prefect: httpx.Client, deployment: str) -> list[dict]:
    response = prefect.post("/flow_runs/filter", json={"deployments": {"name": {"any_": [deployment]}}})
    response.raise_for_status()
    return [r for r in response.json() if r["state_type"] == "COMPLETED"]


def run_logs(prefect: httpx.Client, run_id: str) -> str:
    response = prefect.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}})
    response.raise_for_status()
    return "\n".join(entry["message"] for entry in response.json())


def wait_for_run_that_logged(prefect: httpx.Client, deployment: str, figure: str, timeout: float) -> dict:
    """A completed run of `deployment` (started by its trigger) whose log has `figure`: that run did the work."""

    def found() -> dict | None:
        for run in completed_runs(prefect, deployment):
            if figure in run_logs(prefect, run["id"]):
                return run
        return None

    return wait_until(found, timeout, f"a completed {deployment} run logging {figure!r}")


def post(url: str, payload: dict, secret: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    return httpx.post(url, content=body, headers=carepath_headers(secret, body), timeout=10)


def test_fault_to_sms_and_resolution_to_email_through_the_served_stack(stack, session) -> None:
    owner = make_contact(session, phone="+306912345678", first_name="Eleni")
    device = make_device(session, owner=owner)
    session.commit()
    stub = stack["stub"]

    fault = {
        "event_id": "e2e-fault-1",
        "device_id": device.device_id,
        "error_code": 14,
        "occurred_at": datetime.now(UTC).isoformat(),
        "message": "Boiler pressure low",
    }
    response = post(f"{stack['receiver']}/webhooks/iot/faults", fault, IOT_SECRET)
    assert response.status_code == 202

    [sms] = wait_until(stub.twilio_messages, 120, "the SMS at the Twilio stub")
    case = session.scalars(select(Case).where(Case.device_id == device.device_id)).one()
    session.commit()
    assert sms.form["To"] == "+306912345678"
    assert case.ticket_number in sms.form["Body"]
    assert f"/track/{case.ticket_number}?t={case.tracking_token}" in sms.form["Body"]

    change = {
        "event_id": "e2e-status-1",
        "ticket_number": case.ticket_number,
        "status": "resolved",
        "resolution": "We replaced the pressure sensor.",
        "changed_at": datetime.now(UTC).isoformat(),
    }
    assert post(f"{stack['receiver']}/webhooks/cases/status", change, CASES_SECRET).status_code == 202
    [mail] = wait_until(stub.sendgrid_mails, 120, "the email at the SendGrid stub")
    assert mail.json["personalizations"][0]["to"][0]["email"] == owner.email
    assert "We replaced the pressure sensor." in mail.json["content"][0]["value"]

    page = httpx.get(f"{stack['receiver']}/track/{case.ticket_number}", params={"t": case.tracking_token})
    assert page.status_code == 200 and "Resolved" in page.text

    # Whether or not the fault was announced (only rows still pending after the announce interval are) and a
    # triggered run started, nothing is sent twice. Triggers without a drain loop: the test below.
    time.sleep(3)
    assert len(stub.twilio_messages()) == 1 and len(stub.sendgrid_mails()) == 1


def test_every_trigger_runs_its_deployment_on_a_server_that_requires_an_auth_string(
    authenticated_stack, session
) -> None:
    stack = authenticated_stack
    prefect, stub = stack["prefect"], stack["stub"]
    assert httpx.post(f"{prefect.base_url}/flow_runs/filter", json={}).status_code == 401  # auth is enforced
    # Only the triggers start runs: the minute sweep, which would drain anything pending, is paused.
    sweep = prefect.get("/deployments/name/inbox-sweep/inbox-sweep").json()
    prefect.post(f"/deployments/{sweep['id']}/pause_deployment").raise_for_status()

    owner = make_contact(session, phone="+306912345678", first_name="Eleni")
    device = make_device(session, owner=owner)
    session.commit()

    # carepath.iot.fault → iot-fault-journey → exactly one SMS at the Twilio stub
    fault = {
        "event_id": "e2e-auth-fault-1",
        "device_id": device.device_id,
        "error_code": 14,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    assert post(f"{stack['receiver']}/webhooks/iot/faults", fault, IOT_SECRET).status_code == 202
    wait_for_run_that_logged(prefect, "iot-fault-journey", "'sms_sent': 1", 240)
    [sms] = stub.twilio_messages()
    assert sms.form["To"] == "+306912345678"
    case = session.scalars(select(Case).where(Case.device_id == device.device_id)).one()
    message = session.scalars(select(Message).where(Message.channel == MessageChannel.SMS)).one()
    session.commit()

    # carepath.case.status_changed → case-status-journey → one email at the SendGrid stub
    change = {
        "event_id": "e2e-auth-status-1",
        "ticket_number": case.ticket_number,
        "status": "resolved",
        "resolution": "We replaced the pressure sensor.",
        "changed_at": datetime.now(UTC).isoformat(),
    }
    assert post(f"{stack['receiver']}/webhooks/cases/status", change, CASES_SECRET).status_code == 202
    wait_for_run_that_logged(prefect, "case-status-journey", "'emails_sent': 1", 240)
    [mail] = stub.sendgrid_mails()
    assert mail.json["personalizations"][0]["to"][0]["email"] == owner.email

    # carepath.delivery.twilio_status → delivery-status → the message is delivered
    url = f"{stack['receiver']}/webhooks/twilio/status"
    form = {"MessageSid": message.provider_message_id, "MessageStatus": "delivered", "To": message.to_address}
    response = httpx.post(url, data=form, headers=twilio_headers(url, form, TWILIO_TOKEN), timeout=10)
    assert response.status_code == 202, response.text
    wait_for_run_that_logged(prefect, "delivery-status", "'messages_updated': 1", 240)
    session.expire_all()
    assert session.get(Message, message.id).status is MessageStatus.DELIVERED
    assert len(stub.twilio_messages()) == 1 and len(stub.sendgrid_mails()) == 1


@embedded_only
def test_sigterm_while_the_stack_starts_leaves_nothing_running(tmp_path) -> None:
    """`make serve` stopped while it is still starting (here: once its Prefect server answers, while it deploys)
    stops every process it started; none is left draining or listening."""
    prefect_port, receiver_port = free_port(), free_port()
    env = loopback_env(
        database_url=f"sqlite:///{tmp_path / 'stack.db'}",
        prefect_home=str(tmp_path / "prefect"),
        receiver_port=receiver_port,
        provider_url="http://127.0.0.1:9",
        iot_secret=IOT_SECRET,
        cases_secret=CASES_SECRET,
    )
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            serve_command(prefect_port=prefect_port, receiver_port=receiver_port),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:

            def server_answers() -> bool:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                try:
                    return httpx.get(f"http://127.0.0.1:{prefect_port}/api/health", timeout=1).is_success
                except httpx.HTTPError:
                    return False

            wait_until(server_answers, 240, "the stack's Prefect server")
            proc.terminate()
            proc.wait(60)
            group_left = True
            deadline = time.monotonic() + 30
            while group_left and time.monotonic() < deadline:
                try:
                    os.killpg(proc.pid, 0)  # is any process of the stack still there?
                    time.sleep(0.2)
                except ProcessLookupError:
                    group_left = False
            assert not group_left, "a process the stack started outlived it"
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
