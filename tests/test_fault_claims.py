"""Claiming faults: the fast path (PostgreSQL checks the shape, Python the rest) accepts exactly what
`FaultIn` accepts, with the same values, and hands everything else to pydantic for its error message."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from carepath.db import is_postgres
from carepath.schemas import FaultIn
from tasks.fault_claims import claim_faults
from tasks.ingest import store_fault_events
from tests.utils.factories import make_device

T = "2026-11-25T10:00:00Z"

# (label, payload fields besides event_id and device_id)
VARIANTS = [
    ("plain", {"error_code": 14, "occurred_at": T}),
    ("with message", {"error_code": 14, "occurred_at": T, "message": "Overheat"}),
    ("null message", {"error_code": 14, "occurred_at": T, "message": None}),
    ("empty message", {"error_code": 14, "occurred_at": T, "message": ""}),
    ("padded message", {"error_code": 14, "occurred_at": T, "message": "  Overheat "}),
    ("long message", {"error_code": 14, "occurred_at": T, "message": "x" * 501}),
    ("numeric message", {"error_code": 14, "occurred_at": T, "message": 5}),
    ("offset", {"error_code": 14, "occurred_at": "2026-11-25T12:00:00.123456+02:00"}),
    ("zero code", {"error_code": 0, "occurred_at": T}),
    ("top code", {"error_code": 1_000_000, "occurred_at": T}),
    ("code too big", {"error_code": 1_000_001, "occurred_at": T}),
    ("code far too big", {"error_code": 123456789, "occurred_at": T}),
    ("negative code", {"error_code": -3, "occurred_at": T}),
    ("float code", {"error_code": 14.0, "occurred_at": T}),
    ("fractional code", {"error_code": 14.5, "occurred_at": T}),
    ("exponent code", {"error_code": 1e2, "occurred_at": T}),
    ("string code", {"error_code": "14", "occurred_at": T}),
    ("word code", {"error_code": "E-OVERHEAT", "occurred_at": T}),
    ("bool code", {"error_code": True, "occurred_at": T}),
    ("no code", {"occurred_at": T}),
    ("no zone", {"error_code": 14, "occurred_at": "2026-11-25T10:00:00"}),
    ("30 February", {"error_code": 14, "occurred_at": "2026-02-30T10:00:00Z"}),
    ("29 February, leap year", {"error_code": 14, "occurred_at": "2028-02-29T10:00:00Z"}),
    ("leap second", {"error_code": 14, "occurred_at": "2026-12-31T23:59:60Z"}),
    ("hour 24", {"error_code": 14, "occurred_at": "2026-11-25T24:00:00Z"}),
    ("offset 24h", {"error_code": 14, "occurred_at": "2026-11-25T10:00:00+24:00"}),
    (
        "offset 16h",
        {"error_code": 14, "occurred_at": "2026-11-25T10:00:00+16:00"},
    ),  # PostgreSQL stops at 15:59
    ("offset 75 minutes", {"error_code": 14, "occurred_at": "2026-11-25T10:00:00+05:75"}),
    ("arabic-indic digits", {"error_code": 14, "occurred_at": "٢٠٢٦-11-25T10:00:00Z"}),
    ("date only", {"error_code": 14, "occurred_at": "2026-11-25"}),
    ("epoch number", {"error_code": 14, "occurred_at": 1764064800}),
    ("space separator", {"error_code": 14, "occurred_at": "2026-11-25 10:00:00Z"}),
    ("no time", {"error_code": 14}),
]


def pydantic_reading(payload: dict) -> tuple | str:
    try:
        f = FaultIn.model_validate(payload)
    except ValidationError:
        return "invalid"
    return (f.device_id, f.error_code, f.occurred_at, f.message)


def test_the_claim_reads_every_payload_as_pydantic_does(session) -> None:
    device = make_device(session)
    payloads = {
        label: {"event_id": f"claim-{i}", "device_id": device.device_id, **fields}
        for i, (label, fields) in enumerate(VARIANTS)
    }
    payloads["padded device id"] = {
        "event_id": "claim-pad",
        "device_id": f" {device.device_id}",
        **VARIANTS[0][1],
    }
    payloads["unregistered device"] = {"event_id": "claim-unreg", "device_id": "NOPE-1", **VARIANTS[0][1]}
    # Stored under its id as sent; pydantic strips the payload's copy, so the two no longer match.
    payloads["padded event id"] = {
        "event_id": " claim-padded ",
        "device_id": device.device_id,
        **VARIANTS[0][1],
    }
    stored = store_fault_events(session=session, events=list(payloads.values()))
    session.commit()
    label_of = {s.inbox_id: label for s, label in zip(stored, payloads, strict=True)}

    claim = claim_faults(session=session, limit=100)

    assert claim.count == len(payloads)
    got = {label_of[f.ref]: (f.device_id, f.error_code, f.occurred_at, f.message) for f in claim.faults}
    got.update({label_of[ref]: "invalid" for ref in claim.errors})
    expected = {label: pydantic_reading(p) for label, p in payloads.items()}
    expected["padded event id"] = "invalid"
    assert got == expected
    assert (
        "differs from the inbox"
        in claim.errors[next(r for r, label in label_of.items() if label == "padded event id")]
    )
    assert all(reason.startswith("invalid fault: ") for reason in claim.errors.values())
    if is_postgres(session):
        # The common shapes took the fast path, and it looked their device up itself.
        fast = {label_of[ref] for ref in claim.canonical}
        assert {"plain", "with message", "null message", "offset", "top code"} <= fast
        assert not fast & {"float code", "string code", "30 February", "padded message", "code too big"}
        assert claim.registered == {device.device_id}


@pytest.mark.parametrize("limit", [1, 3])
def test_claims_take_the_oldest_pending_faults_once(session, limit) -> None:
    device = make_device(session)
    stored = store_fault_events(
        session=session,
        events=[
            {"event_id": f"c-{i}", "device_id": device.device_id, "error_code": 5, "occurred_at": T}
            for i in range(4)
        ],
    )
    session.commit()
    first = claim_faults(session=session, limit=limit)
    second = claim_faults(session=session, limit=10)
    session.commit()
    assert [f.ref for f in first.faults] == [s.inbox_id for s in stored[:limit]]
    assert [f.ref for f in second.faults] == [s.inbox_id for s in stored[limit:]]


def test_routine_faults_are_set_apart_only_when_nothing_could_make_them_critical(session) -> None:
    quiet, loud, other = make_device(session), make_device(session), make_device(session)

    def event(event_id, device_id, code):
        return {"event_id": event_id, "device_id": device_id, "error_code": code, "occurred_at": T}

    stored = store_fault_events(
        session=session,
        events=[
            event("q-1", quiet.device_id, 3),
            event("q-2", quiet.device_id, 10),  # at the threshold: not critical
            event("l-1", loud.device_id, 2),  # routine on its own, but its device reports 11 below
            event("l-2", loud.device_id, 11),
            event("u-1", "NOT-REGISTERED", 1),
            event("o-1", other.device_id, 4),
        ],
    )
    session.commit()
    ids = {s.event_id: s.inbox_id for s in stored}

    claim = claim_faults(session=session, limit=100, threshold=10)

    if not is_postgres(session):  # SQLite plans every fault
        assert claim.routine == [] and len(claim.faults) == 6
        return
    assert sorted(claim.routine) == sorted([ids["q-1"], ids["q-2"], ids["o-1"]])
    assert {f.ref for f in claim.faults} == {ids["l-1"], ids["l-2"], ids["u-1"]}
    assert claim.registered == {loud.device_id}


def test_one_unreadable_payload_sends_the_whole_claim_through_planning(session) -> None:
    device = make_device(session)
    store_fault_events(
        session=session,
        events=[
            {"event_id": "r-1", "device_id": device.device_id, "error_code": 3, "occurred_at": T},
            # Spaces around the id: pydantic strips them, so this critical fault is the same device's.
            {"event_id": "r-2", "device_id": f" {device.device_id} ", "error_code": "14", "occurred_at": T},
        ],
    )
    session.commit()

    claim = claim_faults(session=session, limit=100, threshold=10)

    assert claim.routine == []
    assert sorted((f.device_id, f.error_code) for f in claim.faults) == [
        (device.device_id, 3),
        (device.device_id, 14),
    ]
