"""What every long batch job shares: progress in the Prefect UI, counts logged per batch, and the task runner
chosen by configuration (threads in the flow's process, or Dask across processes or machines).

A batch flow splits its work into chunks (a file's record batches, a range of ids) and hands each chunk to a
task; `batch_task_runner()` decides where those tasks run, so moving a job onto Dask is a setting
(`CAREPATH_BATCH_TASK_RUNNER=dask`, `CAREPATH_DASK_ADDRESS=tcp://scheduler:8786`), not a code change.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING
from uuid import UUID

from carepath.settings import Settings, get_settings

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner

log = logging.getLogger("carepath.batch")


def batch_task_runner(settings: Settings | None = None) -> TaskRunner:
    """The task runner configured for batch jobs (read when the flow module is imported)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    s = settings or get_settings()
    if s.batch_task_runner == "dask":
        from prefect_dask import DaskTaskRunner  # imported only where Dask is chosen

        if s.dask_address:
            return DaskTaskRunner(address=s.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": s.batch_workers, "threads_per_worker": 1})
    return ThreadPoolTaskRunner(max_workers=s.batch_workers)


def _in_flow_run() -> bool:
    # A process that never imported Prefect runs no flow: the command line keeps its ~2 s import off.
    if "prefect.context" not in sys.modules:
        return False
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


class BatchProgress:
    """A job's progress: a Prefect progress artifact inside a flow run (updated per batch) and a log line per
    batch with its counts. Outside a flow run (the CLI) only the log lines are written."""

    def __init__(self, job: str, *, total: int | None = None, logger: logging.Logger | None = None):
        self.job, self.total, self.done, self.batches = job, total, 0, 0
        self.log = logger or log
        self._artifact: UUID | None = None
        if _in_flow_run():
            from prefect.artifacts import create_progress_artifact

            self._artifact = create_progress_artifact(
                progress=0.0, key=f"{job}-progress", description=f"{job}: 0 of {total or '?'}"
            )

    def advance(self, rows: int, **counts: int) -> None:
        """One batch finished: `rows` more done; `counts` are that batch's figures (loaded=…, failed=…)."""
        self.done += rows
        self.batches += 1
        figures = ", ".join(f"{k} {v:,}" for k, v in counts.items())
        of = f" of {self.total:,}" if self.total else ""
        self.log.info(
            "%s: batch %d, %s rows%s done (%s)", self.job, self.batches, f"{self.done:,}", of, figures
        )
        if self._artifact is not None:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(
                self._artifact,
                progress=self.percent,
                description=f"{self.job}: {self.done:,}{of} rows, batch {self.batches}",
            )

    @property
    def percent(self) -> float:
        if not self.total:
            return 0.0 if not self.done else 99.0  # unknown total: "under way" until finish()
        return min(100.0, 100.0 * self.done / self.total)

    def finish(self) -> None:
        """The job is over: the artifact shows 100 %."""
        if self._artifact is not None:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(
                self._artifact, progress=100.0, description=f"{self.job}: {self.done:,} rows, done"
            )
