"""Data-quality gates: Great Expectations suites, kept in the repository, applied to a pandas chunk.

A suite is GX suite JSON in `settings.expectations_dir` (`data/expectations/<name>.json`). Every expectation
carries a stable name in its `meta.name` ("email_is_valid", "error_code_is_integer"): the name operators see
in `failed_expectations`, in the quarantine and in the validation summary. Names never change once released;
a changed check gets a new name.

Frames hold the file's values as stripped text ("" for a missing value: each pattern says whether empty is
allowed). Checks that need a typed value read a derived column named `<column>__<what>` — a parsed number
(`error_code__number`), a UTC timestamp (`occurred_at__utc`), or a fact Carepath looked up (`device_id__registered`)
— null where there is nothing to check, which GX skips.

Great Expectations takes seconds to import, so it is imported on first use, once per process, with an ephemeral
context (nothing written to disk) and its progress bars off.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from carepath.settings import get_settings

ROW = "_row"  # the column naming each row (the file's row number, or the inbox event id)

_INTEGER = r"^[+-]?[0-9]+$"
# ISO 8601 with a date, a time and a zone (Z or an offset): a time without a zone is ambiguous.
_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?(?:Z|z|[+-][0-9]{2}(?::?[0-9]{2})?)$"

_lock = threading.Lock()  # one validation at a time per process: GX's context is not meant for threads


class QualityError(RuntimeError):
    """A suite could not be loaded or an expectation could not be evaluated (never a failing row)."""


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result on one frame."""

    name: str
    type: str
    column: str | None
    severity: str  # critical: the row is refused; warning: reported, the row goes on
    description: str
    unexpected: int  # rows that failed it


@dataclass
class Validation:
    """A frame's validation: each failing row's expectation names (critical and warnings apart), per
    expectation the count, and the raw GX success flag."""

    suite: str
    rows: int
    failed: dict[Any, list[str]] = field(default_factory=dict)  # row → critical expectations failed
    warned: dict[Any, list[str]] = field(default_factory=dict)  # row → warnings
    outcomes: list[ExpectationOutcome] = field(default_factory=list)

    def failed_counts(self) -> Counter[str]:
        return Counter(name for names in self.failed.values() for name in names)


def suite_path(name: str) -> Path:
    return Path(get_settings().expectations_dir) / f"{name}.json"


