"""The expectation suites kept in the repository: each loads into Great Expectations whole, names are stable,
and validation names each failing row's expectations (no database)."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from carepath import quality
from carepath.settings import get_settings

# The names operators and their scripts see in failed_expectations: changing one is a breaking change.
STABLE_NAMES = {
    "contacts": [
        "email_is_valid",
        "email_at_most_254_characters",
        "first_name_is_present",
        "first_name_at_most_100_characters",
        "last_name_is_present",
        "last_name_at_most_100_characters",
        "phone_is_e164",
        "account_number_is_known",
        "email_is_unique_in_file",
    ],
    "accounts": [
        "account_number_is_present",
        "account_number_at_most_32_characters",
        "name_is_present",
        "name_at_most_200_characters",
        "tier_is_known",
        "domain_is_valid",
        "domain_is_free",
        "account_number_is_unique_in_file",
    ],
    "faults": [
        "event_id_is_present",
        "event_id_at_most_128_characters",
        "device_id_is_present",
        "device_id_at_most_64_characters",
        "error_code_is_integer",
        "error_code_in_range",
        "occurred_at_is_timestamp",
        "occurred_at_not_in_future",
        "message_at_most_500_characters",
        "device_is_registered",
        "event_id_is_unique_in_file",
    ],
    "inbox_faults": [
        "device_id_is_present",
        "error_code_is_integer",
        "error_code_in_range",
        "occurred_at_is_timestamp",
        "occurred_at_not_in_future",
        "owner_phone_is_e164",
    ],
}


@pytest.mark.parametrize("suite", sorted(STABLE_NAMES))
def test_each_suite_loads_whole_into_gx_with_stable_readable_names(suite: str) -> None:
    spec = json.loads(quality.suite_path(suite).read_text())
    built = quality._suite(suite, quality.suite_path(suite).stat().st_mtime_ns)
    assert len(built.expectations) == len(spec["expectations"])
    assert quality.expectation_names(suite) == STABLE_NAMES[suite]
    assert all(re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", n) for n in STABLE_NAMES[suite])
    assert all(e.get("description") for e in spec["expectations"])


def test_suites_live_where_settings_say() -> None:
    assert quality.suite_path("contacts").parent.as_posix().endswith("data/expectations")
    assert quality.suite_path("contacts").parent == quality.suite_path("faults").parent
    assert str(quality.suite_path("faults")).startswith(get_settings().expectations_dir)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("12", 12.0),
        ("+7", 7.0),
        ("-3", -3.0),
        ("007", 7.0),
        ("abc", None),
        ("12.5", None),
        ("", None),
        ("1e3", None),
        ("99999999999999999999", 1e20),
    ],
)
def test_integer_values(text: str, number: float | None) -> None:
    [got] = quality.integer_values(pd.Series([text], dtype=object)).tolist()
    assert (None if pd.isna(got) else got) == number


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-11-20T10:00:00Z", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("2026-11-20 12:00:00+02:00", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("2026-11-20T10:00:00.5-0130", datetime(2026, 11, 20, 11, 30, 0, 500000, tzinfo=UTC)),
        ("2026-11-20T10:00Z", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("2026-11-20T10:00:00", None),  # no zone: ambiguous
        ("2026-02-30T10:00:00Z", None),  # no such day
        ("20 Nov 2026 10:00 UTC", None),
        ("", None),
    ],
)
def test_timestamp_values(text: str, utc: datetime | None) -> None:
    [got] = quality.timestamp_values(pd.Series([text], dtype=object)).tolist()
    assert (None if pd.isna(got) else got.to_pydatetime()) == utc


def test_validate_names_each_failing_row_and_keeps_warnings_apart() -> None:
    now = datetime.now(UTC)
    raw = pd.DataFrame(
        {
            "device_id": ["DEV-1", "", "DEV-3", "DEV-4", "DEV-5"],
            "error_code": ["14", "abc", "12.5", "2000000", "3"],
            "occurred_at": [
                now.isoformat(),
                "2026-11-20T10:00:00Z",
                "never",
                (now + timedelta(days=1)).isoformat(),
                "2026-11-20T10:00:00Z",
            ],
            "owner_phone": ["+306912345678", "", "0030", "", "+3912"],
        }
    )
    frame = quality.text_frame(raw, list(raw.columns))
    frame[quality.ROW] = [101, 102, 103, 104, 105]
    frame["error_code__number"] = quality.integer_values(frame["error_code"])
    frame["occurred_at__utc"] = quality.timestamp_values(frame["occurred_at"])

    v = quality.validate(
        "inbox_faults", frame, parameters={"now_plus_skew": (now + timedelta(minutes=5)).isoformat()}
    )

    assert v.failed == {
        102: ["device_id_is_present", "error_code_is_integer"],
        103: ["error_code_is_integer", "occurred_at_is_timestamp"],
        104: ["error_code_in_range", "occurred_at_not_in_future"],
    }
    assert v.warned == {
        103: ["owner_phone_is_e164"]
    }  # "+3912" has the E.164 shape; libphonenumber decides later
    assert v.failed_counts() == Counter(
        {
            "error_code_is_integer": 2,
            "device_id_is_present": 1,
            "occurred_at_is_timestamp": 1,
            "error_code_in_range": 1,
            "occurred_at_not_in_future": 1,
        }
    )
    table = quality.expectations_table("inbox_faults", v.failed_counts(), Counter({"owner_phone_is_e164": 1}))
    assert (
        "| `error_code_is_integer` | error_code is a whole number (not empty, not text, no fraction) | critical | 2 |"
        in table
    )
    assert table.count("\n") == len(STABLE_NAMES["inbox_faults"]) + 1


def adversarial_frame(suite: str, rows: int = 90) -> pd.DataFrame:
    """Every column the suite reads, filled with awkward values (empty, null, huge, unicode, edges)."""
    now = pd.Timestamp.now(tz="UTC")
    texts = [
        "",
        " ",
        "a",
        "a@b.co",
        "é@ελλάδα.gr",
        "a@-b.com",
        "+306912345678",
        "0030",
        "x" * 300,
        "y" * 600,
        "gold",
        "GOLD",
        "platinum",
        "-12",
        "12.5",
        "007",
        "2026-11-20T10:00:00Z",
        "DEV-1",
        None,
    ]
    numbers = [float("nan"), -1.0, 0.0, 14.0, 1_000_000.0, 1_000_001.0, 1e20]
    times = [
        pd.NaT,
        now - pd.Timedelta(days=1),
        now + pd.Timedelta(minutes=4),
        now + pd.Timedelta(minutes=6),
        now + pd.Timedelta(days=365),
    ]
    flags = [True, False, None, 1, 0]
    frame = pd.DataFrame({quality.ROW: range(rows)})
    for k, e in enumerate(json.loads(quality.suite_path(suite).read_text())["expectations"], start=3):
        column = e["kwargs"]["column"]
        if column in frame:
            continue
        if column.endswith("__number"):
            frame[column] = pd.Series(
                [numbers[(i * 3 + k) % len(numbers)] for i in range(rows)], dtype="float64"
            )
        elif column.endswith("__utc"):
            frame[column] = pd.to_datetime(
                pd.Series([times[(i * 2 + k) % len(times)] for i in range(rows)]), utc=True
            )
        elif "__" in column:
            frame[column] = pd.Series([flags[(i * 3 + k) % len(flags)] for i in range(rows)], dtype=object)
        else:
            frame[column] = pd.Series([texts[(i * 7 + k) % len(texts)] for i in range(rows)], dtype=object)
    return frame


@pytest.mark.parametrize("suite", sorted(STABLE_NAMES))
def test_the_screen_finds_exactly_the_rows_great_expectations_fails(suite: str) -> None:
    """The drain screens a batch with pandas before asking GX: it must never let a row through that GX fails."""
    frame = adversarial_frame(suite)
    parameters = {"now_plus_skew": (datetime.now(UTC) + timedelta(minutes=5)).isoformat()}

    by_gx = quality.validate(suite, frame, parameters=parameters)
    masks = quality.screen_each(suite, frame, parameters)
    screened = quality.validate(suite, frame, parameters=parameters, screened=True)

    assert masks is not None
    for name in STABLE_NAMES[suite]:
        gx_rows = {
            row for found in (by_gx.failed, by_gx.warned) for row, names in found.items() if name in names
        }
        screen_rows = set(frame.loc[masks[name].to_numpy(), quality.ROW])
        assert screen_rows == gx_rows, name
        assert 0 < len(gx_rows) < len(frame), (
            f"{name}: the frame should hold rows that pass and rows that fail"
        )
    assert (screened.failed, screened.warned) == (by_gx.failed, by_gx.warned)


def test_a_clean_batch_is_screened_without_a_gx_call(monkeypatch) -> None:
    frame = pd.DataFrame(
        {
            quality.ROW: [1],
            "device_id": ["DEV-1"],
            "error_code": ["14"],
            "occurred_at": ["2026-11-20T10:00:00Z"],
            "owner_phone": [""],
        }
    )
    frame["error_code__number"] = quality.integer_values(frame["error_code"])
    frame["occurred_at__utc"] = quality.timestamp_values(frame["occurred_at"])
    monkeypatch.setattr(quality, "_batch_definition", lambda: pytest.fail("GX was asked"))

    v = quality.validate(
        "inbox_faults", frame, parameters={"now_plus_skew": datetime.now(UTC).isoformat()}, screened=True
    )

    assert (v.failed, v.warned, [o.unexpected for o in v.outcomes]) == ({}, {}, [0] * 6)
