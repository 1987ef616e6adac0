"""End to end through the served stack on loopback: Prefect server, deployments, worker, receiver, drain loop.

A signed IoT fault posted to the receiver becomes an SMS at the Twilio stub; a case resolved through the
status webhook becomes an email at the SendGrid stub; the fault's Prefect event triggers its deployment.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from deployments.serve import free_port, loopback_env, serve_command
from models import Case
from tests.utils.factories import make_contact, make_device
from tests.utils.signing import CASES_SECRET, IOT_SECRET, carepath_headers

ROOT = Path(__file__).resolve().parent.parent


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture()
def stack(engine, database_url, provider_stub_server, tmp_path) -> Iterator[dict]:
    stub = provider_stub_server
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
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        serve_command(prefect_port=prefect_port, receiver_port=receiver_port),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
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
        wait_until(up, 180, "the stack to come up")
        yield {"receiver": receiver, "prefect": f"http://127.0.0.1:{prefect_port}/api", "stub": stub}
    finally:
        proc.terminate()  # the stack stops its own processes (SIGKILL after a 10-second grace)
        try:
            proc.wait(45)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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

    [sms] = wait_until(stub.twilio_messages, 60, "the SMS at the Twilio stub")
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
    [mail] = wait_until(stub.sendgrid_mails, 60, "the email at the SendGrid stub")
    assert mail.json["personalizations"][0]["to"][0]["email"] == owner.email
    assert "We replaced the pressure sensor." in mail.json["content"][0]["value"]

    page = httpx.get(f"{stack['receiver']}/track/{case.ticket_number}", params={"t": case.tracking_token})
    assert page.status_code == 200 and "Resolved" in page.text

    def triggered_run_completed() -> bool:
        runs = httpx.post(
            f"{stack['prefect']}/flow_runs/filter",
            json={"deployments": {"name": {"any_": ["iot-fault-journey"]}}},
            timeout=5,
        ).json()
        return any(r["state_type"] == "COMPLETED" for r in runs)

    # The fault's Prefect event triggered the deployment (it found the work done by the drain loop).
    wait_until(triggered_run_completed, 90, "a triggered iot-fault-journey run to complete")
    assert len(stub.twilio_messages()) == 1 and len(stub.sendgrid_mails()) == 1
