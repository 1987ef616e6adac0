"""Duplicate contacts: find likely pairs for review (a table artifact), and merge a pair an agent confirmed."""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from carepath.db import unit_of_work
from tasks.duplicates import find_duplicates
from tasks.merge import merge_contacts


@task(cache_policy=NO_CACHE)
def score_duplicate_pairs(min_score: float, max_block: int, limit: int | None) -> list[dict]:
    """Blocks of contacts sharing a phone, a name in an account or a squashed email → scored pairs."""
    with unit_of_work() as session:
        return [
            p.as_json()
            for p in find_duplicates(session=session, min_score=min_score, max_block=max_block, limit=limit)
        ]


@flow(name="find-duplicate-contacts")
def find_duplicate_contacts(
    min_score: Annotated[float, Field(ge=0, le=1)] = 0.5,
    max_block: Annotated[int, Field(ge=2, le=10_000)] = 50,
    limit: Annotated[int | None, Field(ge=1)] = None,
) -> dict:
    """Find likely duplicate contacts and publish them, best first, as a review list.

    Args:
        min_score: Pairs scored below this (0–1) are left out.
        max_block: A phone, name or address shared by more contacts than this is skipped (a switchboard).
        limit: At most this many pairs (empty: all).
    """
    pairs = score_duplicate_pairs(min_score, max_block, limit)
    create_table_artifact(
        key="duplicate-contacts",
        table=[{**p, "why": ", ".join(p["why"])} for p in pairs]
        or [{"a": None, "b": None, "score": None, "why": "none found"}],
        description=f"{len(pairs)} likely duplicate contact pair(s); merge one with `carepath merge A B`.",
    )
    get_run_logger().info("duplicate contacts: %d pair(s)", len(pairs))
    return {"pairs": pairs}


@flow(name="merge-contacts")
def merge_contacts_flow(master_id: int, duplicate_id: int) -> dict:
    """Merge a confirmed duplicate into its master: its records move, it is deactivated (never deleted).

    Args:
        master_id: The contact kept (A).
        duplicate_id: The contact merged into it (B).
    """
    with unit_of_work() as session:
        outcome = merge_contacts(session=session, master_id=master_id, duplicate_id=duplicate_id)
    get_run_logger().info("merged contact %s into %s: %s", duplicate_id, master_id, outcome.moved)
    return outcome.as_json()
