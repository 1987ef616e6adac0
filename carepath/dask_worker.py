"""A Dask worker that can run Carepath's batch tasks: `dask worker --preload carepath.dask_worker tcp://…:8786`.

Only `carepath` is installed; the tasks a flow sends to Dask are functions of `flows/` and `tasks/`, which a worker
imports by name from the project root. This preload puts that root on the worker's import path (as the
`carepath` launcher does for the command line), so a worker needs only the checkout and its environment:
`CAREPATH_DATABASE_URL` (each worker process builds its own engine from it when a task first opens a session).
"""

from __future__ import annotations

import sys

from carepath.settings import PROJECT_ROOT


def dask_setup(worker=None) -> None:
    """Called by Dask as the worker starts."""
    root = str(PROJECT_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)
