"""Running flows in tests: under the session's Prefect API, asserting the run completed."""

from __future__ import annotations

from typing import Any


def completed(flow, **params) -> Any:
    """Run `flow` with `params`; fail the test unless the run completed; return its result."""
    state = flow(return_state=True, **params)
    assert state.is_completed(), state
    return state.result()
