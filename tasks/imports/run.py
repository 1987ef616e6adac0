"""One import, chunk by chunk: validate against the kind's suite → quarantine the failing rows → load the others.

`import_chunk` is the unit of work (its own transaction), called directly by the CLI and as a Prefect task by
the import flows; `import_source` streams the file through it, at most `window` chunks in flight, so memory
holds a few chunks whatever the file's size.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import pandas as pd
from sqlalchemy import delete
from sqlalchemy.orm import Session

from carepath import quality
from carepath.bulk import bulk_insert
from carepath.db import unit_of_work
from carepath.quality import ROW
from carepath.settings import get_settings
from models import ImportKey
from models.base import utcnow
from tasks.imports.files import SourceFile, inspect_file, read_chunks
from tasks.quarantine import quarantine_file_rows, release_file_rows

KEY = "_key"  # the row's natural key, normalised (None when it has none); `_` columns are the loader's
SAMPLES = 10  # failing rows shown in a validation summary


@dataclass(frozen=True)
class ImportKind:
    """What one kind of import reads, checks and writes. Its suite is `data/expectations/<name>.json`."""

    name: str  # contacts, accounts, faults
    columns: tuple[str, ...]
    formats: tuple[str, ...]
    key: str  # the natural key's column: `<key>__first_in_file` is derived for the suite
    # Adds the derived columns the suite reads (and KEY); returns failures found outside GX (row → names).
    derive: Callable[[Session, pd.DataFrame], dict[int, list[str]]]
    load: Callable[[Session, pd.DataFrame], int]  # writes the good rows; returns how many changed anything


@dataclass
class ChunkResult:
    """What one chunk came to (plain data: it travels back from a task runner)."""

    rows: int
    loaded: int
    quarantined: int
    failed: Counter[str]
    samples: list[dict[str, Any]]


@dataclass
class ImportSummary:
    """A whole import: the operator's figures and what the validation summary shows."""

    kind: str
    source: SourceFile
    rows: int = 0
    loaded: int = 0
    quarantined: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    samples: list[dict[str, Any]] = field(default_factory=list)
    chunks: int = 0

    def add(self, chunk: ChunkResult) -> None:
        self.rows += chunk.rows
        self.loaded += chunk.loaded
        self.quarantined += chunk.quarantined
        self.failed.update(chunk.failed)
        self.samples.extend(chunk.samples[: SAMPLES - len(self.samples)])
        self.chunks += 1

    def as_json(self) -> dict[str, Any]:
        """`{"loaded", "quarantined", "failed_expectations": {name: rows}}`, names in the suite's order."""
        order = {n: i for i, n in enumerate(quality.expectation_names(self.kind))}
        names = sorted(self.failed, key=lambda n: (order.get(n, len(order)), n))
        return {
            "loaded": self.loaded,
            "quarantined": self.quarantined,
            "failed_expectations": {n: self.failed[n] for n in names},
        }


def objects(frame: pd.DataFrame, values: list[Any]) -> pd.Series:
    """A derived column as plain Python objects, None kept as None (pandas would make text columns `str`,
    and None a NaN)."""
    return pd.Series(values, index=frame.index, dtype=object)


def gate_parameters() -> dict[str, Any]:
    """Run-time values the suites refer to (`$PARAMETER`)."""
    skew = timedelta(seconds=get_settings().clock_skew_seconds)
    return {"now_plus_skew": (utcnow() + skew).isoformat()}