def load_suite_json(name: str) -> dict[str, Any]:
    """The suite as kept in the repository (GX suite JSON)."""
    try:
        return json.loads(suite_path(name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise QualityError(f"expectation suite {name!r} cannot be read: {exc}") from exc


def expectation_names(name: str) -> list[str]:
    """The stable names of a suite's expectations, in the suite's order."""
    return [e["meta"]["name"] for e in load_suite_json(name)["expectations"]]


def _gx():
    """Great Expectations, imported on first use (seconds), its start-up chatter (INFO logs) kept quiet."""
    gx_log = logging.getLogger("great_expectations")
    if gx_log.level == logging.NOTSET:
        gx_log.setLevel(logging.WARNING)
    import great_expectations as gx

    # This module sets itself to INFO, and announces each ephemeral context's temporary docs folder.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    return gx


@lru_cache(maxsize=1)
def _batch_definition():
    """An ephemeral GX context with one pandas dataframe asset (made once per process)."""
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas("carepath")
    return source.add_dataframe_asset("chunk").add_batch_definition_whole_dataframe("whole chunk")


@lru_cache(maxsize=16)
def _suite(name: str, mtime_ns: int):
    """The GX suite, built from its JSON (cached while the file is unchanged)."""
    gx = _gx()

    spec = load_suite_json(name)
    names = [e.get("meta", {}).get("name") for e in spec["expectations"]]
    if not all(names) or len(set(names)) != len(names):
        raise QualityError(f"suite {name!r}: every expectation needs a unique meta.name, got {names}")
    suite = gx.ExpectationSuite(
        name=spec["name"], expectations=spec["expectations"], meta=spec.get("meta"), notes=spec.get("notes")
    )
    if len(suite.expectations) != len(spec["expectations"]):  # GX logs and drops an invalid expectation
        raise QualityError(f"suite {name!r}: an expectation is not valid GX configuration (see the log)")
    return suite


def warm_up(suite: str | None = None) -> None:
    """Import Great Expectations and build its context (and a suite) now, not in the first batch."""
    _batch_definition()
    if suite:
        _suite(suite, suite_path(suite).stat().st_mtime_ns)


def validate(
    suite_name: str,
    frame: pd.DataFrame,
    *,
    parameters: dict[str, Any] | None = None,
    screened: bool = False,
) -> Validation:
    """Validate `frame` (with a `_row` column) against the suite; name each failing row's expectations.

    `screened` (the IoT drain, where a batch costs milliseconds): the suite's checks are first evaluated with
    the very pandas operations GX's own metrics run (`screen`), and Great Expectations validates only the rows
    that may fail, to name what they failed; a clean batch never loads GX. Files are validated whole by GX.
    """
    result = Validation(suite_name, len(frame))
    if frame.empty:
        return result
    if screened:
        suspect = screen(suite_name, frame, parameters or {})
        if suspect is not None:
            if not suspect.any():
                result.outcomes = [
                    ExpectationOutcome(
                        e["meta"]["name"],
                        e["type"],
                        e["kwargs"].get("column"),
                        e.get("severity", "critical"),
                        e.get("description", ""),
                        0,
                    )
                    for e in load_suite_json(suite_name)["expectations"]
                ]
                return result
            frame = frame[suspect.to_numpy()]
    suite = _suite(suite_name, suite_path(suite_name).stat().st_mtime_ns)
    with _lock:
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
        run = batch.validate(
            suite,
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": [ROW],
                "return_unexpected_index_query": False,
            },
            expectation_parameters=parameters or {},
        )
    for r in run.results:
        config = r.expectation_config
        name = config.meta["name"]
        if r.exception_info.get("raised_exception"):
            raise QualityError(
                f"{suite_name}: {name} could not be evaluated: {r.exception_info['exception_message']}"
            )
        rows = [u[ROW] for u in r.result.get("unexpected_index_list") or []]
        severity = str(getattr(config.severity, "value", config.severity or "critical"))
        target = result.warned if severity == "warning" else result.failed
        for row in rows:
            target.setdefault(_plain(row), []).append(name)
        result.outcomes.append(
            ExpectationOutcome(
                name, config.type, config.kwargs.get("column"), severity, config.description or "", len(rows)
            )
        )
    return result


def screen(suite_name: str, frame: pd.DataFrame, parameters: dict[str, Any]) -> pd.Series | None:
    """The rows that may fail one of the suite's expectations (warnings too), found with the pandas
    operations GX's metrics use for those expectation types; None when the suite holds an expectation this
    cannot screen exactly (a row condition, `mostly`, another type): then GX validates every row.
    tests/rules/test_quality.py holds the screen to GX's own verdicts on every suite, expectation by expectation."""
    masks = screen_each(suite_name, frame, parameters)
    if masks is None:
        return None
    suspect = pd.Series(False, index=frame.index)
    for mask in masks.values():
        suspect |= mask
    return suspect


def screen_each(
    suite_name: str, frame: pd.DataFrame, parameters: dict[str, Any]
) -> dict[str, pd.Series] | None:
    """Each expectation's unexpected rows as the screen finds them (by name), or None (see `screen`)."""
    masks = {}
    for e in load_suite_json(suite_name)["expectations"]:
        kw = e["kwargs"]
        check = _SCREENS.get(e["type"])
        if check is None or kw.get("row_condition") or kw.get("mostly", 1) != 1:
            return None
        masks[e["meta"]["name"]] = check(frame[kw["column"]], kw, parameters)
    return masks


def _bound(value: Any, parameters: dict[str, Any], column: pd.Series) -> Any:
    if isinstance(value, dict):  # {"$PARAMETER": name}
        value = parameters[value["$PARAMETER"]]
    if value is not None and isinstance(value, str) and pd.api.types.is_datetime64_any_dtype(column):
        value = pd.Timestamp(value)
    return value


def _outside(
    values: pd.Series, kw: dict[str, Any], parameters: dict[str, Any], column: pd.Series
) -> pd.Series:
    low, high = (
        _bound(kw.get("min_value"), parameters, column),
        _bound(kw.get("max_value"), parameters, column),
    )
    out = pd.Series(False, index=values.index)
    if low is not None:
        out |= (values <= low) if kw.get("strict_min") else (values < low)
    if high is not None:
        out |= (values >= high) if kw.get("strict_max") else (values > high)
    return out.fillna(False).astype(bool)


# Expectation type → its unexpected rows, as GX's pandas metrics find them (a null is unexpected only to
# not_be_null: the others skip nulls).
_SCREENS = {
    "expect_column_values_to_match_regex": lambda c, kw, p: (
        c.notna() & ~c.astype(str).str.contains(kw["regex"]).fillna(False).astype(bool)
    ),
    "expect_column_values_to_not_be_null": lambda c, kw, p: c.isna(),
    "expect_column_values_to_be_in_set": lambda c, kw, p: c.notna() & ~c.isin(kw["value_set"]),
    "expect_column_values_to_be_between": lambda c, kw, p: c.notna() & _outside(c, kw, p, c),
    "expect_column_value_lengths_to_be_between": lambda c, kw, p: (
        c.notna() & _outside(c.astype(str).str.len(), kw, p, c)
    ),
}


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones (they go into JSON and SQL)."""
    return value.item() if hasattr(value, "item") else value


# Derived columns: typed views of text columns (null where the text is not such a value).


def integer_values(text: pd.Series) -> pd.Series:
    """The integer each text holds (as a float, so that a huge one stays huge), null if it is not one."""
    plain = text.where(text.str.fullmatch(_INTEGER, na=False))
    return pd.to_numeric(plain, errors="coerce").astype("float64")


def timestamp_values(text: pd.Series) -> pd.Series:
    """The UTC instant each text names (ISO 8601 with a zone), null if it names none."""
    plain = text.where(text.str.fullmatch(_TIMESTAMP, na=False))
    return pd.to_datetime(plain, utc=True, format="ISO8601", errors="coerce")


def text_frame(values: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The `columns` of `values` as stripped text, "" for a missing value."""
    out = pd.DataFrame(index=values.index)
    for column in columns:
        out[column] = values[column].fillna("").astype(str).str.strip()
    return out


def expectations_table(suite_name: str, failed: Counter[str], warned: Counter[str] | None = None) -> str:
    """The suite's expectations as a markdown table: what each checks and how many rows failed it."""
    spec = load_suite_json(suite_name)
    warned = warned or Counter()
    lines = ["| expectation | checks | severity | rows failing |", "|---|---|---|---|"]
    for e in spec["expectations"]:
        name, severity = e["meta"]["name"], e.get("severity", "critical")
        count = warned[name] if severity == "warning" else failed[name]
        lines.append(f"| `{name}` | {e.get('description', '')} | {severity} | {count:,} |")
    for name in sorted(set(failed) - {e["meta"]["name"] for e in spec["expectations"]}):
        lines.append(f"| `{name}` | (not in the suite) | critical | {failed[name]:,} |")
    return "\n".join(lines)
