"""The weekly bulk delete: only merged, deactivated, old contacts nothing refers to go; a dry run changes nothing;
batches; the archive restores them (once)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from flows.bulk_delete import bulk_delete_merged_contacts
from models import (
    Activity,
    ActivityType,
    BulkDeleteRun,
    Consent,
    ConsentStatus,
    Contact,
    ContactArchive,
    ContactMergeConflict,
    Entitlement,
    Lead,
    Message,
    MessageChannel,
    PortalRegistration,
)
from tasks.bulk_delete import (
    BulkDeleteConfig,
    UnknownArchive,
    purge_archives,
    referencing_columns,
    restore_archive,
    run_bulk_delete,
)
from tests.utils.factories import make_account, make_case, make_contact, make_device
from tests.utils.flows import completed

OLD = datetime.now(UTC) - timedelta(days=45)


def merged(session: Session, master: Contact, *, at: datetime | None = OLD, active: bool = False) -> Contact:
    """A contact merged into `master` (deactivated, emptied), committed."""
    c = make_contact(session, account=master.account, sms_consent=None, phone=None)
    c.active, c.merged_into_id, c.merged_at = active, master.id, at
    session.commit()
    return c


def ids(session: Session) -> set[int]:
    session.commit()  # a fresh transaction sees what the delete committed
    found = set(session.scalars(select(Contact.id)))
    session.commit()  # and ends, so the code under test can write (SQLite: one writer)
    return found


def delete(days: int = 30, **kw) -> dict:
    return run_bulk_delete(BulkDeleteConfig(older_than_days=days, **kw), keep_archive_days=30).as_json()


@pytest.fixture()
def master(session: Session) -> Contact:
    c = make_contact(session, account=make_account(session))
    session.commit()
    return c


def _case(s: Session, c: Contact) -> None:
    make_case(s, contact=c)


def _activity(s: Session, c: Contact) -> None:
    case = make_case(s, contact=c)
    s.add(Activity(case_id=case.id, type=ActivityType.NOTE, subject="called"))


def _message(s: Session, c: Contact) -> None:
    s.add(
        Message(
            idempotency_key=f"k-{c.id}",
            channel=MessageChannel.EMAIL,
            contact_id=c.id,
            journey_step="test",
            body="hello",
        )
    )


def _consent(s: Session, c: Contact) -> None:
    s.add(Consent(contact_id=c.id, channel=MessageChannel.EMAIL, status=ConsentStatus.OPTED_OUT, source="t"))


def _device(s: Session, c: Contact) -> None:
    make_device(s, owner=c)


def _lead(s: Session, c: Contact) -> None:
    s.add(Lead(first_name="A", last_name="B", email=c.email, contact_id=c.id, order_ref=f"o-{c.id}"))


def _entitlement(s: Session, c: Contact) -> None:
    s.add(
        Entitlement(
            name="e",
            contact_id=c.id,
            starts_on=date(2026, 1, 1),
            ends_on=date(2026, 12, 31),
            allocation=1,
            remaining=1,
        )
    )


def _login(s: Session, c: Contact) -> None:
    c.portal_login = c.email


def _merged_into_it(s: Session, c: Contact) -> None:
    other = make_contact(s, account=c.account, sms_consent=None)
    other.active, other.merged_into_id = True, c.id  # an active contact still points at it


def _registration(s: Session, c: Contact) -> None:
    s.add(PortalRegistration(email=c.email, first_name="A", last_name="B", outcome="merged", contact_id=c.id))


def _merge_conflict(s: Session, c: Contact) -> None:
    reg = PortalRegistration(email=c.email, first_name="A", last_name="B", outcome="merged", contact_id=c.id)
    s.add(reg)
    s.flush()
    s.add(
        ContactMergeConflict(
            contact_id=c.id, registration_id=reg.id, field="phone", kept_value="1", offered_value="2"
        )
    )


REFERENCES: dict[str, Callable[[Session, Contact], None]] = {
    "portal registration": _registration,
    "merge conflict": _merge_conflict,
    "case": _case,
    "activity": _activity,
    "message": _message,
    "consent": _consent,
    "device": _device,
    "lead": _lead,
    "entitlement": _entitlement,
    "portal login": _login,
    "a contact merged into it": _merged_into_it,
}


@pytest.mark.parametrize("kind", REFERENCES)
def test_a_flagged_contact_anything_refers_to_survives(session: Session, master: Contact, kind: str) -> None:
    kept = merged(session, master)
    REFERENCES[kind](session, kept)
    session.commit()
    gone = merged(session, master)
    result = delete()
    assert (result["deleted"], result["kept"]) == (1, 1)
    assert (
        session.scalar(select(BulkDeleteRun.archive).where(BulkDeleteRun.deleted == 1)) == result["archive"]
    )
    assert kept.id in ids(session) and gone.id not in ids(session)


def test_every_foreign_key_to_contact_is_guarded() -> None:
    # New tables pointing at contacts are guarded automatically (the guard is built from the model).
    assert {
        ("support_case", "contact_id"),
        ("message", "contact_id"),
        ("device", "owner_contact_id"),
        ("consent", "contact_id"),
        ("lead", "contact_id"),
        ("entitlement", "contact_id"),
        ("contact", "merged_into_id"),
    } <= set(referencing_columns())


def test_only_merged_deactivated_and_old_contacts_go(session: Session, master: Contact) -> None:
    active = merged(session, master, active=True)
    recent = merged(session, master, at=datetime.now(UTC) - timedelta(days=3))
    unstamped = merged(
        session, master, at=None
    )  # merged_at unknown: created_at decides (just now: too young)
    plain = make_contact(session, sms_consent=None)
    plain.active = False  # deactivated but never merged
    old_unstamped = merged(session, master, at=None)
    old_unstamped.created_at = OLD
    session.commit()
    result = delete()
    assert (result["deleted"], result["kept"]) == (1, 0)
    assert ids(session) == {master.id, active.id, recent.id, unstamped.id, plain.id}
    assert old_unstamped.id not in ids(session)
    assert delete(days=0)["deleted"] == 2  # recent and unstamped are merged and deactivated: old enough at 0


def test_dry_run_changes_nothing(session: Session, master: Contact) -> None:
    flagged = [merged(session, master) for _ in range(3)]
    _case(session, flagged[0])
    session.commit()
    before = ids(session)
    assert {k: v for k, v in delete(dry_run=True).items() if k != "archive"} == {"deleted": 2, "kept": 1}
    assert ids(session) == before
    assert session.scalar(select(func.count()).select_from(ContactArchive)) == 0


def test_batches_cover_everything_and_max_batches_stops_early(session: Session, master: Contact) -> None:
    flagged = [merged(session, master) for _ in range(7)]
    _message(session, flagged[3])
    session.commit()
    summary = run_bulk_delete(
        BulkDeleteConfig(older_than_days=30, batch_size=2, max_batches=2), keep_archive_days=30
    )
    assert (summary.batches, summary.deleted, summary.kept) == (2, 3, 1)  # flagged[3] is in batch 2
    summary = run_bulk_delete(BulkDeleteConfig(older_than_days=30, batch_size=2), keep_archive_days=30)
    assert (summary.batches, summary.deleted, summary.kept) == (2, 3, 1)  # [3, 4], [5, 6]
    assert ids(session) == {master.id, flagged[3].id}


def test_each_batch_logs_its_counts(session: Session, master: Contact, caplog) -> None:
    flagged = [merged(session, master) for _ in range(7)]
    _message(session, flagged[3])
    session.commit()
    config = BulkDeleteConfig(older_than_days=30, batch_size=2, workers=1)
    with caplog.at_level(logging.INFO, logger="carepath.batch"):
        run_bulk_delete(config.model_copy(update={"max_batches": 1, "dry_run": True}), keep_archive_days=30)
        run_bulk_delete(config, keep_archive_days=30)
    lines = [r.getMessage() for r in caplog.records if r.name == "carepath.batch"]
    job = "bulk-delete-merged-contacts: batch"
    assert lines == [
        f"{job} 1, 2 rows of 2 done (deleted 2, kept 0)",  # at most one batch of two: the total is 2
        f"{job} 1, 2 rows of 7 done (deleted 2, kept 0)",
        f"{job} 2, 4 rows of 7 done (deleted 1, kept 1)",  # flagged[3] has a message
        f"{job} 3, 6 rows of 7 done (deleted 2, kept 0)",
        f"{job} 4, 7 rows of 7 done (deleted 1, kept 0)",
    ]


def test_restore_brings_them_back_once(session: Session, master: Contact) -> None:
    flagged = [merged(session, master) for _ in range(3)]
    before = {c.id: (c.email, c.account_id, c.merged_into_id, c.merged_at, c.created_at) for c in flagged}
    archive = delete()["archive"]
    assert not ids(session) & set(before)
    with session.begin():
        assert restore_archive(session=session, archive=archive).as_json() == {"restored": 3}
    session.expire_all()
    back = session.scalars(select(Contact).where(Contact.id.in_(before))).all()
    assert {
        c.id: (c.email, c.account_id, c.merged_into_id, c.merged_at, c.created_at) for c in back
    } == before
    assert all(c.active is False for c in back)
    session.commit()
    with session.begin():
        assert restore_archive(session=session, archive=archive).as_json() == {"restored": 0}


def test_restore_reports_a_taken_id(session: Session, master: Contact) -> None:
    flagged = [merged(session, master) for _ in range(2)]
    archive = delete()["archive"]
    # Someone takes a deleted contact's id again before the restore (SQLite reuses the highest id).
    session.expunge(flagged[1])
    session.add(Contact(id=flagged[1].id, first_name="New", last_name="Person", account_id=master.account_id))
    session.commit()
    with session.begin():
        result = restore_archive(session=session, archive=archive)
    assert result.as_json() == {"restored": 1, "id_taken": [flagged[1].id]}
    with session.begin():  # still reported, nothing restored twice
        assert restore_archive(session=session, archive=archive).as_json() == {
            "restored": 0,
            "id_taken": [flagged[1].id],
        }


def test_a_merge_chain_goes_in_order_and_comes_back_whole(session: Session, master: Contact) -> None:
    child = merged(session, master)
    middle = merged(session, master)
    child.merged_into_id = middle.id  # child → middle → master
    session.commit()
    # One batch: middle is still referred to by child when the DELETE runs, so it waits for the next run.
    first = delete()
    assert (first["deleted"], first["kept"]) == (1, 1) and ids(session) == {master.id, middle.id}
    second = delete()
    assert second["deleted"] == 1 and ids(session) == {master.id}
    with session.begin():  # child first: its master is not back yet
        assert restore_archive(session=session, archive=first["archive"]).reference_missing == [child.id]
    with session.begin():
        assert restore_archive(session=session, archive=second["archive"]).restored == 1
        assert restore_archive(session=session, archive=first["archive"]).as_json() == {"restored": 1}
    assert ids(session) == {master.id, middle.id, child.id}


def test_one_run_in_batches_deletes_a_chain_and_restores_it_in_rounds(
    session: Session, master: Contact
) -> None:
    child = merged(session, master)
    middle = merged(session, master)
    child.merged_into_id = middle.id
    session.commit()
    # One worker: batch 2 starts after batch 1 committed (side by side, middle would wait for the next run).
    summary = run_bulk_delete(
        BulkDeleteConfig(older_than_days=30, batch_size=1, workers=1), keep_archive_days=30
    )
    assert summary.deleted == 2 and ids(session) == {master.id}
    with session.begin():
        assert restore_archive(session=session, archive=summary.archive).as_json() == {"restored": 2}
    assert ids(session) == {master.id, middle.id, child.id}


def test_unknown_and_purged_archives(session: Session, master: Contact) -> None:
    merged(session, master)
    archive = delete()["archive"]
    with pytest.raises(UnknownArchive), session.begin():
        restore_archive(session=session, archive="bulk-delete-nope")
    with session.begin():
        assert purge_archives(session=session, keep_days=30, now=datetime.now(UTC) + timedelta(days=31)) == 1
    assert session.scalar(select(func.count()).select_from(ContactArchive)) == 0
    session.commit()
    with pytest.raises(UnknownArchive), session.begin():
        restore_archive(session=session, archive=archive)


@pytest.mark.usefixtures("prefect_server")
def test_the_flow_publishes_an_artifact_and_returns_the_summary(session: Session, master: Contact) -> None:
    from prefect.artifacts import Artifact

    gone = merged(session, master)
    result = completed(bulk_delete_merged_contacts, config=BulkDeleteConfig(older_than_days=30))
    assert (result["deleted"], result["kept"]) == (1, 0)
    artifact = Artifact.get("bulk-delete-merged-contacts")
    assert artifact is not None and str(gone.id) in artifact.data and result["archive"] in artifact.data
    progress = Artifact.get("bulk-delete-merged-contacts-progress")
    assert progress is not None and progress.type == "progress"
    assert (progress.data, progress.description) == (100.0, "bulk-delete-merged-contacts: 1 rows, done")


def test_workers_side_by_side_delete_exactly_the_unreferenced(session: Session, master: Contact) -> None:
    flagged = [merged(session, master) for _ in range(20)]
    for c in flagged[::4]:
        _case(session, c)
    session.commit()
    summary = run_bulk_delete(
        BulkDeleteConfig(older_than_days=30, batch_size=3, workers=3), keep_archive_days=30
    )
    assert (summary.batches, summary.deleted, summary.kept) == (7, 15, 5)
    assert ids(session) == {master.id} | {c.id for c in flagged[::4]}
    assert session.scalar(select(func.count()).select_from(ContactArchive)) == 15


def test_a_registrations_temporary_contact_goes_and_the_registration_stays(
    session: Session, master: Contact
) -> None:
    temporary = merged(session, master)
    reg = PortalRegistration(
        email=master.email,
        first_name="A",
        last_name="B",
        outcome="merged",
        contact_id=master.id,
        temporary_contact_id=temporary.id,
    )
    session.add(reg)
    session.commit()
    assert delete()["deleted"] == 1 and temporary.id not in ids(session)
    session.refresh(reg)
    assert (reg.contact_id, reg.temporary_contact_id) == (master.id, None)
