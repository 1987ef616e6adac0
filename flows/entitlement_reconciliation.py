"""Entitlement reconciliation (nightly, and from the Prefect UI): remaining terms recomputed from the cases that
hold them, drift corrected with its reason, states by date, customers without cover flagged.

The entitlements are reconciled in ranges, each range a task in a transaction of its own, on the batch task
runner (threads, or a Dask cluster: `CAREPATH_BATCH_TASK_RUNNER`); the figures are added up and the CSV report
written as the ranges come back, so memory holds a few ranges' drift rows, never the whole run's."""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Annotated

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from carepath.batch_runs import BatchProgress, batch_task_runner
from carepath.db import unit_of_work
from carepath.settings import get_settings
from models.base import utcnow
from tasks.entitlement_reconciliation import (
    Drift,
    EntitlementRange,
    RangeResult,
    ReconciliationSummary,
    entitlement_ranges,
    reconcile_range,
    uncovered_accounts,
)

CHUNK_SIZE = 10_000  # entitlements per range (one task, one transaction)
SHOWN_DRIFTS = 1_000  # drift rows in the table artifact and the command's output; the CSV has them all
SHOWN_FLAGGED = 20  # flagged accounts named in the artifact's description

RangeRunner = Callable[[list[EntitlementRange]], Iterator[RangeResult]]


class ReconciliationReport:
    """The CSV report, written row by row as ranges come back: drift rows, then the flagged accounts. Keeps
    the first `SHOWN_DRIFTS` drift rows for the artifact."""

    HEADER = (
        "kind",
        "entitlement_id",
        "name",
        "channel",
        "stored",
        "expected",
        "held",
        "allocation",
        "account",
    )

    def __init__(self, reports_dir: str):
        self.path = Path(reports_dir) / f"entitlement-reconciliation-{utcnow():%Y%m%dT%H%M%S.%fZ}.csv"
        self.shown: list[Drift] = []
        self.flagged_shown: list[str] = []

    def __enter__(self) -> ReconciliationReport:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", newline="", encoding="utf-8")
        self._out = csv.writer(self._file)
        self._out.writerow(self.HEADER)
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def add_drifts(self, drifts: list[Drift]) -> None:
        for d in drifts:
            row = [d.entitlement_id, d.name, d.channel or "", d.stored, d.expected, d.held, d.allocation, ""]
            self._out.writerow(["drift", *row])
        self.shown += drifts[: SHOWN_DRIFTS - len(self.shown)]

    def add_flagged(self, account_number: str) -> None:
        self._out.writerow(["no_active_entitlement", "", "", "", "", "", "", "", account_number])
        if len(self.flagged_shown) < SHOWN_FLAGGED:
            self.flagged_shown.append(account_number)


@task(name="reconcile-entitlement-range", cache_policy=NO_CACHE)
def reconcile_entitlement_range(after_id: int, last_id: int, on: date, dry_run: bool) -> RangeResult:
    """Reconcile the entitlements with ids in (after_id, last_id], in a transaction of their own."""
    with unit_of_work() as session:
        return reconcile_range(session=session, after_id=after_id, last_id=last_id, on=on, dry_run=dry_run)


def in_this_process(on: date, dry_run: bool) -> RangeRunner:
    """Ranges one after the other in the calling process (the command line: no Prefect API needed)."""
    return lambda ranges: (reconcile_entitlement_range.fn(r[0], r[1], on, dry_run) for r in ranges)


def on_task_runner(on: date, dry_run: bool, in_flight: int) -> RangeRunner:
    """Ranges submitted to the flow's task runner, at most `in_flight` at a time, results taken in order
    (a finished range's rows are written and dropped before more are asked for)."""

    def run(ranges: list[EntitlementRange]) -> Iterator[RangeResult]:
        pending = deque()
        for r in ranges:
            pending.append(reconcile_entitlement_range.submit(r.after_id, r.last_id, on, dry_run))
            if len(pending) >= in_flight:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    return run


def run_reconciliation(
    *, on: date, chunk_size: int, reconcile_ranges: RangeRunner, logger=None
) -> tuple[ReconciliationSummary, ReconciliationReport]:
    """Plan the ranges, reconcile them, add up and write the report as they come back (progress per range),
    then flag uncovered customers, streamed into the same report."""
    with unit_of_work() as session:
        ranges = entitlement_ranges(session=session, chunk_size=chunk_size)
    summary = ReconciliationSummary()
    progress = BatchProgress("entitlement-reconciliation", total=sum(r.count for r in ranges), logger=logger)
    with ReconciliationReport(get_settings().reports_dir) as report:
        for part in reconcile_ranges(ranges):
            summary.add(part)
            report.add_drifts(part.drifts)
            progress.advance(
                part.checked, corrected=len(part.drifts), activated=part.activated, expired=part.expired
            )
        with unit_of_work() as session:
            for account_number in uncovered_accounts(session=session, on=on):
                summary.flagged += 1
                report.add_flagged(account_number)
    progress.finish()
    return summary, report


@flow(name="reconcile-entitlements", task_runner=batch_task_runner())
def reconcile_entitlements_flow(
    dry_run: bool = False, chunk_size: Annotated[int, Field(ge=1, le=1_000_000)] = CHUNK_SIZE
) -> dict:
    """Recompute every entitlement's remaining terms (overall and per channel) from the cases holding them,
    correct and ledger any drift, move states by date, flag customers with open cases and no entitlement.

    Args:
        dry_run: Report what would change and change nothing.
        chunk_size: Entitlements per range; each range is one task and one transaction.
    """
    logger, on = get_run_logger(), utcnow().date()
    in_flight = 2 * get_settings().batch_workers
    summary, report = run_reconciliation(
        on=on, chunk_size=chunk_size, reconcile_ranges=on_task_runner(on, dry_run, in_flight), logger=logger
    )
    rows = [
        {
            "entitlement": d.name,
            "channel": d.channel or "total",
            "stored": d.stored,
            "expected": d.expected,
            "held": d.held,
        }
        for d in report.shown
    ] or [{"entitlement": "-", "channel": "-", "stored": 0, "expected": 0, "held": 0}]
    shown = f"first {len(report.shown):,} of {summary.corrected:,} drift rows; " * (
        summary.corrected > len(report.shown)
    )
    flagged = ", ".join(report.flagged_shown) + (" …" if summary.flagged > len(report.flagged_shown) else "")
    create_table_artifact(
        key="entitlement-reconciliation",
        table=rows,
        description=f"{'Dry run: ' if dry_run else ''}{summary.as_json()}; {shown}"
        f"flagged: {flagged or 'none'}; CSV {report.path}",
    )
    logger.info("Entitlement reconciliation: %s (report %s)", summary.as_json(), report.path)
    return summary.as_json()
