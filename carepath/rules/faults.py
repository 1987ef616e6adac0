"""Rules of the IoT fault journey: which faults are critical, how often they recur, what to do with them."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from operator import itemgetter
from typing import NamedTuple


@dataclass(frozen=True)
class FaultRules:
    """The journey's knobs: critical above `threshold`; `min_count` faults within `window` open a case."""

    threshold: int = 10
    window: timedelta = timedelta(minutes=60)
    min_count: int = 1


class Fault(NamedTuple):
    """A validated fault as the journey sees it; `ref` is the caller's handle (the inbox row id).

    Named tuples rather than dataclasses: the drain makes one per fault, tens of thousands a second.
    """

    ref: int
    device_id: str
    error_code: int
    occurred_at: datetime
    message: str | None = None


class FaultAction(StrEnum):
    RECORD = "record"  # non-critical, or critical but not yet frequent enough
    OPEN_CASE = "open_case"
    ATTACH = "attach"  # to the device's open case (existing, or opened earlier in this batch)


class FaultDecision(NamedTuple):
    fault: Fault
    action: FaultAction
    critical: bool
    frequency: int | None  # the device's faults within the window ending at this fault (critical ones only)


# The drain plans thousands of devices a batch: members and the sort key looked up once, not per fault.
_RECORD, _OPEN_CASE, _ATTACH = FaultAction.RECORD, FaultAction.OPEN_CASE, FaultAction.ATTACH
_BY_TIME_THEN_REF = itemgetter(3, 0)  # (occurred_at, ref) of a Fault


class DevicePlan:
    """What one device's faults in a batch amount to: each fault's decision, the one that opens a case (if
    any) and those that count on a case (opened or attached)."""

    __slots__ = ("attached", "decisions", "device_id", "opens_case")

    def __init__(self, device_id: str, decisions: tuple[FaultDecision, ...]):
        self.device_id = device_id
        self.decisions = decisions
        self.attached: list[FaultDecision] = [d for d in decisions if d.action is not _RECORD]
        self.opens_case: FaultDecision | None = None
        for d in self.attached:
            if d.action is _OPEN_CASE:
                self.opens_case = d
                break

    def __repr__(self) -> str:
        return f"DevicePlan({self.device_id!r}, {self.decisions!r})"


def is_critical(error_code: int, threshold: int) -> bool:
    """A fault is critical when its error code exceeds the threshold (10 is not critical, 11 is)."""
    return error_code > threshold


def count_in_window(sorted_times: Sequence[datetime], at: datetime, window: timedelta) -> int:
    """How many of `sorted_times` fall within [at - window, at]."""
    return bisect_right(sorted_times, at) - bisect_left(sorted_times, at - window)


def plan_device(
    device_id: str,
    faults: Iterable[Fault],
    *,
    earlier_fault_times: Iterable[datetime],
    has_open_case: bool,
    rules: FaultRules,
) -> DevicePlan:
    """Decide, in time order, what each of a device's new faults does.

    The frequency of each critical fault counts every fault the device reported within the window (already
    recorded ones and this batch's, critical or not), so it is known before any text is sent. A critical fault opens a case once the count
    reaches `min_count`; while the device has an open case, further critical faults attach to it.
    """
    ordered = sorted(faults, key=_BY_TIME_THEN_REF)
    threshold, window = rules.threshold, rules.window
    criticals = [is_critical(f.error_code, threshold) for f in ordered]
    if not any(criticals):
        # Nothing critical: every fault is only recorded.
        return DevicePlan(device_id, tuple(FaultDecision(f, _RECORD, False, None) for f in ordered))
    times = sorted([*earlier_fault_times, *(f.occurred_at for f in ordered)])
    decisions = []
    case_open = has_open_case
    for fault, critical in zip(ordered, criticals, strict=True):
        if not critical:
            decisions.append(FaultDecision(fault, _RECORD, False, None))
            continue
        frequency = count_in_window(times, fault.occurred_at, window)
        if case_open:
            action = _ATTACH
        elif frequency >= rules.min_count:
            action, case_open = _OPEN_CASE, True
        else:
            action = _RECORD
        decisions.append(FaultDecision(fault, action, critical, frequency))
    return DevicePlan(device_id, tuple(decisions))


def case_title(*, error_code: int, device_id: str, product_name: str | None, message: str | None) -> str:
    """A case title an agent can scan: what failed, where, and the device's own words."""
    what = product_name or "Device"
    title = f"{what} {device_id}: critical fault {error_code}"
    if message:
        title += f" ({message})"
    return title[:300]