def import_chunk(kind: ImportKind, source: SourceFile, chunk: pd.DataFrame, run_id: str) -> ChunkResult:
    """Validate one chunk, quarantine its failing rows with the expectations they failed, load the rest."""
    frame = quality.text_frame(chunk, list(kind.columns))
    frame[ROW] = chunk[ROW].to_numpy()
    with unit_of_work() as session:
        extra = kind.derive(session, frame)
        frame[f"{kind.key}__first_in_file"] = first_in_file(session=session, run_id=run_id, keys=frame[KEY])
        private = [c for c in frame.columns if c.startswith("_") and c != ROW]  # the loader's
        validation = quality.validate(kind.name, frame.drop(columns=private), parameters=gate_parameters())
        failed = validation.failed
        for row, names in extra.items():
            failed.setdefault(row, []).extend(n for n in names if n not in failed.get(row, []))
        rows = sorted(failed)
        values = chunk.set_index(ROW).loc[rows, list(kind.columns)].to_dict("records") if rows else []
        bad = [(row, v, failed[row]) for row, v in zip(rows, values)]
        quarantine_file_rows(
            session=session, kind=kind.name, file_name=source.name, file_sha256=source.sha256, rows=bad
        )
        good = frame[~frame[ROW].isin(failed.keys())]
        loaded = kind.load(session, good) if len(good) else 0
        first, last = int(frame[ROW].iloc[0]), int(frame[ROW].iloc[-1])
        release_file_rows(
            session=session,
            kind=kind.name,
            file_sha256=source.sha256,
            first=first,
            last=last,
            still_bad=failed.keys(),
        )
    return ChunkResult(
        rows=len(frame),
        loaded=loaded,
        quarantined=len(bad),
        failed=Counter(n for names in failed.values() for n in names),
        samples=[{"row": row, "failed": names, "values": values} for row, values, names in bad[:SAMPLES]],
    )


def first_in_file(*, session: Session, run_id: str, keys: pd.Series) -> list[bool | None]:
    """For each key: True where no earlier row of this run's file had it, False for a repeat, None for no key.

    The keys live in `import_key` for the run (as sha256 digests: any length, and no email kept in a scratch
    table), so a repeat is found across chunks (and across workers) with the database's memory, not the
    process's.
    """
    present = keys[keys.notna()].map(lambda k: hashlib.sha256(str(k).encode()).hexdigest())
    repeat_in_chunk = present.duplicated()
    distinct = list(dict.fromkeys(present))
    new: set[str] = set()
    if distinct:
        inserted = bulk_insert(
            session,
            ImportKey.__table__,
            [{"run_id": run_id, "key": k, "seen_at": utcnow()} for k in distinct],
            conflict_columns=["run_id", "key"],
            returning=["key"],
        )
        new = {r.key for r in inserted}
    digests = present.to_dict()
    return [(digests[i] in new and not repeat_in_chunk[i]) if i in digests else None for i in keys.index]


class Submit(Protocol):
    def __call__(self, kind: str, source: SourceFile, chunk: pd.DataFrame, run_id: str) -> Any: ...


class _Done:
    def __init__(self, value: ChunkResult):
        self.value = value

    def result(self) -> ChunkResult:
        return self.value


def inspect_source(kind: ImportKind, path: str) -> SourceFile:
    """The file, checked (format, encoding, header) and hashed; raises ImportFileError."""
    return inspect_file(path, columns=kind.columns, formats=kind.formats)


def import_source(
    kind: ImportKind,
    source: SourceFile,
    *,
    submit: Submit | None = None,
    window: int = 1,
    on_chunk: Callable[[ChunkResult], None] | None = None,
) -> ImportSummary:
    """Stream the file through `import_chunk` (or `submit`, a task's submit: it returns a future), keeping at
    most `window` chunks in flight; the run's keys are forgotten at the end."""
    settings = get_settings()
    run_id = str(uuid.uuid4())
    forget_keys(older_than=timedelta(days=1))  # left by runs that died
    summary = ImportSummary(kind.name, source)
    in_flight: deque = deque()

    def collect(future) -> None:
        result = future.result()
        summary.add(result)
        if on_chunk:
            on_chunk(result)

    try:
        for chunk in read_chunks(source, settings.import_chunk_rows):
            if submit is None:
                in_flight.append(_Done(import_chunk(kind, source, chunk, run_id)))
            else:
                in_flight.append(submit(kind.name, source, chunk, run_id))
            while len(in_flight) >= window:
                collect(in_flight.popleft())
        while in_flight:
            collect(in_flight.popleft())
    finally:
        forget_keys(run_id=run_id)
    return summary


def forget_keys(*, run_id: str | None = None, older_than: timedelta | None = None) -> None:
    """Delete a run's keys (or every run's older than a bound)."""
    t = ImportKey.__table__
    with unit_of_work() as session:
        if run_id:
            session.execute(delete(t).where(t.c.run_id == run_id))
        if older_than:
            session.execute(delete(t).where(t.c.seen_at < utcnow() - older_than))
