"""Entitlement reconciliation in bounded batches: ranges of entitlements, each in its own transaction, give the
figures and corrections of one pass; progress per range (log line, Prefect progress artifact); the same flow on
a Dask cluster by configuration alone."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from datetime import date, timedelta

import pytest
from sqlalchemy import select, update

from carepath.db import unit_of_work
from carepath.settings import PROJECT_ROOT, get_settings
from cli.commands import main as cli
from models import CaseStatus, Entitlement, EntitlementChannel, EntitlementLedger, EntitlementState
from models.base import utcnow
from tasks.case_status import change_case_status
from tasks.entitlement_reconciliation import Drift, correct_drift, entitlement_ranges
from tests.utils.factories import make_account, make_case, make_contact, make_entitlement

# Five entitlements, each a different story; hand-computed:
#   E1: one resolved case holds a term (15 → 14), then `remaining` set to 3 behind Carepath's back → 3 → 14.
#   E2: email has its own allocation of 5, set to 1 behind Carepath's back → 1 → 5 (the total is right).
#   E3: nothing wrong.   E4: ended yesterday, still active → expired; its account has an open case → flagged.
#   E5: waiting, its period began this year → activated.   A6: no entitlement, an open case → flagged.
ALL_FIGURES = {"checked": 5, "corrected": 2, "activated": 1, "expired": 1, "flagged": 2}
# Per range, by range size: (entitlements done so far, corrected, activated, expired) — E1..E5 in id order.
PROGRESS = {
    1: [(1, 1, 0, 0), (2, 1, 0, 0), (3, 0, 0, 0), (4, 0, 0, 1), (5, 0, 1, 0)],
    2: [(2, 2, 0, 0), (4, 0, 0, 1), (5, 0, 1, 0)],
    10_000: [(5, 2, 1, 1)],
}
EXPECTED_LEDGER = [
    ("E1", None, 11, 14, None, "reconciliation: stored 3, expected 14 (1 case(s) hold terms of 15)"),
    ("E2", "email", 4, 15, 5, "reconciliation: stored 1, expected 5 (0 case(s) hold terms of 5)"),
]


def arrange(session) -> None:
    today = utcnow().date()
    accounts = [make_account(session) for _ in range(6)]
    e1 = make_entitlement(session, account=accounts[0], name="E1")
    e2 = make_entitlement(session, account=accounts[1], name="E2", channel_allocations={"email": 5})
    make_entitlement(session, account=accounts[2], name="E3")
    make_entitlement(
        session, account=accounts[3], name="E4", starts_on=date(2020, 1, 1), ends_on=today - timedelta(days=1)
    )
    make_entitlement(
        session,
        account=accounts[4],
        name="E5",
        state=EntitlementState.WAITING,
        starts_on=date(today.year, 1, 1),
    )
    held = make_case(session, contact=make_contact(session, account=accounts[0]), entitlement_id=e1.id)
    make_case(session, contact=make_contact(session, account=accounts[3]))
    make_case(session, contact=make_contact(session, account=accounts[5]))
    session.commit()
    change_case_status(session=session, case=held, to_status=CaseStatus.RESOLVED, source="agent", emit=False)
    session.commit()
    session.execute(update(Entitlement).where(Entitlement.id == e1.id).values(remaining=3))
    session.execute(
        update(EntitlementChannel).where(EntitlementChannel.entitlement_id == e2.id).values(remaining=1)
    )
    session.commit()


def outcome(session) -> tuple[dict, list, dict]:
    """(name → (remaining, state), the reconciliation's ledger rows by name, (name, channel) → remaining)."""
    entitlements = {
        name: (remaining, state.value)
        for name, remaining, state in session.execute(
            select(Entitlement.name, Entitlement.remaining, Entitlement.state)
        )
    }
    ledger = session.execute(
        select(
            Entitlement.name,
            EntitlementLedger.channel,
            EntitlementLedger.change,
            EntitlementLedger.remaining_after,
            EntitlementLedger.channel_remaining_after,
            EntitlementLedger.reason,
        )
        .join(Entitlement, Entitlement.id == EntitlementLedger.entitlement_id)
        .where(EntitlementLedger.reason.like("reconciliation%"))
        .order_by(Entitlement.name, EntitlementLedger.channel)
    ).all()
    channels = {
        (name, str(channel)): remaining
        for name, channel, remaining in session.execute(
            select(Entitlement.name, EntitlementChannel.channel, EntitlementChannel.remaining).join(
                Entitlement, Entitlement.id == EntitlementChannel.entitlement_id
            )
        )
    }
    session.commit()
    return entitlements, [tuple(r) for r in ledger], channels


EXPECTED_AFTER = {
    "E1": (14, "active"),
    "E2": (15, "active"),
    "E3": (15, "active"),
    "E4": (15, "expired"),
    "E5": (15, "active"),
}


def run(capsys, *extra) -> dict:
    capsys.readouterr()
    assert cli(["reconcile-entitlements", *extra, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_ranges_cut_the_entitlements_in_id_order_whatever_the_gaps(session) -> None:
    ids = [make_entitlement(session, account=make_account(session)).id for _ in range(7)]
    session.execute(Entitlement.__table__.delete().where(Entitlement.id.in_([ids[1], ids[2], ids[5]])))
    session.commit()

    ranges = entitlement_ranges(session=session, chunk_size=2)
    session.commit()

    # Left: ids 0, 3, 4, 6 (by position) → (before 0, 3], (3, 6].
    assert ranges == [(ids[0] - 1, ids[3], 2), (ids[3], ids[6], 2)]
    assert entitlement_ranges(session=session, chunk_size=10) == [(ids[0] - 1, ids[6], 4)]
    session.commit()


@pytest.mark.parametrize("chunk_size", [1, 2, 10_000])
def test_ranges_of_any_size_give_one_pass_figures_and_corrections(
    session, capsys, caplog, tmp_path, monkeypatch, chunk_size
) -> None:
    monkeypatch.setattr(get_settings(), "reports_dir", str(tmp_path))
    arrange(session)

    dry = run(capsys, "--dry-run", "--chunk-size", str(chunk_size))
    assert dry == ALL_FIGURES
    entitlements, ledger, _ = outcome(session)
    assert (entitlements["E1"], entitlements["E4"], ledger) == ((3, "active"), (15, "active"), [])

    with caplog.at_level(logging.INFO, logger="carepath.batch"):
        first = run(capsys, "--chunk-size", str(chunk_size))
    second = run(capsys, "--chunk-size", str(chunk_size))

    assert first == ALL_FIGURES
    assert second == {"checked": 5, "corrected": 0, "activated": 0, "expired": 0, "flagged": 2}
    entitlements, ledger, channels = outcome(session)
    assert entitlements == EXPECTED_AFTER
    assert channels == {("E2", "email"): 5}
    assert ledger == EXPECTED_LEDGER
    # One progress line per range, with that range's counts.
    lines = [r.getMessage() for r in caplog.records if r.name == "carepath.batch"]
    assert lines == [
        f"entitlement-reconciliation: batch {n}, {done} rows of 5 done "
        f"(corrected {corrected}, activated {activated}, expired {expired})"
        for n, (done, corrected, activated, expired) in enumerate(PROGRESS[chunk_size], start=1)
    ]
    # The reports (dry run, first, second; names sort by time): every drift row and flagged account.
    reports = [
        sorted(
            (r["kind"], r["name"], r["channel"], r["stored"], r["expected"], r["account"])
            for r in csv.DictReader(path.open(encoding="utf-8"))
        )
        for path in sorted(tmp_path.glob("entitlement-reconciliation-*.csv"))
    ]
    flagged = [("no_active_entitlement", "", "", "", "", number) for number in flagged_accounts(session)]
    drifted = [("drift", "E1", "", "3", "14", ""), ("drift", "E2", "email", "1", "5", "")]
    assert reports == [drifted + flagged, drifted + flagged, flagged]


def flagged_accounts(session) -> list[str]:
    """The account numbers of the accounts with E4 and without an entitlement (made 4th and 6th)."""
    from models import Account

    numbers = list(session.scalars(select(Account.account_number).order_by(Account.id)))
    session.commit()
    return [numbers[3], numbers[5]]


def test_a_remaining_moved_since_it_was_read_is_left_for_the_next_run(session) -> None:
    ent = make_entitlement(session, account=make_account(session), channel_allocations={"email": 5})
    session.commit()
    # Read as 3 (total) and 1 (email); a case has moved them since (to 15 and 5 here): nothing is overwritten.
    stale = [Drift(ent.id, ent.name, None, 3, 14, 1, 15), Drift(ent.id, ent.name, "email", 1, 4, 1, 5)]
    fresh = Drift(ent.id, ent.name, "email", 5, 4, 1, 5)
    with unit_of_work() as s:
        assert correct_drift(session=s, drifts=stale) == []
        assert correct_drift(session=s, drifts=[fresh]) == [fresh]
    entitlements, ledger, channels = outcome(session)
    assert (entitlements, channels) == ({ent.name: (15, "active")}, {(ent.name, "email"): 4})
    assert ledger == [
        (ent.name, "email", -1, 15, 4, "reconciliation: stored 5, expected 4 (1 case(s) hold terms of 5)")
    ]


@pytest.mark.usefixtures("prefect_server")
def test_the_flow_shows_its_progress_as_an_artifact(session, tmp_path, monkeypatch) -> None:
    from prefect.artifacts import Artifact

    from flows.entitlement_reconciliation import reconcile_entitlements_flow
    from tests.utils.flows import completed

    monkeypatch.setattr(get_settings(), "reports_dir", str(tmp_path))
    arrange(session)

    assert completed(reconcile_entitlements_flow, chunk_size=2) == ALL_FIGURES

    progress = Artifact.get("entitlement-reconciliation-progress")
    assert progress is not None and progress.type == "progress"
    assert (progress.data, progress.description) == (100.0, "entitlement-reconciliation: 5 rows, done")
    assert outcome(session)[:2] == (EXPECTED_AFTER, EXPECTED_LEDGER)


@pytest.mark.usefixtures("prefect_server")
def test_the_same_flow_runs_on_a_dask_cluster_by_configuration_alone(
    session, tmp_path, monkeypatch, dask_cluster
) -> None:
    """A process that imports the flow with CAREPATH_BATCH_TASK_RUNNER=dask and CAREPATH_DASK_ADDRESS (what a
    Prefect worker starts for a deployment run) runs the ranges on the cluster's workers: the same rows as the
    thread runner, and a completed flow run in Prefect."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL

    from flows.entitlement_reconciliation import reconcile_entitlements_flow
    from tests.utils.dask_runs import computed_on
    from tests.utils.databases import empty_all_tables
    from tests.utils.flows import completed

    monkeypatch.setattr(get_settings(), "reports_dir", str(tmp_path))
    arrange(session)
    assert completed(reconcile_entitlements_flow, chunk_size=2) == ALL_FIGURES  # threads, in this process
    on_threads = outcome(session)
    empty_all_tables(session.get_bind())
    session.expunge_all()
    arrange(session)

    env = os.environ | {
        "CAREPATH_BATCH_TASK_RUNNER": "dask",
        "CAREPATH_DASK_ADDRESS": dask_cluster.scheduler_address,
        "CAREPATH_BATCH_WORKERS": str(len(dask_cluster.workers)),
        "CAREPATH_REPORTS_DIR": str(tmp_path),
        "PREFECT_API_URL": PREFECT_API_URL.value(),
    }
    script = (
        "import json\n"
        "from flows.entitlement_reconciliation import reconcile_entitlements_flow as flow\n"
        "state = flow(return_state=True, chunk_size=2)\n"
        "print(json.dumps({'run': str(state.state_details.flow_run_id), 'type': state.type.value,"
        " 'result': state.result(raise_on_failure=False) if state.is_completed() else str(state)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ran = json.loads(done.stdout.strip().splitlines()[-1])

    assert (ran["type"], ran["result"]) == ("COMPLETED", ALL_FIGURES), done.stderr[-3000:]
    assert outcome(session) == on_threads
    assert on_threads[:2] == (EXPECTED_AFTER, EXPECTED_LEDGER)
    # Prefect saw the run complete, and each of its three ranges as a completed task run …
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(ran["run"])
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
        )
    assert flow_run.state.is_completed()
    assert (
        sorted((t.name.split("-")[0:3], t.state.type.value) for t in task_runs)
        == [(["reconcile", "entitlement", "range"], "COMPLETED")] * 3
    )
    # … and the cluster's scheduler handed out those three ranges (in the flow's process they would not reach it).
    assert len(computed_on(dask_cluster, "reconcile_entitlement_range")) == 3
