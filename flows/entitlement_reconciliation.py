"""Entitlement reconciliation (nightly, and from the Prefect UI): remaining terms recomputed from the cases that
hold them, drift corrected with its reason, states by date, customers without cover flagged."""

from __future__ import annotations

import csv
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from carepath.db import unit_of_work
from carepath.settings import get_settings
from models.base import utcnow
from tasks.entitlement_reconciliation import ReconciliationSummary, reconcile_entitlements


def write_report(summary: ReconciliationSummary, reports_dir: str) -> Path:
    """The drift found (and corrected unless a dry run) and the flagged accounts, as a CSV file."""
    path = Path(reports_dir) / f"entitlement-reconciliation-{utcnow():%Y%m%dT%H%M%S.%fZ}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(
            [
                "kind",
                "entitlement_id",
                "name",
                "channel",
                "stored",
                "expected",
                "held",
                "allocation",
                "account",
            ]
        )
        for d in summary.drifts:
            out.writerow(
                [
                    "drift",
                    d.entitlement_id,
                    d.name,
                    d.channel or "",
                    d.stored,
                    d.expected,
                    d.held,
                    d.allocation,
                    "",
                ]
            )
        for number in summary.flagged_accounts:
            out.writerow(["no_active_entitlement", "", "", "", "", "", "", "", number])
    return path


@flow(name="reconcile-entitlements")
def reconcile_entitlements_flow(dry_run: bool = False) -> dict:
    """Recompute every entitlement's remaining terms (overall and per channel) from the cases holding them,
    correct and ledger any drift, move states by date, flag customers with open cases and no entitlement.

    Args:
        dry_run: Report what would change and change nothing.
    """
    with unit_of_work() as session:
        summary = reconcile_entitlements(session=session, on=utcnow().date(), dry_run=dry_run)
    report = write_report(summary, get_settings().reports_dir)
    rows = [
        {
            "entitlement": d.name,
            "channel": d.channel or "total",
            "stored": d.stored,
            "expected": d.expected,
            "held": d.held,
        }
        for d in summary.drifts
    ] or [{"entitlement": "-", "channel": "-", "stored": 0, "expected": 0, "held": 0}]
    create_table_artifact(
        key="entitlement-reconciliation",
        table=rows,
        description=f"{'Dry run: ' if dry_run else ''}{summary.as_json()}; flagged: {', '.join(summary.flagged_accounts) or 'none'}; CSV {report}",
    )
    get_run_logger().info("Entitlement reconciliation: %s (report %s)", summary.as_json(), report)
    return summary.as_json()
