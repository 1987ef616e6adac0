"""The `carepath` console script. Only the `carepath` package is installed; the project's other folders
(cli/, flows/, tasks/, models/, data/ …) are found from the project root, as prefect.yaml's entrypoints are,
so this puts that root on the import path and then runs the command line, which sits above the flows."""

from __future__ import annotations

import os
import sys

from carepath.settings import PROJECT_ROOT


def main() -> int:
    # The ephemeral Prefect server a local run starts would report usage to Prefect, and print an ERROR when it
    # cannot (no internet here); an operator who wants it sets the variable.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect waits 20 s for the ephemeral server a local run starts; a busy 2-core machine (a test suite
    # beside it) has been seen to need more, and the demo then failed on a time-out, not on its work.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    root = str(PROJECT_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)
    from cli.commands import main as run_cli  # lazy: carepath/ never imports what sits above it

    return run_cli()
