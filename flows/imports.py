"""Imports through the data-quality gates (from the Prefect UI, path as a parameter): contacts and accounts from
CSV, historical device faults from CSV or Parquet. The file is streamed in chunks, each chunk a task on the batch
task runner (threads, or Dask by configuration); progress shows per chunk; a validation summary is left."""

from __future__ import annotations

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from carepath.batch_runs import BatchProgress, batch_task_runner
from carepath.quality import expectations_table
from carepath.settings import get_settings
from tasks.imports import KINDS
from tasks.imports.files import SourceFile
from tasks.imports.run import ChunkResult, ImportSummary, import_chunk, import_source, inspect_source


@task(name="import-chunk", cache_policy=NO_CACHE)
def import_chunk_task(kind: str, source: SourceFile, chunk: pd.DataFrame, run_id: str) -> ChunkResult:
    """Validate one chunk against its suite, quarantine the failing rows, load the others (one transaction)."""
    return import_chunk(KINDS[kind], source, chunk, run_id)


def submit_chunk(kind: str, source: SourceFile, chunk: pd.DataFrame, run_id: str):
    """The chunk to the flow's task runner. Not wrapped in Prefect's `quote`: a quote is a tuple, which Dask
    rebuilds as a plain one on its way to a worker, so the task got the tuple, not the chunk (Prefect does not
    look inside a DataFrame for futures anyway)."""
    return import_chunk_task.submit(kind, source, chunk, run_id)


def run_import(kind: str, path: str) -> dict:
    """Stream the file through the gate, chunk by chunk, with progress; leave the validation summary."""
    source = inspect_source(KINDS[kind], path)
    progress = BatchProgress(f"import-{kind}", total=source.rows, logger=get_run_logger())
    summary = import_source(
        KINDS[kind],
        source,
        submit=submit_chunk,
        window=2 * get_settings().batch_workers,
        on_chunk=lambda c: progress.advance(c.rows, loaded=c.loaded, quarantined=c.quarantined),
    )
    progress.finish()
    create_markdown_artifact(
        key=f"import-{kind}-validation",
        markdown=render_validation_summary(summary),
        description=f"{source.name}: {summary.as_json()}",
    )
    return summary.as_json()


def render_validation_summary(summary: ImportSummary) -> str:
    """The run as markdown: the file, the counts, each expectation with its failing rows, a few of those rows."""
    s = summary.source
    samples = "\n".join(
        f"| {r['row']} | {', '.join(r['failed'])} | `{r['values']}` |" for r in summary.samples
    )
    return (
        f"# Import of {summary.kind}: {s.name}\n\n"
        f"| file | sha256 | rows | loaded | unchanged | quarantined |\n|---|---|---|---|---|---|\n"
        f"| `{s.path}` | `{s.sha256[:16]}…` | {summary.rows:,} | {summary.loaded:,} "
        f"| {summary.rows - summary.loaded - summary.quarantined:,} | {summary.quarantined:,} |\n\n"
        f"## Expectations (suite `{summary.kind}`)\n\n{expectations_table(summary.kind, summary.failed)}\n\n"
        + (
            f"## Failing rows (first {len(summary.samples)})\n\n| row | failed | values |\n|---|---|---|\n{samples}\n"
            if summary.samples
            else "No row failed.\n"
        )
    )


@flow(name="import-contacts", task_runner=batch_task_runner())
def import_contacts(path: str) -> dict:
    """Import contacts from a CSV file through the contacts gate: upsert by email, failing rows quarantined.

    Args:
        path: The CSV file on the worker's disk; its header names email, first_name, last_name, phone,
            account_number (any order).
    """
    return run_import("contacts", path)


@flow(name="import-accounts", task_runner=batch_task_runner())
def import_accounts(path: str) -> dict:
    """Import accounts from a CSV file through the accounts gate: upsert by account number, failing rows
    quarantined.

    Args:
        path: The CSV file on the worker's disk; its header names account_number, name, tier, domain.
    """
    return run_import("accounts", path)


@flow(name="import-faults", task_runner=batch_task_runner())
def import_faults(path: str) -> dict:
    """Import historical device faults (history: no case, no SMS) through the faults gate, idempotent by
    event id; failing rows quarantined.

    Args:
        path: The CSV or Parquet file on the worker's disk, with event_id, device_id, error_code, occurred_at,
            message.
    """
    return run_import("faults", path)
