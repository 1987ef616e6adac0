"""The customer summary: by ticket and by email, from the CLI, as a flow with a markdown artifact, and from the
receiver's API behind a bearer token."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from cli.commands import main
from flows.customer_summary import customer_summary_flow
from models import (
    Activity,
    ActivityType,
    Contact,
    Entitlement,
    KpiInstance,
    KpiState,
    Message,
    MessageChannel,
    MessageStatus,
    Sla,
    SlaKpi,
)
from tasks.customer_summary import UnknownCustomer, customer_summary
from tests.utils.factories import make_account, make_case, make_contact
from tests.utils.flows import completed

KEYS = {"customer", "case", "recent_cases", "timeline", "entitlement", "sla"}
TOKEN = "summary-test-token"


@pytest.fixture()
def story(session: Session) -> dict:
    """A contact with an older and a newer case; the newer has an SLA KPI, an activity and a delivered email."""
    account = make_account(session, domain="helios-energy.gr")
    contact = make_contact(session, account=account)
    entitlement = Entitlement(
        name="Gold support plan",
        account_id=account.id,
        starts_on=date(2026, 1, 1),
        ends_on=date(2026, 12, 31),
        allocation=15,
        remaining=12,
    )
    session.add(entitlement)
    session.flush()
    older = make_case(session, contact=contact, title="Old thermostat question")
    older.created_at = datetime.now(UTC) - timedelta(days=20)
    newer = make_case(
        session, contact=contact, title="Boiler pressure keeps dropping", entitlement_id=entitlement.id
    )
    sla = Sla(name="Gold SLA")
    session.add(sla)
    session.flush()
    kpi = SlaKpi(sla_id=sla.id, kpi="first_response", minutes=60, warn_after_minutes=45)
    session.add(kpi)
    session.flush()
    now = datetime.now(UTC)
    session.add(
        KpiInstance(
            case_id=newer.id,
            sla_kpi_id=kpi.id,
            state=KpiState.IN_PROGRESS,
            warning_at=now + timedelta(minutes=45),
            due_at=now + timedelta(minutes=60),
        )
    )
    message = Message(
        idempotency_key=f"ack-{newer.id}",
        channel=MessageChannel.EMAIL,
        case_id=newer.id,
        contact_id=contact.id,
        journey_step="acknowledgement",
        to_address=contact.email,
        subject="We have your case",
        body="Thank you",
        status=MessageStatus.DELIVERED,
    )
    session.add(message)
    session.flush()
    session.add(
        Activity(
            case_id=newer.id, type=ActivityType.EMAIL, subject="We have your case", message_id=message.id
        )
    )
    session.commit()
    return {
        "contact": contact,
        "older": older.ticket_number,
        "newer": newer.ticket_number,
        "account": account,
    }


def test_by_ticket(session: Session, story: dict) -> None:
    s = customer_summary(session=session, key=f"  {story['newer']} ")
    assert set(s) == KEYS
    assert s["customer"]["contact"]["id"] == story["contact"].id
    assert s["customer"]["account"]["number"] == story["account"].account_number
    assert s["customer"]["email"] == story["contact"].email and s["customer"]["phones"] == ["+306912345678"]
    assert s["customer"]["location"]["country"] == "GR"
    assert s["case"]["ticket"] == story["newer"]
    assert [c["ticket"] for c in s["recent_cases"]] == [story["older"]]
    assert [(e["kind"], e.get("delivery_status")) for e in s["timeline"] if e["kind"] != "status_change"] == [
        ("activity", "delivered")
    ]
    assert (s["entitlement"]["name"], s["entitlement"]["remaining"]) == ("Gold support plan", 12)
    assert [(k["kpi"], k["state"]) for k in s["sla"]] == [("first_response", "in_progress")]


def test_by_email_is_the_most_recent_case_and_case_insensitive(session: Session, story: dict) -> None:
    s = customer_summary(session=session, key=f" {story['contact'].email.upper()} ")
    assert s["case"]["ticket"] == story["newer"]
    assert {e["case"] for e in s["timeline"]} == {story["older"], story["newer"]}


def test_an_email_without_cases_has_no_case(session: Session) -> None:
    contact = make_contact(session)
    session.commit()
    s = customer_summary(session=session, key=contact.email)
    assert (s["case"], s["recent_cases"], s["sla"], s["timeline"]) == (None, [], [], [])


def test_unknown_keys(session: Session) -> None:
    with pytest.raises(UnknownCustomer):
        customer_summary(session=session, key="CAS-NOPE")
    with pytest.raises(UnknownCustomer):
        customer_summary(session=session, key="nobody@nowhere.example")


def test_cli(session: Session, story: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", story["newer"], "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == KEYS
    assert main(["summary", "CAS-NOPE", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "no case CAS-NOPE" in captured.err


@pytest.mark.usefixtures("prefect_server")
def test_flow_publishes_markdown(session: Session, story: dict) -> None:
    from prefect.artifacts import Artifact

    result = completed(customer_summary_flow, key=story["contact"].email)
    assert set(result) == KEYS
    artifact = Artifact.get("customer-summary")
    assert artifact is not None and story["newer"] in artifact.data and "delivered" in artifact.data


@pytest.fixture()
def summary_token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CAREPATH_SUMMARY_API_TOKEN", TOKEN)
    return TOKEN


def test_api(summary_token: str, receiver, story: dict) -> None:
    url = "/customers/summary"
    assert receiver.get(url, params={"key": story["newer"]}).status_code == 401
    bad = {"Authorization": "Bearer wrong"}
    assert receiver.get(url, params={"key": story["newer"]}, headers=bad).status_code == 401
    auth = {"Authorization": f"Bearer {summary_token}"}
    ok = receiver.get(url, params={"key": story["newer"]}, headers=auth)
    assert ok.status_code == 200 and ok.json()["case"]["ticket"] == story["newer"]
    missing = receiver.get(url, params={"key": "nobody@nowhere.example"}, headers=auth)
    assert missing.status_code == 404 and "nobody@nowhere.example" in missing.json()["detail"]


def test_api_refuses_everyone_without_a_configured_token(receiver, story: dict) -> None:
    r = receiver.get(
        "/customers/summary", params={"key": story["newer"]}, headers={"Authorization": "Bearer "}
    )
    assert r.status_code == 401


def test_merged_contacts_lose_to_the_live_one(session: Session) -> None:
    live = make_contact(session)
    old = Contact(first_name="Old", last_name="Copy", email=live.email.upper(), account_id=live.account_id)
    old.active, old.merged_into_id = False, live.id
    session.add(old)
    session.commit()
    assert customer_summary(session=session, key=live.email)["customer"]["contact"]["id"] == live.id
