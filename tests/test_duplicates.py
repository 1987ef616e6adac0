"""Duplicate contacts against a real database: the blocks SQL finds, the scored review list (CLI and flow with
its table artifact), and merging a pair: every child record moves, the duplicate is kept, deactivated."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from carepath import db
from cli.commands import main
from models import (
    Activity,
    ActivityType,
    Case,
    Consent,
    ConsentStatus,
    Contact,
    Device,
    Entitlement,
    Lead,
    Message,
    MessageChannel,
)
from tasks.duplicates import find_duplicates
from tasks.merge import MergeRefused, merge_contacts
from tests.utils.factories import make_account, make_case, make_contact, make_device, make_entitlement
from tests.utils.flows import completed


def person(session, account, first, last, email, phone=None) -> Contact:
    contact = Contact(
        first_name=first, last_name=last, email=email, phone=phone, account_id=account.id if account else None
    )
    session.add(contact)
    session.flush()
    return contact


def pairs(**kw) -> list[tuple[int, int, list[str]]]:
    with db.unit_of_work() as s:
        return [(p.a, p.b, p.why) for p in find_duplicates(session=s, **kw)]


def test_blocks_by_phone_by_name_in_account_and_by_squashed_email(session) -> None:
    acme, other = make_account(session, domain="acme.example"), make_account(session, domain="other.example")
    j1 = person(session, acme, "John", "Smith", "j.smith@acme.example")
    j2 = person(session, acme, "John", "Smith", "jsmith+shop@ACME.example")
    p1 = person(session, acme, "Ann", "Lee", "ann@acme.example", phone="+447700900001")
    p2 = person(session, other, "Anne", "Leigh", "anne@other.example", phone="+447700900001")
    n1 = person(session, acme, "Maria", "Rossi", "maria.rossi@acme.example")
    n2 = person(session, acme, " maria ", "ROSSI", "mrossi@acme.example")
    person(session, other, "Maria", "Rossi", "maria@other.example")  # same name, another company: no pair
    person(session, acme, "Zed", "Zero", "zed@acme.example")
    session.commit()
    found = pairs()
    assert found == [
        (j1.id, j2.id, ["near-identical email", "same name in account"]),
        (p1.id, p2.id, ["same phone"]),
        (n1.id, n2.id, ["same name in account"]),
    ]
    scores = {(p.a, p.b): p.score for p in find_duplicates(session=session)}
    session.commit()
    assert scores[(j1.id, j2.id)] > scores[(p1.id, p2.id)] == scores[(n1.id, n2.id)]
    assert pairs(min_score=0.9) == [(j1.id, j2.id, ["near-identical email", "same name in account"])]


def test_merged_contacts_and_oversized_blocks_are_left_out(session) -> None:
    acme = make_account(session, domain="acme.example")
    a = person(session, acme, "A", "One", "a@acme.example", phone="+302100000000")
    b = person(session, acme, "B", "Two", "b@acme.example", phone="+302100000000")
    c = person(session, acme, "C", "Three", "c@acme.example", phone="+302100000000")
    session.commit()
    assert len(pairs()) == 3
    assert pairs(max_block=2) == []  # a switchboard number shared by three says nothing about any two
    c.merged_into_id = a.id
    session.commit()
    assert pairs(max_block=2) == [(a.id, b.id, ["same phone"])]


@pytest.mark.usefixtures("prefect_server")
def test_the_flow_publishes_the_review_list_as_a_table_artifact(session) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.duplicates import find_duplicate_contacts

    acme = make_account(session, domain="acme.example")
    a = person(session, acme, "John", "Smith", "j.smith@acme.example")
    b = person(session, acme, "John", "Smith", "jsmith@acme.example")
    session.commit()
    result = completed(find_duplicate_contacts)
    assert [(p["a"], p["b"]) for p in result["pairs"]] == [(a.id, b.id)]
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["duplicate-contacts"])),
            limit=1,
            sort="CREATED_DESC",
        )
    assert artifact.type == "table"
    table = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert table[0]["a"] == a.id and "near-identical email" in table[0]["why"]


def test_cli_duplicates_json(session, capsys) -> None:
    acme = make_account(session, domain="acme.example")
    a = person(session, acme, "John", "Smith", "j.smith@acme.example")
    b = person(session, acme, "John", "Smith", "jsmith@acme.example")
    session.commit()
    assert main(["duplicates", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    [pair] = out["pairs"]
    assert (pair["a"], pair["b"]) == (a.id, b.id) and 0 < pair["score"] <= 1 and pair["why"]


# --- merging ----------------------------------------------------------------------------------------------


def _consent(contact, channel, status, at) -> Consent:
    return Consent(contact_id=contact.id, channel=channel, status=status, source="test", changed_at=at)


def test_merge_moves_every_child_record_and_keeps_the_duplicate_deactivated(session, capsys) -> None:
    account = make_account(session, domain="acme.example")
    master = make_contact(session, account=account, sms_consent=None)
    duplicate = make_contact(session, account=account, phone="+447700900123", sms_consent=None)
    master.time_zone, duplicate.time_zone = None, "Europe/Athens"
    duplicate.portal_login = duplicate.email
    earlier = make_contact(session, account=account, sms_consent=None)
    earlier.active, earlier.merged_into_id = False, duplicate.id
    now = datetime.now(UTC)
    session.add_all(
        [
            _consent(master, MessageChannel.EMAIL, ConsentStatus.OPTED_IN, now - timedelta(days=30)),
            _consent(duplicate, MessageChannel.EMAIL, ConsentStatus.OPTED_OUT, now - timedelta(days=1)),
            _consent(duplicate, MessageChannel.SMS, ConsentStatus.OPTED_IN, now - timedelta(days=2)),
        ]
    )
    case = make_case(session, contact=duplicate)
    session.add(Activity(case_id=case.id, type=ActivityType.PHONE_CALL, subject="called back"))
    session.add(
        Message(
            idempotency_key="merge-test-1",
            channel=MessageChannel.SMS,
            contact_id=duplicate.id,
            journey_step="test",
            body="hello",
        )
    )
    device = make_device(session, owner=duplicate)
    session.add(
        Lead(first_name="x", last_name="y", email=duplicate.email, contact_id=duplicate.id, order_ref="WS-9")
    )
    entitlement = make_entitlement(session, account=account, contact_id=duplicate.id)
    session.commit()
    ids = (master.id, duplicate.id)

    assert main(["merge", str(master.id), str(duplicate.id), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["master"], out["merged"]) == ids
    # Every table that refers to a contact is found from the schema; those with nothing to move say 0.
    assert {table: n for table, n in out["moved"].items() if n} == {
        "portal_login": 1,
        "activity": 1,
        "consent": 2,
        "device": 1,
        "entitlement": 1,
        "lead": 1,
        "support_case": 1,
        "message": 1,
        "earlier_merges": 1,
    }
    assert set(out["conflicts"]) == {"phone", "email", "last_name"}
    assert out["conflicts"]["phone"] == {"master": master.phone, "merged": "+447700900123"}
    assert "time_zone" in out["filled"]

    session.expire_all()
    assert session.get(Case, case.id).contact_id == master.id
    assert session.scalars(select(Activity.case_id)).all() == [case.id]
    assert session.scalars(select(Message.contact_id)).all() == [master.id]
    assert session.get(Device, device.id).owner_contact_id == master.id
    assert session.scalars(select(Lead.contact_id)).all() == [master.id]
    assert session.get(Entitlement, entitlement.id).contact_id == master.id
    assert session.get(Contact, earlier.id).merged_into_id == master.id
    consents = {
        c.channel: c.status for c in session.scalars(select(Consent).where(Consent.contact_id == master.id))
    }
    assert consents == {
        MessageChannel.EMAIL: ConsentStatus.OPTED_OUT,
        MessageChannel.SMS: ConsentStatus.OPTED_IN,
    }
    kept, gone = session.get(Contact, master.id), session.get(Contact, duplicate.id)
    assert (kept.portal_login, kept.time_zone, kept.active) == (duplicate.email, "Europe/Athens", True)
    assert kept.phone != "+447700900123"  # a conflict is reported, never silently overwritten
    assert (gone.active, gone.merged_into_id, gone.portal_login) == (False, master.id, None)
    assert gone.merged_at is not None
    session.commit()


def test_an_older_consent_does_not_override_a_newer_one_and_a_tie_keeps_the_stricter(session) -> None:
    master = make_contact(session, sms_consent=None)
    duplicate = make_contact(session, sms_consent=None)
    at = datetime.now(UTC) - timedelta(days=3)
    session.add_all(
        [
            _consent(master, MessageChannel.EMAIL, ConsentStatus.OPTED_IN, at + timedelta(days=1)),
            _consent(duplicate, MessageChannel.EMAIL, ConsentStatus.OPTED_OUT, at),
            _consent(master, MessageChannel.SMS, ConsentStatus.OPTED_IN, at),
            _consent(duplicate, MessageChannel.SMS, ConsentStatus.OPTED_OUT, at),
        ]
    )
    session.commit()
    with db.unit_of_work() as s:
        merge_contacts(session=s, master_id=master.id, duplicate_id=duplicate.id)
    session.expire_all()
    consents = {
        c.channel: c.status for c in session.scalars(select(Consent).where(Consent.contact_id == master.id))
    }
    assert consents == {
        MessageChannel.EMAIL: ConsentStatus.OPTED_IN,
        MessageChannel.SMS: ConsentStatus.OPTED_OUT,
    }
    session.commit()


def test_a_login_stays_with_the_duplicate_when_the_master_has_one(session) -> None:
    master, duplicate = make_contact(session), make_contact(session)
    master.portal_login, duplicate.portal_login = master.email, duplicate.email
    session.commit()
    with db.unit_of_work() as s:
        out = merge_contacts(session=s, master_id=master.id, duplicate_id=duplicate.id)
    assert out.moved["portal_login"] == 0 and out.conflicts["portal_login"]["merged"] == duplicate.email
    session.expire_all()
    assert (
        session.get(Contact, master.id).portal_login,
        session.get(Contact, duplicate.id).portal_login,
    ) == (
        master.email,
        duplicate.email,
    )
    session.commit()


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("self", "into itself"),
        ("missing", "no contact"),
        ("merged", "already merged"),
        ("master_merged", "already merged"),
    ],
)
def test_merge_refuses_clearly(session, capsys, which, message) -> None:
    a, b, c = make_contact(session), make_contact(session), make_contact(session)
    b.merged_into_id = c.id if which == "merged" else None
    a.merged_into_id = c.id if which == "master_merged" else None
    session.commit()
    args = {
        "self": (a.id, a.id),
        "missing": (a.id, 999_999),
        "merged": (a.id, b.id),
        "master_merged": (a.id, b.id),
    }[which]
    with db.unit_of_work() as s, pytest.raises(MergeRefused, match=message):
        merge_contacts(session=s, master_id=args[0], duplicate_id=args[1])
    assert main(["merge", str(args[0]), str(args[1]), "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err
    session.expire_all()
    assert session.get(Contact, a.id).active and session.get(Contact, b.id).active  # nothing changed
    session.commit()


@pytest.mark.usefixtures("prefect_server")
def test_the_merge_flow(session) -> None:
    from flows.duplicates import merge_contacts_flow

    a, b = make_contact(session), make_contact(session)
    make_case(session, contact=b)
    session.commit()
    out = completed(merge_contacts_flow, master_id=a.id, duplicate_id=b.id)
    assert (out["master"], out["merged"], out["moved"]["support_case"]) == (a.id, b.id, 1)
    state = merge_contacts_flow(master_id=a.id, duplicate_id=b.id, return_state=True)
    assert state.is_failed()
