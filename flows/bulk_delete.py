"""Weekly bulk delete: merged, deactivated contacts nothing refers to any more are deleted in batches and
archived (restorable with `carepath restore ARCHIVE` until the archive is purged); the counts and ids are
published as an artifact."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from carepath.settings import get_settings
from tasks.bulk_delete import BulkDeleteConfig, BulkDeleteSummary, run_bulk_delete


@task(name="delete-merged-contacts", cache_policy=NO_CACHE)
def delete_merged_contacts(config: BulkDeleteConfig) -> BulkDeleteSummary:
    """Delete and archive merged contacts in batches (a dry run counts them); purge expired archives. Progress
    per batch: a log line with its counts and the run's progress artifact."""
    return run_bulk_delete(
        config, keep_archive_days=get_settings().bulk_delete_archive_days, logger=get_run_logger()
    )


def render_report(summary: BulkDeleteSummary) -> str:
    """The run as markdown: counts, the archive to restore from, and the ids deleted."""
    verb = "would delete" if summary.dry_run else "deleted"
    ids = ", ".join(str(i) for i in summary.ids) or "none"
    more = f" (first {len(summary.ids)} of {summary.deleted})" if summary.deleted > len(summary.ids) else ""
    return (
        f"# Bulk delete of merged contacts{' (dry run)' if summary.dry_run else ''}\n\n"
        f"| merged before | {verb} | kept (still referred to) | batches | archive |\n"
        f"|---|---|---|---|---|\n"
        f"| {summary.cutoff:%Y-%m-%d %H:%M} UTC | {summary.deleted} | {summary.kept} | {summary.batches} "
        f"| `{summary.archive}` |\n\n"
        + ("" if summary.dry_run else f"Restore with `carepath restore {summary.archive}`.\n\n")
        + f"Contact ids {verb}{more}: {ids}\n"
    )


@flow(name="bulk-delete-merged-contacts")
def bulk_delete_merged_contacts(config: BulkDeleteConfig = BulkDeleteConfig()) -> dict:  # noqa: B008
    """Delete contacts merged into another, deactivated and older than the bound, that nothing refers to
    (no case, message, device, consent, lead, entitlement or portal login); archive them; report.

    Args:
        config: Bounds (days since the merge, batch size, batches at most) and dry run.
    """
    summary = delete_merged_contacts(config)
    create_markdown_artifact(
        key="bulk-delete-merged-contacts", markdown=render_report(summary), description=summary.archive
    )
    get_run_logger().info("bulk delete: %s", summary.as_json())
    return summary.as_json() | {"batches": summary.batches, "dry_run": summary.dry_run}
