"""Batch flows on a local Dask cluster: the task runner the settings would build, and what the cluster ran."""

from __future__ import annotations

from typing import Any

from carepath.batch_runs import batch_task_runner
from carepath.settings import Settings


def on_dask(flow, cluster) -> Any:
    """The flow with the task runner `CAREPATH_BATCH_TASK_RUNNER=dask` and `CAREPATH_DASK_ADDRESS` give."""
    settings = Settings(
        _env_file=None,
        batch_task_runner="dask",
        dask_address=cluster.scheduler_address,
        batch_workers=len(cluster.workers),
    )
    return flow.with_options(task_runner=batch_task_runner(settings))


def computed_on(cluster, prefix: str) -> set[str]:
    """The keys of the tasks named `prefix…` (the task function's name) the cluster's workers computed."""
    return {
        str(key)
        for key, _start, finish, *_ in cluster.scheduler.transition_log
        if finish == "memory" and str(key).startswith(prefix)
    }
