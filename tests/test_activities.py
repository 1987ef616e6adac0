"""Activities from the command line and the Prefect UI: add, close or cancel, a person's reply through the
outbox (once, consent honoured), the timeline of a case and of a customer. Real database, SDKs at the stub."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest
from sqlalchemy import select

from cli.commands import main as cli
from flows.activities import add_activity_flow, reply_to_customer_flow
from models import (
    Activity,
    ActivityDirection,
    ActivityState,
    Agent,
    Case,
    CaseStatus,
    ConsentStatus,
    Message,
    MessageStatus,
)
from tests.utils.factories import make_account, make_case, make_contact
from tests.utils.flows import completed

pytestmark = pytest.mark.usefixtures("prefect_server")

AGENT = "sofia@carepath.example"


def run(*argv: str) -> tuple[int, dict | None, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli(list(argv))
        except SystemExit as exc:  # argparse's refusals
            code = exc.code
    lines = out.getvalue().strip().splitlines()
    return code, json.loads(lines[-1]) if code == 0 and lines else None, err.getvalue()


@pytest.fixture()
def case(session) -> Case:
    session.add(Agent(name="Sofia Georgiou", email=AGENT))
    case = make_case(session)
    session.commit()
    return case


def test_add_an_activity_with_everything_and_see_it_on_the_case(session, case) -> None:
    code, out, _ = run(
        "activity", "add", case.ticket_number, "--type", "task", "--subject", "Order a new valve",
        "--body", "Part 7-113", "--due", "2026-12-07T15:00:00+02:00", "--direction", "outbound",
        "--agent", AGENT.upper(), "--json",
    )  # fmt: skip

    assert code == 0
    assert out == {
        "id": out["id"],
        "ticket": case.ticket_number,
        "type": "task",
        "state": "open",
        "subject": "Order a new valve",
        "direction": "outbound",
        "due": "2026-12-07T13:00:00+00:00",
        "agent": AGENT,
        "first_response": False,
    }
    stored = session.get(Activity, out["id"])
    assert (stored.state, stored.direction, stored.automatic) == (
        ActivityState.OPEN,
        ActivityDirection.OUTBOUND,
        False,
    )
    session.commit()
    _, shown, _ = run("show-case", case.ticket_number, "--json")
    assert [{k: a[k] for k in ("type", "state", "subject")} for a in shown["activities"]] == [
        {"type": "task", "state": "open", "subject": "Order a new valve"}
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("activity", "add", "CAS-00000-00000", "--type", "note", "--subject", "x"),
            "no case CAS-00000-00000",
        ),
        (("activity", "add", "{ticket}", "--type", "fax", "--subject", "x"), "unknown activity type 'fax'"),
        (("activity", "add", "{ticket}", "--type", "note", "--subject", "x", "--due", "soon"), "ISO 8601"),
        (
            ("activity", "add", "{ticket}", "--type", "note", "--subject", "x", "--direction", "up"),
            "direction",
        ),
        (
            ("activity", "add", "{ticket}", "--type", "note", "--subject", "x", "--agent", "who@x.test"),
            "no agent",
        ),
        (("activity", "close", "999999"), "no activity 999999"),
        (("timeline", "NOBODY-1"), "no case, account or contact 'NOBODY-1'"),
        (("timeline", "nobody@nowhere.test"), "no contact with email nobody@nowhere.test"),
        (("reply", "CAS-00000-00000", "--channel", "email", "--text", "Hi", "--agent", AGENT), "no case"),
        (("reply", "{ticket}", "--channel", "email", "--text", "Hi", "--agent", "who@x.test"), "no agent"),
        (
            ("reply", "{ticket}", "--channel", "fax", "--text", "Hi", "--agent", AGENT),
            "invalid choice: 'fax'",
        ),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(session, case, argv, message) -> None:
    code, out, err = run(*(a.format(ticket=case.ticket_number) for a in argv), "--json")

    assert code not in (0, None) and out is None
    assert message in err
    session.expire_all()
    assert session.scalars(select(Activity)).all() == [] and session.scalars(select(Message)).all() == []
    session.commit()


def test_close_completes_or_cancels_once_and_resolve_counts_only_open_ones(session, case) -> None:
    ids = [
        run(
            "activity", "add", case.ticket_number, "--type", "phone_call", "--subject", f"Call {n}", "--json"
        )[1]["id"]
        for n in range(3)
    ]

    assert run("activity", "close", str(ids[0]), "--json")[1]["state"] == "completed"
    assert run("activity", "close", str(ids[1]), "--cancel", "--json")[1]["state"] == "cancelled"
    code, _, err = run("activity", "close", str(ids[0]), "--cancel", "--json")
    assert code == 1 and "already completed" in err

    code, _, err = run("resolve", case.ticket_number, "--resolution", "Fixed", "--minutes", "5", "--json")
    assert code == 1 and "Call 2" in err and "Call 0" not in err and "Call 1" not in err
    run("activity", "close", str(ids[2]), "--json")
    code, out, _ = run("resolve", case.ticket_number, "--resolution", "Fixed", "--minutes", "5", "--json")
    assert code == 0 and out["status"] == "resolved"
    session.expire_all()
    assert session.get(Case, case.id).status is CaseStatus.RESOLVED
    session.commit()


def test_a_reply_goes_through_the_outbox_once_with_an_outbound_activity(session, providers, case) -> None:
    argv = ("reply", case.ticket_number, "--channel", "email", "--text", "A technician comes on Monday.")
    code, first, _ = run(*argv, "--agent", AGENT, "--json")
    again, second, _ = run(*argv, "--agent", AGENT, "--json")  # the same reply asked for twice

    assert (code, again) == (0, 0)
    assert first["status"] == "queued" and second["status"] == "already_sent"
    assert second["activity_id"] == first["activity_id"]
    mails = providers.sendgrid_mails()
    assert len(mails) == 1
    assert mails[0].json["personalizations"][0]["to"][0]["email"] == case.contact.email
    assert "A technician comes on Monday." in json.dumps(mails[0].json)
    activity = session.get(Activity, first["activity_id"])
    message = session.get(Message, first["message_id"])
    assert activity.message_id == message.id and message.status is MessageStatus.SENT
    assert (activity.type.value, activity.state, activity.direction, activity.automatic) == (
        "email",
        ActivityState.COMPLETED,
        ActivityDirection.OUTBOUND,
        False,
    )
    assert session.scalar(select(Agent.email).where(Agent.id == activity.agent_id)) == AGENT
    session.commit()

    # A different request id is a different reply, even with the same words.
    code, third, _ = run(*argv, "--agent", AGENT, "--request-id", "second-visit", "--json")
    assert code == 0 and third["status"] == "queued" and len(providers.sendgrid_mails()) == 2


def test_an_sms_reply_honours_consent(session, providers) -> None:
    session.add(Agent(name="Sofia Georgiou", email=AGENT))
    opted_out = make_contact(session, account=make_account(session), sms_consent=ConsentStatus.OPTED_OUT)
    case = make_case(session, contact=opted_out)
    session.commit()

    code, out, _ = run(
        "reply", case.ticket_number, "--channel", "sms", "--text", "On our way", "--agent", AGENT, "--json"
    )

    assert code == 0 and out["status"] == "blocked" and "opted out" in out["reason"]
    assert out["first_response"] is False
    assert providers.twilio_messages() == []
    activity = session.get(Activity, out["activity_id"])
    assert session.get(Message, activity.message_id).status is MessageStatus.BLOCKED
    session.expire_all()
    assert session.get(Case, case.id).first_response_at is None
    session.commit()


def test_timeline_per_case_account_and_contact_newest_first(session, providers, case) -> None:
    other = make_case(session, contact=case.contact)  # the same customer's second case
    account_number, email = case.account.account_number, case.contact.email
    session.commit()
    run(
        "activity",
        "add",
        case.ticket_number,
        "--type",
        "note",
        "--subject",
        "Spoke to the installer",
        "--json",
    )
    run("reply", case.ticket_number, "--channel", "sms", "--text", "On our way", "--agent", AGENT, "--json")
    run(
        "activity",
        "add",
        other.ticket_number,
        "--type",
        "phone_call",
        "--direction",
        "inbound",
        "--subject",
        "Second fault",
        "--closed",
        "--json",
    )

    _, by_ticket, _ = run("timeline", case.ticket_number, "--json")
    _, by_account, _ = run("timeline", account_number, "--json")
    _, by_contact, _ = run("timeline", email.upper(), "--json")

    entries = by_ticket["timeline"]
    assert [(e["kind"], e["type"], e["subject"]) for e in entries] == [
        ("activity", "sms", "On our way"),
        ("activity", "note", "Spoke to the installer"),
        ("status_change", "active", "opened (active)"),
    ]
    reply = entries[0]
    assert (reply["state"], reply["direction"], reply["case"], reply["delivery_status"]) == (
        "completed",
        "outbound",
        case.ticket_number,
        "sent",
    )
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)
    for whole in (by_account, by_contact):
        assert {e["case"] for e in whole["timeline"]} == {case.ticket_number, other.ticket_number}
        assert whole["timeline"][0]["subject"] == "Second fault"
        assert len(whole["timeline"]) == 5


def test_add_activity_and_reply_flows_from_the_ui(session, providers, case) -> None:
    added = completed(
        add_activity_flow, ticket=case.ticket_number, type="phone_call", subject="Called back",
        direction="outbound", agent=AGENT, closed=True,
    )  # fmt: skip
    replied = completed(
        reply_to_customer_flow,
        ticket=case.ticket_number,
        channel="email",
        text="Fixed remotely.",
        agent=AGENT,
    )

    assert added["state"] == "completed" and added["first_response"] is True
    assert replied["status"] == "queued" and replied["first_response"] is False  # the call came first
    assert len(providers.sendgrid_mails()) == 1
    state = add_activity_flow(ticket="CAS-00000-00000", type="note", subject="x", return_state=True)
    assert state.is_failed() and "no case CAS-00000-00000" in str(state.message)
