"""Imports through the data-quality gates: good rows load, bad rows are quarantined with the expectations they
failed (counts worked out by hand below), and importing the same file again loads nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from models import Account, Case, Contact, DeviceFault, InboxEvent, InboxState, Message, QuarantinedRow, Tier
from tasks.imports import KINDS
from tasks.imports.files import ImportFileError
from tasks.imports.run import import_source, inspect_source
from tests.utils.factories import make_account, make_contact, make_device


def run_import(kind: str, path: Path) -> dict:
    return import_source(KINDS[kind], inspect_source(KINDS[kind], str(path))).as_json()


def write(path: Path, text: str, *, bom: bool = False, crlf: bool = False) -> Path:
    body = text.replace("\n", "\r\n") if crlf else text
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body.encode("utf-8"))
    return path


def count(session, model, *where) -> int:
    n = session.scalar(select(func.count()).select_from(model).where(*where))
    session.rollback()  # end the read: on SQLite the import's writer would wait for it
    return n


def quarantined(session, kind: str) -> dict[int, list[str]]:
    rows = session.execute(
        select(QuarantinedRow.row_number, QuarantinedRow.failed_expectations).where(
            QuarantinedRow.kind == kind
        )
    ).all()
    session.rollback()
    return dict(rows)


# --- contacts -------------------------------------------------------------------------------------------------


@pytest.fixture()
def helios(session) -> Account:
    account = make_account(session, domain="helios-energy.example")
    session.commit()
    return account


def test_contacts_good_rows_load_and_bad_rows_are_quarantined_with_their_expectations(
    session, helios, tmp_path
) -> None:
    existing = make_contact(session, account=helios, first_name="Eleni")
    existing.email = "Eleni.Papa@Helios-Energy.example"  # stored as someone once typed it
    session.commit()
    # A byte-order mark, CRLF line ends and the columns in another order than the contract lists them.
    csv = write(
        tmp_path / "contacts.csv",
        "phone,last_name,account_number,email,first_name\n"
        f"+306912345670,Nowak,{helios.account_number},piotr@helios-energy.example,Piotr\n"  # 2: new, linked
        f",Papa,,ELENI.PAPA@helios-energy.example,Eleni\n"  # 3: the existing contact, new last name
        "+306912345671,Bad,,not-an-email,Bad\n"  # 4: email
        "0030 210 1234567,Local,,local@example.com,Local\n"  # 5: phone not E.164
        "+306912345672,Stranger,ACC-NOPE,stranger@example.com,Sam\n"  # 6: unknown account
        "abc,,,,\n"  # 7: email, first name, last name, phone
        ",Again,,piotr@HELIOS-energy.example,Piotr\n",  # 8: same email as row 2
        bom=True,
        crlf=True,
    )

    figures = run_import("contacts", csv)

    assert figures == {
        "loaded": 2,
        "quarantined": 5,
        "failed_expectations": {
            "email_is_valid": 2,
            "first_name_is_present": 1,
            "last_name_is_present": 1,
            "phone_is_e164": 2,
            "account_number_is_known": 1,
            "email_is_unique_in_file": 1,
        },
    }
    assert quarantined(session, "contacts") == {
        4: ["email_is_valid"],
        5: ["phone_is_e164"],
        6: ["account_number_is_known"],
        7: ["email_is_valid", "first_name_is_present", "last_name_is_present", "phone_is_e164"],
        8: ["email_is_unique_in_file"],
    }
    piotr = session.scalars(select(Contact).where(Contact.email == "piotr@helios-energy.example")).one()
    assert (piotr.first_name, piotr.phone, piotr.account_id) == ("Piotr", "+306912345670", helios.id)
    assert (piotr.phone_checked, piotr.phone_valid, piotr.email_domain) == (
        "+306912345670",
        True,
        "helios-energy.example",
    )
    session.refresh(existing)
    # Matched however it was spelled; an empty phone and account number leave the stored ones.
    assert (existing.last_name, existing.phone, existing.account_id) == ("Papa", "+306912345678", helios.id)
    assert count(session, Contact) == 2
    raw = session.scalars(select(QuarantinedRow.raw).where(QuarantinedRow.row_number == 5)).one()
    assert raw == {
        "email": "local@example.com",
        "first_name": "Local",
        "last_name": "Local",
        "phone": "0030 210 1234567",
        "account_number": "",
    }


def test_the_same_contacts_file_twice_loads_nothing_new_and_keeps_one_quarantine_row_each(
    session, helios, tmp_path
) -> None:
    csv = write(
        tmp_path / "c.csv",
        "email,first_name,last_name,phone,account_number\n"
        f"ana@helios-energy.example,Ana,Silva,+351912345678,{helios.account_number}\n"
        "bad,Bad,Row,,\n",
    )
    first = run_import("contacts", csv)
    second = run_import("contacts", csv)

    assert first == {"loaded": 1, "quarantined": 1, "failed_expectations": {"email_is_valid": 1}}
    assert second == {"loaded": 0, "quarantined": 1, "failed_expectations": {"email_is_valid": 1}}
    assert count(session, Contact) == 1
    assert count(session, QuarantinedRow) == 1


def test_an_overlong_key_is_quarantined_not_a_database_error(session, tmp_path) -> None:
    long_email = "x" * 250 + "@example.com"  # 262 characters: longer than any column that could hold it
    csv = write(
        tmp_path / "c.csv",
        f"email,first_name,last_name,phone,account_number\n{long_email},Long,Name,,\n{long_email},Long,Again,,\n",
    )
    assert run_import("contacts", csv) == {
        "loaded": 0,
        "quarantined": 2,
        "failed_expectations": {"email_at_most_254_characters": 2, "email_is_unique_in_file": 1},
    }


def test_a_row_quarantined_for_an_unknown_account_loads_once_the_account_exists(session, tmp_path) -> None:
    csv = write(
        tmp_path / "c.csv",
        "email,first_name,last_name,phone,account_number\nlater@example.com,Lou,Later,,ACC-LATER\n",
    )
    assert run_import("contacts", csv)["failed_expectations"] == {"account_number_is_known": 1}
    session.add(Account(name="Later Ltd", account_number="ACC-LATER", tier=Tier.SILVER))
    session.commit()

    assert run_import("contacts", csv) == {"loaded": 1, "quarantined": 0, "failed_expectations": {}}
    assert count(session, QuarantinedRow) == 0  # what now passes leaves the quarantine


# --- accounts -------------------------------------------------------------------------------------------------


def test_accounts_upsert_by_number_and_quarantine_bad_rows(session, helios, tmp_path) -> None:
    csv = write(
        tmp_path / "accounts.csv",
        "domain,tier,name,account_number\n"
        f"helios-energy.example,GOLD,{helios.name},{helios.account_number}\n"  # 2: unchanged
        "northwind.example,silver,Northwind Ltd,ACC-NEW1\n"  # 3: new
        ",,Plain Ltd,ACC-NEW2\n"  # 4: new, standard, no domain
        "helios-energy.example,gold,Thief Ltd,ACC-NEW3\n"  # 5: another account's domain
        "x.example,platinum,Shiny Ltd,ACC-NEW4\n"  # 6: tier
        "y.example,gold,,\n"  # 7: number and name
        "z.example,gold,Again Ltd,ACC-NEW1\n",  # 8: same number as row 3
    )

    first = run_import("accounts", csv)
    second = run_import("accounts", csv)

    assert first == {
        "loaded": 2,
        "quarantined": 4,
        "failed_expectations": {
            "account_number_is_present": 1,
            "name_is_present": 1,
            "tier_is_known": 1,
            "domain_is_free": 1,
            "account_number_is_unique_in_file": 1,
        },
    }
    assert second == {**first, "loaded": 0}
    accounts = {a.account_number: a for a in session.scalars(select(Account))}
    assert set(accounts) == {helios.account_number, "ACC-NEW1", "ACC-NEW2"}
    assert (accounts["ACC-NEW1"].tier, accounts["ACC-NEW1"].email_domains) == (
        Tier.SILVER,
        ["northwind.example"],
    )
    assert (accounts["ACC-NEW2"].tier, accounts["ACC-NEW2"].email_domains) == (Tier.STANDARD, [])
    assert count(session, QuarantinedRow) == 4


# --- historical faults ----------------------------------------------------------------------------------------

FAULT_HEADER = "event_id,device_id,error_code,occurred_at,message\n"


def test_faults_as_text_are_checked_and_recorded_as_history_without_cases_or_sms(session, tmp_path) -> None:
    make_device(session, device_id="DEV-H1")
    session.commit()
    csv = write(
        tmp_path / "faults.csv",
        FAULT_HEADER + "h-1,DEV-H1,14,2026-11-20T10:00:00Z,Pressure low\n"  # 2: good, critical
        "h-2,DEV-H1,3,2026-11-20 12:00:00+02:00,\n"  # 3: good (a CSV export's time), routine
        "h-3,DEV-H1,abc,2026-11-20T10:00:00Z,\n"  # 4
        "h-4,DEV-H1,12.5,2026-11-20T10:00:00Z,\n"  # 5
        "h-5,DEV-H1,,2026-11-20T10:00:00Z,\n"  # 6
        "h-6,DEV-H1,2000000,2026-11-20T10:00:00Z,\n"  # 7: out of range
        "h-7,DEV-H1,3,2026-11-20T10:00:00,\n"  # 8: no zone
        "h-8,DEV-H1,3,2999-01-01T00:00:00Z,\n"  # 9: in the future
        "h-9,DEV-UNKNOWN,3,2026-11-20T10:00:00Z,\n"  # 10
        ",,3,2026-11-20T10:00:00Z,\n"  # 11: no event id, no device
        "h-1,DEV-H1,15,2026-11-20T11:00:00Z,\n",  # 12: event id repeated
        crlf=True,
    )

    figures = run_import("faults", csv)

    assert figures == {
        "loaded": 2,
        "quarantined": 9,
        "failed_expectations": {
            "event_id_is_present": 1,
            "device_id_is_present": 1,
            "error_code_is_integer": 3,
            "error_code_in_range": 1,
            "occurred_at_is_timestamp": 1,
            "occurred_at_not_in_future": 1,
            "device_is_registered": 1,
            "event_id_is_unique_in_file": 1,
        },
    }
    faults = session.execute(
        select(
            DeviceFault.device_id, DeviceFault.error_code, DeviceFault.occurred_at, DeviceFault.critical
        ).order_by(DeviceFault.error_code)
    ).all()
    assert faults == [
        ("DEV-H1", 3, datetime(2026, 11, 20, 10, tzinfo=UTC), False),
        ("DEV-H1", 14, datetime(2026, 11, 20, 10, tzinfo=UTC), True),
    ]
    states = set(session.scalars(select(InboxEvent.state)))
    assert states == {InboxState.PROCESSED}  # history: never drained, never announced
    assert count(session, Case) == 0 and count(session, Message) == 0

    assert run_import("faults", csv) == {**figures, "loaded": 0}
    assert count(session, DeviceFault) == 2 and count(session, QuarantinedRow) == 9


def test_a_fault_the_webhook_already_delivered_is_not_loaded_again(session, tmp_path) -> None:
    from tasks.ingest import store_fault_events

    make_device(session, device_id="DEV-W1")
    store_fault_events(
        session=session,
        events=[
            {"event_id": "w-1", "device_id": "DEV-W1", "error_code": 3, "occurred_at": "2026-11-20T10:00:00Z"}
        ],
    )
    session.commit()
    csv = write(tmp_path / "f.csv", FAULT_HEADER + "w-1,DEV-W1,3,2026-11-20T10:00:00Z,\n")

    assert run_import("faults", csv) == {"loaded": 0, "quarantined": 0, "failed_expectations": {}}
    assert count(session, InboxEvent) == 1 and count(session, DeviceFault) == 0  # the drain records it


def test_parquet_faults_typed_or_as_strings(session, tmp_path) -> None:
    make_device(session, device_id="DEV-P1")
    session.commit()
    at = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
    typed = tmp_path / "typed.parquet"
    pq.write_table(
        pa.table(
            {
                "event_id": ["p-1", "p-2", "p-3"],
                "device_id": ["DEV-P1", "DEV-P1", None],
                "error_code": pa.array([11.0, None, 4.0]),  # a float column: pandas writes ints with gaps so
                "occurred_at": pa.array([at, at, at], pa.timestamp("us", tz="UTC")),
                "message": ["a", None, "c"],
            }
        ),
        typed,
    )
    strings = tmp_path / "strings.PARQUET"
    pq.write_table(
        pa.table(
            {
                "message": ["", ""],
                "occurred_at": ["2026-11-01T08:30:00+00:00", "yesterday"],
                "error_code": ["12", "7"],
                "device_id": ["DEV-P1", "DEV-P1"],
                "event_id": ["s-1", "s-2"],
            }
        ),
        strings,
    )

    assert run_import("faults", typed) == {
        "loaded": 1,
        "quarantined": 2,
        "failed_expectations": {"device_id_is_present": 1, "error_code_is_integer": 1},
    }
    assert run_import("faults", strings) == {
        "loaded": 1,
        "quarantined": 1,
        "failed_expectations": {"occurred_at_is_timestamp": 1},
    }
    codes = sorted(session.scalars(select(DeviceFault.error_code)))
    assert codes == [11, 12]


def test_chunks_stream_the_file_and_find_a_repeat_in_a_later_chunk(session, tmp_path, monkeypatch) -> None:
    from carepath.settings import reset_settings

    monkeypatch.setenv("CAREPATH_IMPORT_CHUNK_ROWS", "2")
    reset_settings()
    make_device(session, device_id="DEV-C1")
    session.commit()
    lines = [f"c-{i},DEV-C1,{i},2026-11-20T10:0{i}:00Z," for i in range(1, 6)]
    csv = write(
        tmp_path / "f.csv", FAULT_HEADER + "\n".join([*lines, "c-1,DEV-C1,9,2026-11-20T11:00:00Z,"]) + "\n"
    )

    source = inspect_source(KINDS["faults"], str(csv))
    summary = import_source(KINDS["faults"], source)

    assert (source.rows, summary.chunks, summary.rows) == (6, 3, 6)
    assert summary.as_json() == {
        "loaded": 5,
        "quarantined": 1,
        "failed_expectations": {"event_id_is_unique_in_file": 1},
    }
    assert quarantined(session, "faults") == {7: ["event_id_is_unique_in_file"]}  # the header is row 1
    reset_settings()


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("missing.csv", None, "no such file"),
        ("faults.xlsx", "x", "unsupported file type '.xlsx'"),
        ("empty.csv", "", "empty file"),
        ("header.csv", "event_id,device_id,code,occurred_at\n", "missing column(s) error_code, message"),
        ("latin1.csv", b"event_id,device_id,error_code,occurred_at,message\n1,D,1,x,caf\xe9\n", "not UTF-8"),
        ("notparquet.parquet", "event_id\n", "not a Parquet file"),
    ],
)
def test_a_file_that_cannot_be_imported_is_refused_whole(tmp_path, engine, name, content, why) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ImportFileError, match=why.replace("(", r"\(").replace(")", r"\)")):
        inspect_source(KINDS["faults"], str(path))


@pytest.mark.usefixtures("prefect_server")
def test_the_import_flow_does_the_same_work_and_leaves_a_validation_summary(session, tmp_path) -> None:
    from prefect.artifacts import Artifact

    from flows.imports import import_faults
    from tests.utils.flows import completed

    make_device(session, device_id="DEV-F1")
    session.commit()
    csv = write(
        tmp_path / "flow.csv",
        FAULT_HEADER
        + "f-1,DEV-F1,12,2026-11-20T10:00:00Z,ok\nf-2,DEV-F1,E12,2026-11-20T10:00:00Z,bad code\n",
    )

    result = completed(import_faults, path=str(csv))
    again = completed(import_faults, path=str(csv))

    assert result == {"loaded": 1, "quarantined": 1, "failed_expectations": {"error_code_is_integer": 1}}
    assert again == {**result, "loaded": 0}
    summary = Artifact.get("import-faults-validation")
    assert summary is not None
    assert "| `error_code_is_integer` | error_code is a whole number" in summary.data
    assert "| 3 | error_code_is_integer |" in summary.data  # the failing row, by its row number
    progress = Artifact.get("import-faults-progress")
    assert progress is not None and progress.data == 100.0


def imported(session) -> tuple[list, dict[int, list[str]]]:
    """The faults loaded and the rows quarantined, by their content."""
    faults = session.execute(
        select(
            DeviceFault.device_id, DeviceFault.error_code, DeviceFault.occurred_at, DeviceFault.critical
        ).order_by(DeviceFault.occurred_at, DeviceFault.error_code)
    ).all()
    session.rollback()
    return faults, quarantined(session, "faults")


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_the_import_flow_on_a_dask_cluster_loads_what_the_threads_load(
    session, tmp_path, monkeypatch, dask_cluster
) -> None:
    """The chunks go to the cluster's worker processes (CAREPATH_BATCH_TASK_RUNNER=dask): the same figures,
    rows and quarantine as the thread runner in the flow's process; a repeat in a later chunk is still found
    (the run's keys are in the database, not in a process)."""
    from carepath.settings import reset_settings
    from flows.imports import import_faults
    from tests.utils.dask_runs import computed_on, on_dask
    from tests.utils.databases import empty_all_tables
    from tests.utils.flows import completed

    monkeypatch.setenv("CAREPATH_IMPORT_CHUNK_ROWS", "3")  # read by the flow's process, which cuts the chunks
    reset_settings()
    csv = write(
        tmp_path / "faults.csv",
        FAULT_HEADER
        + "".join(f"d-{i},DEV-D1,{10 + i},2026-11-20T10:0{i}:00Z,\n" for i in range(1, 7))
        + "d-7,DEV-D1,E7,2026-11-20T11:00:00Z,\nd-8,DEV-NOPE,3,2026-11-20T11:00:00Z,\n"
        + "d-2,DEV-D1,9,2026-11-20T12:00:00Z,\n",  # rows 2–10: three chunks; row 10 repeats row 3's event id
    )
    expected = {
        "loaded": 6,
        "quarantined": 3,
        "failed_expectations": {
            "error_code_is_integer": 1,
            "device_is_registered": 1,
            "event_id_is_unique_in_file": 1,
        },
    }

    make_device(session, device_id="DEV-D1")
    session.commit()
    assert completed(import_faults, path=str(csv)) == expected
    on_threads = imported(session)
    empty_all_tables(session.get_bind())
    make_device(session, device_id="DEV-D1")
    session.commit()
    before = computed_on(dask_cluster, "import_chunk_task")

    assert completed(on_dask(import_faults, dask_cluster), path=str(csv)) == expected
    assert imported(session) == on_threads
    assert on_threads[1] == {
        8: ["error_code_is_integer"],
        9: ["device_is_registered"],
        10: ["event_id_is_unique_in_file"],
    }
    assert (
        len(computed_on(dask_cluster, "import_chunk_task") - before) == 3
    )  # the three chunks, on the cluster
    reset_settings()
