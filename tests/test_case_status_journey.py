"""Case status journey: every change kept in history; resolved → one email, whatever retries happen."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from flows.case_status_journey import case_status_journey
from models import (
    Case,
    CaseStatus,
    CaseStatusChange,
    Channel,
    ConsentStatus,
    Entitlement,
    EntitlementUse,
    InboxEvent,
    InboxState,
    Message,
    MessageChannel,
    MessageStatus,
    Priority,
    ResolutionActivity,
)
from tasks.case_status import change_case_status
from tasks.messaging import set_consent
from tests.utils.databases import BACKEND
from tests.utils.factories import make_account, make_contact, make_entitlement
from tests.utils.flows import completed
from tests.utils.signing import CASES_SECRET, carepath_headers

pytestmark = pytest.mark.usefixtures("prefect_server")


def make_case(session, *, language: str = "en", entitlement: bool = True) -> Case:
    account = make_account(session)
    contact = make_contact(session, account=account, language=language)
    ent = make_entitlement(session, account=account) if entitlement else None
    case = Case(
        ticket_number=f"CAS-TEST{contact.id:01d}-00001"[:20],
        title="Boiler pressure low",
        account_id=account.id,
        contact_id=contact.id,
        priority=Priority.CRITICAL,
        origin=Channel.IOT,
        tracking_token=f"token-{contact.id}-abcdefghijklmnopqrstuvwxyz",
        entitlement_id=ent.id if ent else None,
    )
    session.add(case)
    session.flush()
    session.add(CaseStatusChange(case_id=case.id, to_status=CaseStatus.ACTIVE, source="test"))
    session.commit()
    return case


def run(**kw):
    return completed(case_status_journey, **kw)


def test_resolving_through_carepath_emails_the_customer_once(session, providers) -> None:
    case = make_case(session)
    change_case_status(
        session=session,
        case=case,
        to_status=CaseStatus.RESOLVED,
        source="agent",
        resolution="Replaced the pressure sensor.",
        time_spent_minutes=45,
    )
    session.commit()

    figures = run()
    run()  # a re-run finds nothing new

    [mail] = providers.sendgrid_mails()
    body = mail.json
    assert body["personalizations"][0]["to"][0]["email"] == case.contact.email
    assert body["subject"] == f"Your case {case.ticket_number} has been resolved"
    text = body["content"][0]["value"]
    assert "Replaced the pressure sensor." in text
    assert f"/track/{case.ticket_number}?t={case.tracking_token}" in text
    assert mail.headers["authorization"] == "Bearer SG.test-key"
    message = session.scalars(select(Message)).one()
    assert (message.channel, message.status, message.provider) == (
        MessageChannel.EMAIL,
        MessageStatus.SENT,
        "sendgrid",
    )
    assert message.provider_message_id == mail.response["x_message_id"]
    assert figures["emails_sent"] == 1
    session.refresh(case)
    assert case.status is CaseStatus.RESOLVED and case.resolved_at is not None
    history = session.scalars(
        select(CaseStatusChange.to_status).where(CaseStatusChange.case_id == case.id)
    ).all()
    assert history == [CaseStatus.ACTIVE, CaseStatus.RESOLVED]
    resolution = session.scalars(select(ResolutionActivity)).one()
    assert (resolution.resolution, resolution.time_spent_minutes) == ("Replaced the pressure sensor.", 45)


def test_resolving_uses_one_case_of_the_entitlement(session) -> None:
    case = make_case(session)
    change_case_status(session=session, case=case, to_status=CaseStatus.RESOLVED, source="agent")
    session.commit()
    assert session.get(Entitlement, case.entitlement_id).remaining == 14
    change_case_status(session=session, case=case, to_status=CaseStatus.ACTIVE, source="agent")  # reopened
    session.commit()
    session.expire_all()
    assert session.get(Entitlement, case.entitlement_id).remaining == 15


def test_other_transitions_send_nothing_by_default_and_are_configurable(
    session, providers, monkeypatch
) -> None:
    case = make_case(session)
    change_case_status(session=session, case=case, to_status=CaseStatus.CANCELLED, source="agent")
    session.commit()
    assert run()["changes_recorded"] == 1
    assert providers.sendgrid_mails() == []

    from carepath.settings import reset_settings

    monkeypatch.setenv("CAREPATH_CASE_STATUS_NOTIFY", '["resolved", "active"]')
    reset_settings()
    change_case_status(session=session, case=case, to_status=CaseStatus.ACTIVE, source="agent")
    session.commit()
    run()
    [mail] = providers.sendgrid_mails()
    assert "in progress" in mail.json["subject"]


def test_email_opt_out_blocks_the_email_with_a_reason(session, providers) -> None:
    case = make_case(session)
    set_consent(
        session=session,
        contact_id=case.contact_id,
        channel=MessageChannel.EMAIL,
        status=ConsentStatus.OPTED_OUT,
        source="test",
    )
    change_case_status(session=session, case=case, to_status=CaseStatus.RESOLVED, source="agent")
    session.commit()
    run()
    message = session.scalars(select(Message)).one()
    assert (
        message.status is MessageStatus.BLOCKED
        and message.status_reason == "consent: contact opted out of email"
    )
    assert providers.sendgrid_mails() == []


def test_language_follows_the_contact(session, providers) -> None:
    case = make_case(session, language="it")
    change_case_status(session=session, case=case, to_status=CaseStatus.RESOLVED, source="agent")
    session.commit()
    run()
    assert (
        providers.sendgrid_mails()[0].json["subject"] == f"Il suo caso {case.ticket_number} è stato risolto"
    )


def test_status_posted_to_the_webhook_is_recorded_and_emailed(session, providers, receiver) -> None:
    case = make_case(session)
    change = {
        "event_id": "ext-1",
        "ticket_number": case.ticket_number,
        "status": "resolved",
        "resolution": "Firmware 2.1 fixes the sensor reading.",
        "changed_at": datetime.now(UTC).isoformat(),
        "source_system": "field-service",
    }
    for _ in range(2):  # the other system retries its webhook
        body = json.dumps(change).encode()
        assert (
            receiver.post(
                "/webhooks/cases/status", content=body, headers=carepath_headers(CASES_SECRET, body)
            ).status_code
            == 202
        )
    session.commit()

    run()
    run()

    session.expire_all()
    assert session.get(Case, case.id).status is CaseStatus.RESOLVED
    last = session.scalars(select(CaseStatusChange).order_by(CaseStatusChange.id.desc())).first()
    assert (last.to_status, last.source) == (CaseStatus.RESOLVED, "webhook:field-service")
    [mail] = providers.sendgrid_mails()
    assert "Firmware 2.1 fixes the sensor reading." in mail.json["content"][0]["value"]
    assert session.scalar(select(func.count()).select_from(InboxEvent)) == 1


def test_unknown_ticket_fails_with_a_reason(session, providers, receiver) -> None:
    change = {
        "event_id": "ext-2",
        "ticket_number": "CAS-NOPE",
        "status": "resolved",
        "changed_at": datetime.now(UTC).isoformat(),
    }
    body = json.dumps(change).encode()
    receiver.post("/webhooks/cases/status", content=body, headers=carepath_headers(CASES_SECRET, body))
    run()
    session.expire_all()
    event = session.scalars(select(InboxEvent)).one()
    assert event.state is InboxState.FAILED and "unknown ticket 'CAS-NOPE'" in event.error


def test_a_retried_send_never_emails_twice(session, providers) -> None:
    case = make_case(session)
    change_case_status(session=session, case=case, to_status=CaseStatus.RESOLVED, source="agent")
    session.commit()
    providers.fail_next("sendgrid", status=500)
    run()
    assert [r.status for r in providers.requests] == [500, 202]
    assert len(providers.sendgrid_mails()) == 1


def test_resolving_again_with_another_reason_uses_no_second_term_and_sends_no_second_email(
    session, providers
) -> None:
    case = make_case(session)
    change_case_status(session=session, case=case, to_status=CaseStatus.RESOLVED, source="agent")
    session.commit()
    run()
    again = change_case_status(
        session=session,
        case=case,
        to_status=CaseStatus.RESOLVED,
        status_reason="information_provided",
        source="agent",
    )
    session.commit()
    run()

    assert again is None
    assert session.get(Entitlement, case.entitlement_id).remaining == 14  # 15 → 14, never 13
    assert len(providers.sendgrid_mails()) == 1
    history = session.execute(
        select(CaseStatusChange.to_status, CaseStatusChange.status_reason)
        .where(CaseStatusChange.case_id == case.id)
        .order_by(CaseStatusChange.id)
    ).all()
    assert history[-1] == (CaseStatus.RESOLVED, "information_provided")  # the reason change is kept
    assert session.scalar(select(func.count()).select_from(EntitlementUse)) == 1
    session.commit()


def test_resolve_reopen_resolve_uses_one_term_at_a_time(session) -> None:
    case = make_case(session)
    for status in (CaseStatus.RESOLVED, CaseStatus.ACTIVE, CaseStatus.RESOLVED, CaseStatus.RESOLVED):
        change_case_status(session=session, case=case, to_status=status, source="agent")
        session.commit()
    session.expire_all()
    assert session.get(Entitlement, case.entitlement_id).remaining == 14
    uses = session.execute(select(EntitlementUse.returned_at).order_by(EntitlementUse.id)).scalars().all()
    assert len(uses) == 2 and uses[0] is not None and uses[1] is None  # one returned, one held
    session.commit()


@pytest.mark.skipif(BACKEND != "postgresql", reason="SQLite's BEGIN IMMEDIATE already queues writers")
def test_two_workers_racing_on_the_same_resolution_use_one_term(session) -> None:
    """Both apply "resolved" to the same case at once: the case's row lock and the ledger's unique index
    decide, so one term is used and one transition recorded."""
    import threading

    from carepath.db import get_sessionmaker

    case = make_case(session)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def resolve() -> None:
        try:
            with get_sessionmaker()() as s, s.begin():
                mine = s.get(Case, case.id)
                barrier.wait(5)
                change_case_status(session=s, case=mine, to_status=CaseStatus.RESOLVED, source="worker")
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=resolve) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)

    assert errors == []
    session.expire_all()
    assert session.get(Entitlement, case.entitlement_id).remaining == 14
    resolved = session.scalar(
        select(func.count()).where(
            CaseStatusChange.case_id == case.id, CaseStatusChange.to_status == CaseStatus.RESOLVED
        )
    )
    assert resolved == 1
    session.commit()


def test_the_ledger_refuses_a_second_open_use_for_a_case(session) -> None:
    """The database itself holds the rule, whatever code writes to it."""
    from sqlalchemy.exc import IntegrityError

    case = make_case(session)
    session.add(EntitlementUse(entitlement_id=case.entitlement_id, case_id=case.id))
    session.commit()
    session.add(EntitlementUse(entitlement_id=case.entitlement_id, case_id=case.id))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def _resolve_cli(*args: str) -> tuple[int, dict | None, str]:
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from cli.commands import main as cli

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli(["resolve", *args])
    lines = out.getvalue().strip().splitlines()
    return code, (json.loads(lines[-1]) if code == 0 and lines else None), err.getvalue()


def test_resolve_command_takes_15_to_14_once_and_tells_the_customer(session, providers) -> None:
    case = make_case(session)

    code, out, _ = _resolve_cli(
        case.ticket_number, "--resolution", "Valve replaced", "--minutes", "40", "--json"
    )
    again, out_again, _ = _resolve_cli(
        case.ticket_number, "--resolution", "Again", "--minutes", "5", "--json"
    )
    run()

    assert code == 0 and out == {
        "ticket": case.ticket_number,
        "status": "resolved",
        "entitlement_remaining": 14,
    }
    assert again == 0 and out_again == out  # nothing changed
    activity = session.scalars(select(ResolutionActivity).where(ResolutionActivity.case_id == case.id)).one()
    assert (activity.resolution, activity.time_spent_minutes) == ("Valve replaced", 40)
    session.commit()
    assert len(providers.sendgrid_mails()) == 1


def test_open_activities_refuse_a_resolution_unless_closed(session) -> None:
    from models import Activity, ActivityState, ActivityType

    case = make_case(session)
    session.add(Activity(case_id=case.id, type=ActivityType.PHONE_CALL, subject="Call back about the valve"))
    session.commit()

    code, out, err = _resolve_cli(case.ticket_number, "--resolution", "Fixed", "--minutes", "10", "--json")
    assert code == 1 and out is None
    assert "Call back about the valve" in err and "--close-activities" in err
    session.expire_all()
    assert session.get(Case, case.id).status is CaseStatus.ACTIVE
    session.commit()

    code, out, _ = _resolve_cli(
        case.ticket_number, "--resolution", "Fixed", "--minutes", "10", "--close-activities", "--json"
    )
    assert code == 0 and out["status"] == "resolved"
    session.expire_all()
    assert session.scalars(select(Activity.state).where(Activity.case_id == case.id)).all() == [
        ActivityState.CANCELLED
    ]
    session.commit()


def test_resolve_an_unknown_ticket_is_a_clear_error(engine) -> None:
    code, out, err = _resolve_cli("CAS-00000-00000", "--resolution", "x", "--minutes", "1", "--json")
    assert code == 1 and out is None and "no case CAS-00000-00000" in err


def test_resolve_case_flow_from_the_ui(session, providers) -> None:
    from flows.case_resolution import resolve_case_flow

    case = make_case(session)
    result = completed(
        resolve_case_flow, ticket=case.ticket_number, resolution="Reset the controller", minutes=15
    )

    assert result == {"ticket": case.ticket_number, "status": "resolved", "entitlement_remaining": 14}


def test_entitlements_command_shows_remaining_and_the_ledger(session, capsys) -> None:
    from cli.commands import main as cli
    from models import Account

    case = make_case(session)
    account_number = session.get(Account, case.account_id).account_number
    for status in (CaseStatus.RESOLVED, CaseStatus.ACTIVE, CaseStatus.RESOLVED):
        change_case_status(session=session, case=case, to_status=status, source="agent")
        session.commit()
    capsys.readouterr()

    assert cli(["entitlements", account_number, "--json"]) == 0

    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    [ent] = report["entitlements"]
    assert (ent["allocation"], ent["remaining"]) == (15, 14)
    assert [(r["change"], r["case"]) for r in ent["ledger"]] == [
        (-1, case.ticket_number),
        (1, case.ticket_number),
        (-1, case.ticket_number),
    ]
    assert ent["per_channel"]["iot"] == {"remaining": 14, "used": 1}
    assert cli(["entitlements", "ACC-99999", "--json"]) == 1
    assert "no account ACC-99999" in capsys.readouterr().err
