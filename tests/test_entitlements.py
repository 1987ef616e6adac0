"""Entitlements against a real database: terms used on creation or resolution on every creation path,
given back and taken again with the case's status, "do not decrement", channels with their own allocation,
restriction at zero (email and IoT), states that follow the dates, and a ledger row for every change."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from sqlalchemy import func, select

from carepath.rules.faults import FaultRules
from carepath.settings import get_settings
from cli.commands import main as cli
from models import (
    Account,
    Case,
    CaseStatus,
    DecreaseRemainingOn,
    Entitlement,
    EntitlementChannel,
    EntitlementLedger,
    EntitlementState,
    InboxEvent,
    InboxState,
    Message,
)
from tasks.case_status import change_case_status
from tasks.email_to_case import email_in
from tasks.entitlement_terms import refresh_entitlement_states, set_allocation, set_do_not_decrement
from tasks.faults import drain_one_batch
from tasks.ingest import store_fault_events
from tests.utils.factories import (
    fault_event,
    make_account,
    make_case,
    make_contact,
    make_device,
    make_entitlement,
)

ON_CREATION = DecreaseRemainingOn.CASE_CREATION


def ledger(session, ent_id: int) -> list[tuple[int, int, str]]:
    rows = session.execute(
        select(EntitlementLedger.change, EntitlementLedger.remaining_after, EntitlementLedger.reason)
        .where(EntitlementLedger.entitlement_id == ent_id)
        .order_by(EntitlementLedger.id)
    ).all()
    session.commit()  # end the read: on SQLite it holds the one writer's lock
    return [tuple(r) for r in rows]


def remaining(session, ent_id: int) -> int:
    # A query, not an expired object: refreshing one later would open a transaction (SQLite's write lock).
    n = session.scalar(select(Entitlement.remaining).where(Entitlement.id == ent_id))
    session.commit()
    return n


def send_email(tmp_path, sender: str):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "support@carepath.example", "Heating is off"
    msg["Message-ID"] = make_msgid(domain="mail.example")
    msg.set_content("No heating since this morning.")
    path = tmp_path / f"{abs(hash(msg['Message-ID']))}.eml"
    path.write_bytes(bytes(msg))
    return email_in(path=path, settings=get_settings())


def drain(session, *devices) -> None:
    store_fault_events(session=session, events=[fault_event(d.device_id, 14) for d in devices])
    session.commit()
    drain_one_batch(
        rules=FaultRules(threshold=10, window=timedelta(minutes=60), min_count=1),
        batch_size=100,
        settings=get_settings(),
    )


def move(session, case: Case, to: CaseStatus) -> None:
    change_case_status(session=session, case=case, to_status=to, source="agent", emit=False)
    session.commit()


# --- decrease on creation, on every creation path ----------------------------------------------------------


def test_an_email_case_uses_a_term_when_created_and_cancel_reactivate_give_it_back_and_take_it(
    session, providers, tmp_path
) -> None:
    account = make_account(session)
    contact = make_contact(session, account=account)
    ent = make_entitlement(session, account=account, decrease_remaining_on=ON_CREATION)
    session.commit()

    run = send_email(tmp_path, contact.email)
    [outcome] = run.outcomes
    case = session.scalars(select(Case).where(Case.ticket_number == outcome.ticket)).one()
    assert remaining(session, ent.id) == 14

    move(session, case, CaseStatus.RESOLVED)  # creation already used the term
    assert remaining(session, ent.id) == 14
    move(session, case, CaseStatus.CANCELLED)
    assert remaining(session, ent.id) == 15
    move(session, case, CaseStatus.ACTIVE)
    assert remaining(session, ent.id) == 14
    assert ledger(session, ent.id) == [
        (-1, 14, "case created"),
        (1, 15, "case cancelled"),
        (-1, 14, "case reactivated"),
    ]


def test_iot_cases_use_terms_on_creation_set_based_and_the_ledger_names_each_case(session, providers) -> None:
    account = make_account(session)
    ent = make_entitlement(session, account=account, decrease_remaining_on=ON_CREATION)
    devices = [make_device(session, owner=make_contact(session, account=account)) for _ in range(3)]
    session.commit()

    drain(session, *devices)

    assert remaining(session, ent.id) == 12
    rows = session.execute(
        select(EntitlementLedger.change, EntitlementLedger.remaining_after, Case.device_id)
        .join(Case, Case.id == EntitlementLedger.case_id)
        .order_by(EntitlementLedger.id)
    ).all()
    assert [(r[0], r[1]) for r in rows] == [(-1, 14), (-1, 13), (-1, 12)]
    assert sorted(r[2] for r in rows) == sorted(d.device_id for d in devices)


def test_on_resolution_creation_uses_nothing_and_a_repeated_resolution_uses_one_term(session) -> None:
    account = make_account(session)
    ent = make_entitlement(session, account=account)
    case = make_case(session, contact=make_contact(session, account=account), entitlement_id=ent.id)
    session.commit()
    assert remaining(session, ent.id) == 15

    for _ in range(3):
        move(session, case, CaseStatus.RESOLVED)
    assert remaining(session, ent.id) == 14
    move(session, case, CaseStatus.ACTIVE)
    move(session, case, CaseStatus.CANCELLED)  # from active: it holds no term, nothing to give back
    assert remaining(session, ent.id) == 15
    assert ledger(session, ent.id) == [(-1, 14, "case resolved"), (1, 15, "case reopened")]


# --- do not decrement ---------------------------------------------------------------------------------------


def test_do_not_decrement_gives_back_the_term_and_the_case_then_uses_none(session, capsys) -> None:
    account = make_account(session)
    ent = make_entitlement(session, account=account)
    case = make_case(session, contact=make_contact(session, account=account), entitlement_id=ent.id)
    session.commit()
    move(session, case, CaseStatus.RESOLVED)
    capsys.readouterr()

    assert cli(["set-case", case.ticket_number, "--do-not-decrement", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out == {
        "ticket": case.ticket_number,
        "do_not_decrement": True,
        "changed": True,
        "entitlement_remaining": 15,
    }
    move(session, case, CaseStatus.ACTIVE)
    move(session, case, CaseStatus.RESOLVED)  # uses no term now
    assert remaining(session, ent.id) == 15

    assert set_do_not_decrement(
        session=session, case=case, do_not_decrement=False
    )  # resolved: takes it again
    session.commit()
    assert remaining(session, ent.id) == 14
    assert ledger(session, ent.id) == [
        (-1, 14, "case resolved"),
        (1, 15, "do not decrement set"),
        (-1, 14, "do not decrement cleared"),
    ]
    assert cli(["set-case", "CAS-00000-00000", "--do-not-decrement"]) == 1


def test_do_not_decrement_on_a_case_that_took_its_term_on_creation(session) -> None:
    account = make_account(session)
    ent = make_entitlement(session, account=account, decrease_remaining_on=ON_CREATION)
    case = make_case(session, contact=make_contact(session, account=account), entitlement_id=ent.id)
    session.commit()
    move(session, case, CaseStatus.CANCELLED)
    move(session, case, CaseStatus.ACTIVE)  # takes the term (creation's was not recorded by the factory)
    assert remaining(session, ent.id) == 14

    assert set_do_not_decrement(session=session, case=case, do_not_decrement=True)
    session.commit()
    assert not set_do_not_decrement(session=session, case=case, do_not_decrement=True)  # already so
    session.commit()
    move(session, case, CaseStatus.CANCELLED)
    move(session, case, CaseStatus.ACTIVE)
    assert remaining(session, ent.id) == 15


# --- restriction at zero, and channels with their own allocation -------------------------------------------


@pytest.mark.parametrize("restrict", [True, False])
def test_iot_at_zero_restricts_only_when_it_says_so_and_the_fault_is_kept(
    session, providers, restrict
) -> None:
    account = make_account(session)
    ent = make_entitlement(
        session, account=account, decrease_remaining_on=ON_CREATION, restrict_case_creation=restrict
    )
    ent.remaining = 0
    device = make_device(session, owner=make_contact(session, account=account))
    session.commit()

    drain(session, device)

    cases = session.scalars(select(Case)).all()
    inbox = session.scalars(select(InboxEvent).where(InboxEvent.kind == "fault")).one()
    if restrict:
        assert cases == []
        assert session.scalar(select(func.count()).select_from(Message)) == 0  # no SMS
        assert inbox.state is InboxState.FAILED
        assert f"«{ent.name}»" in inbox.error and "iot channel" in inbox.error
        assert "0 of 15 cases left" in inbox.error and "restricts case creation" in inbox.error
        assert ledger(session, ent.id) == []
    else:
        [case] = cases
        assert case.entitlement_id == ent.id and inbox.state is InboxState.PROCESSED
        assert remaining(session, ent.id) == 0  # never below zero
        assert ledger(session, ent.id) == [(0, 0, "no term left: case created")]


def test_a_channels_own_allocation_runs_out_while_the_total_remains(session, providers, tmp_path) -> None:
    account = make_account(session)
    contact = make_contact(session, account=account)
    ent = make_entitlement(
        session,
        account=account,
        decrease_remaining_on=ON_CREATION,
        restrict_case_creation=True,
        channel_allocations={"iot": 1},
    )
    devices = [make_device(session, owner=make_contact(session, account=account)) for _ in range(2)]
    session.commit()

    drain(session, *devices)

    assert session.scalar(select(func.count()).select_from(Case)) == 1
    [error] = session.scalars(select(InboxEvent.error).where(InboxEvent.state == InboxState.FAILED)).all()
    assert "0 of 1 cases left on the iot channel (14 of 15 overall)" in error
    session.commit()
    own = session.scalars(select(EntitlementChannel)).one()
    assert (own.remaining, remaining(session, ent.id)) == (0, 14)

    send_email(tmp_path, contact.email)  # email has no own allocation: it shares the total
    assert remaining(session, ent.id) == 13

    session.commit()
    assert cli(["entitlements", session.get(Account, account.id).account_number, "--json"]) == 0


def test_email_at_zero_on_its_own_channel_names_the_channel(session, providers, tmp_path) -> None:
    account = make_account(session)
    contact = make_contact(session, account=account)
    ent = make_entitlement(
        session, account=account, restrict_case_creation=True, channel_allocations={"email": 2}
    )
    session.execute(
        EntitlementChannel.__table__.update()
        .where(EntitlementChannel.entitlement_id == ent.id)
        .values(remaining=0)
    )
    session.commit()

    run = send_email(tmp_path, contact.email)

    assert run.outcomes == []
    assert "0 of 2 cases left on the email channel (15 of 15 overall)" in run.refused[0]


def test_report_shows_remaining_per_channel_and_the_ledger(session, providers, capsys) -> None:
    account = make_account(session)
    ent = make_entitlement(
        session, account=account, decrease_remaining_on=ON_CREATION, channel_allocations={"iot": 5}
    )
    device = make_device(session, owner=make_contact(session, account=account))
    session.commit()
    drain(session, device)
    case = session.scalars(select(Case)).one()
    set_allocation(session=session, entitlement_id=ent.id, allocation=20)
    session.commit()
    capsys.readouterr()

    assert cli(["entitlements", account.account_number, "--json"]) == 0

    [e] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["entitlements"]
    assert (e["allocation"], e["remaining"], e["decrease_remaining_on"]) == (20, 19, "case_creation")
    assert e["per_channel"]["iot"] == {"remaining": 4, "used": 1, "allocation": 5}
    assert e["per_channel"]["email"] == {"remaining": 19, "used": 0}
    assert [(r["change"], r["reason"], r["case"], r["channel"]) for r in e["ledger"]] == [
        (-1, "case created", case.ticket_number, "iot"),
        (5, "allocation changed 15 → 20", None, None),
    ]


def test_set_allocation_from_the_cli_moves_remaining_and_refuses_bad_input(session, capsys) -> None:
    account = make_account(session)
    ent = make_entitlement(session, account=account, channel_allocations={"phone": 3})
    session.commit()
    capsys.readouterr()

    assert cli(["set-allocation", str(ent.id), "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "entitlement": ent.id,
        "channel": None,
        "remaining": 10,
    }
    assert cli(["set-allocation", str(ent.id), "5", "--channel", "phone", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["channel"] == "phone"
    assert [r[2] for r in ledger(session, ent.id)] == [
        "allocation changed 15 → 10",
        "phone allocation changed 3 → 5",
    ]
    assert cli(["set-allocation", "999999", "5"]) == 1
    assert "no entitlement 999999" in capsys.readouterr().err
    assert cli(["set-allocation", str(ent.id), "-1"]) == 2
    assert remaining(session, ent.id) == 10


# --- states follow the dates ---------------------------------------------------------------------------------


def test_waiting_then_active_then_expired_and_only_entitlements_in_force_are_used(
    session, providers, tmp_path
) -> None:
    today = datetime.now(UTC).date()
    account = make_account(session)
    contact = make_contact(session, account=account)
    ent = make_entitlement(
        session,
        account=account,
        state=EntitlementState.WAITING,
        starts_on=today + timedelta(days=1),
        ends_on=today + timedelta(days=10),
    )
    session.commit()

    [waiting] = send_email(tmp_path, contact.email).outcomes
    assert session.scalar(select(Case.entitlement_id).where(Case.ticket_number == waiting.ticket)) is None

    assert refresh_entitlement_states(session=session, on=today) == {}  # not yet
    assert refresh_entitlement_states(session=session, on=today + timedelta(days=1)) == {"waiting→active": 1}
    assert refresh_entitlement_states(session=session, on=today + timedelta(days=10)) == {}  # its last day
    assert refresh_entitlement_states(session=session, on=today + timedelta(days=11)) == {"active→expired": 1}
    session.commit()
    assert (
        session.scalar(select(Entitlement.state).where(Entitlement.id == ent.id)) is EntitlementState.EXPIRED
    )
    session.commit()
    assert [r[2] for r in ledger(session, ent.id)] == ["state waiting → active", "state active → expired"]

    [expired] = send_email(tmp_path, contact.email).outcomes  # an expired one is not used
    assert session.scalar(select(Case.entitlement_id).where(Case.ticket_number == expired.ticket)) is None


def test_a_waiting_entitlement_whose_start_has_come_is_used_before_the_refresh(
    session, providers, tmp_path
) -> None:
    account = make_account(session)
    contact = make_contact(session, account=account)
    ent = make_entitlement(
        session, account=account, state=EntitlementState.WAITING, starts_on=date(2000, 1, 1)
    )
    session.commit()

    [outcome] = send_email(tmp_path, contact.email).outcomes

    assert session.scalar(select(Case.entitlement_id).where(Case.ticket_number == outcome.ticket)) == ent.id


def test_an_entitlement_for_one_contact_is_not_used_by_another(session, providers, tmp_path) -> None:
    account = make_account(session)
    named, other = make_contact(session, account=account), make_contact(session, account=account)
    ent = make_entitlement(session, account=account, contact_id=named.id)
    session.commit()

    [a] = send_email(tmp_path, named.email).outcomes
    [b] = send_email(tmp_path, other.email).outcomes

    tickets = dict(session.execute(select(Case.ticket_number, Case.entitlement_id)).all())
    assert (tickets[a.ticket], tickets[b.ticket]) == (ent.id, None)
