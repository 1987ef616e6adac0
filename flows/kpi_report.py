"""Daily KPI report: goals measured, the period's figures aggregated in the database (each part a task on the batch
task runner: threads, or Dask by configuration), PNG charts and a markdown report written by the flow's own
process, and the report (charts embedded) published as a markdown artifact."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from carepath.batch_runs import BatchProgress, batch_task_runner
from carepath.settings import get_settings
from tasks.kpi_report import (
    PARTS,
    STEPS,
    KpiReport,
    KpiReportConfig,
    ReportWindow,
    assemble,
    embedded,
    part_figures,
    render_markdown,
    report_part,
    report_window,
    write_report,
)


@task(name="kpi-report-part", task_run_name="kpi-report-{part}", cache_policy=NO_CACHE)
def collect_part(part: str, window: ReportWindow) -> Any:
    """One part of the report's figures (goals, per day, faults, cost …), aggregated in the database."""
    return report_part(part, window)


def collect(window: ReportWindow, progress: BatchProgress) -> KpiReport:
    """Every part on the flow's task runner at once; their results taken in order, with progress."""
    futures = {name: collect_part.submit(name, window) for name in PARTS}
    parts = {}
    for name, future in futures.items():
        parts[name] = future.result()
        progress.advance(1, **part_figures(name, parts[name]))
    return assemble(window, parts)


@task(name="write-kpi-report", cache_policy=NO_CACHE)
def write(report: KpiReport, out_dir: str, progress: BatchProgress) -> list[Path]:
    """Draw the charts and write the markdown report."""
    return write_report(report, out_dir, progress=progress)


@flow(name="kpi-report", task_runner=batch_task_runner())
def kpi_report_flow(
    as_of: date | None = None,
    days: Annotated[int, Field(ge=1, le=366)] = 30,
    hourly_rate: Annotated[float | None, Field(ge=0)] = None,
    trend_days: Annotated[int, Field(ge=1, le=183)] = 7,
    trend_min_count: Annotated[int, Field(ge=1)] = 5,
    rise_pct: Annotated[float, Field(ge=0)] = 50.0,
    gap_min_count: Annotated[int, Field(ge=1)] = 5,
    out_dir: str | None = None,
) -> dict:
    """Goals and KPIs of the last days: goal actuals and progress, cases opened and resolved per day, SLA
    compliance, faults and cost of support per product, what is rising, knowledge articles to write.

    Args:
        as_of: The report's last day (UTC); empty: today.
        days: Days the report covers, ending on `as_of`.
        hourly_rate: Cost of an hour of support work; empty: CAREPATH_SUPPORT_HOURLY_RATE.
        trend_days: Rising: the last N days against the N days before.
        trend_min_count: Rising only with at least this many faults or cases in the last N days.
        rise_pct: Rising: more than this many percent above the N days before.
        gap_min_count: Knowledge gap: an error code with at least this many faults or cases and no article.
        out_dir: Folder for the charts and the markdown; empty: CAREPATH_REPORTS_DIR.
    """
    config = KpiReportConfig(
        as_of=as_of,
        days=days,
        hourly_rate=hourly_rate,
        trend_days=trend_days,
        trend_min_count=trend_min_count,
        rise_pct=rise_pct,
        gap_min_count=gap_min_count,
    )
    progress = BatchProgress("kpi-report", total=STEPS, logger=get_run_logger())
    report = collect(report_window(config), progress)
    files = write(report, out_dir or get_settings().reports_dir, progress)  # in the flow's process
    create_markdown_artifact(
        key="kpi-report",
        markdown=render_markdown(report, embedded(files)),
        description=f"Service KPIs {report.first} – {report.as_of}; files in {files[-1].parent}",
    )
    return report.as_json() | {"files": [str(p) for p in files]}
