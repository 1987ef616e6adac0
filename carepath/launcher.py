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
    root = str(PROJECT_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)
    from cli.commands import main as run_cli  # lazy: carepath/ never imports what sits above it

    return run_cli()
