"""IoT fault journey (Customer Insights – Journeys): a device reports a fault → case → SMS to its owner."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import Field

from carepath.quality import expectations_table
from carepath.rules.faults import FaultRules
from carepath.settings import get_settings
from carepath.sources import journey_batch_size
from tasks.faults import DrainSummary, drain_faults
from tasks.messaging import SendSummary, send_queued_messages


@flow(name="iot-fault-journey")
def iot_fault_journey(
    batch_size: Annotated[int, Field(ge=1, le=50_000)] = journey_batch_size("iot-fault-journey"),
    max_batches: Annotated[int | None, Field(ge=1)] = None,
    send_messages: bool = True,
    critical_threshold: int | None = None,
    window_minutes: Annotated[int | None, Field(ge=1)] = None,
    min_count: Annotated[int | None, Field(ge=1)] = None,
) -> dict[str, int]:
    """Open a critical case for each frequent critical device fault and text its owner a tracking link.

    Args:
        batch_size: Faults claimed per transaction.
        max_batches: Stop after this many batches (default: until the inbox has no pending faults).
        send_messages: Hand the queued SMS to the provider at the end (off: leave them queued).
        critical_threshold: A fault is critical above this error code (default: settings, 10).
        window_minutes: Window in which a device's faults are counted (default: settings).
        min_count: Faults needed within the window before a case opens (default: settings, 1).
    """
    rules = fault_rules(critical_threshold, window_minutes, min_count)
    drained = DrainSummary()
    batches = 0
    while max_batches is None or batches < max_batches:
        batch = drain_faults(
            batch_size, rules
        )  # claim → keep critical → open or reuse case → queue SMS → mark
        drained.add(batch)
        batches += 1
        if batch.claimed < batch_size:
            break
    sent = send_queued_messages(channel="sms") if send_messages else SendSummary()  # text the customers
    return report(drained, sent)


def fault_rules(threshold: int | None, window_minutes: int | None, min_count: int | None) -> FaultRules:
    """The run's rules: parameters where given, settings otherwise."""
    s = get_settings()
    return FaultRules(
        threshold=s.fault_critical_threshold if threshold is None else threshold,
        window=timedelta(minutes=window_minutes or s.fault_window_minutes),
        min_count=min_count or s.fault_min_count,
    )


def report(drained: DrainSummary, sent: SendSummary) -> dict[str, int]:
    """Log the run's figures and publish them as a markdown artifact."""
    figures = {
        "faults_claimed": drained.claimed,
        "faults_failed": drained.failed,
        "faults_quarantined": drained.gate.quarantined,
        "critical_faults": drained.critical,
        "cases_opened": drained.cases_opened,
        "faults_attached": drained.faults_attached,
        "sms_queued": drained.sms_queued,
        "sms_blocked": drained.sms_blocked,
        "sms_sent": sent.sent,
        "sms_failed": sent.failed,
        "sms_unknown": sent.unknown,
    }
    get_run_logger().info("IoT fault journey: %s", figures)
    rows = "\n".join(f"| {k.replace('_', ' ')} | {v} |" for k, v in figures.items())
    failures = "\n".join(f"- inbox event {i}: {why}" for i, why in list(drained.errors.items())[:20])
    gate = drained.gate
    validation = (
        f"## Data-quality gate (suite `inbox_faults`): {gate.validated:,} faults validated, "
        f"{gate.quarantined:,} quarantined\n\n{expectations_table('inbox_faults', gate.failed, gate.warned)}"
    )
    create_markdown_artifact(
        key="iot-fault-journey",
        markdown=f"# IoT fault journey\n\n| figure | count |\n|---|---|\n{rows}\n\n{failures}\n\n{validation}",
        description="Faults drained, cases opened and SMS sent in this run",
    )
    return figures
