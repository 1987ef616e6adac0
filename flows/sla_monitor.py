"""SLA monitor (every minute): KPI instances past their warning or due time move on; owners and the queues'
manager are warned and told of failures, exactly once each."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from carepath.settings import get_settings
from tasks.sla import MonitorSummary, sla_monitor


@task(name="monitor-kpi-instances", cache_policy=NO_CACHE)
def monitor() -> MonitorSummary:
    """Move KPI states on (set-based) and send each new warning and failure email."""
    return sla_monitor(settings=get_settings())


@flow(name="sla-monitor")
def sla_monitor_flow() -> dict:
    """Move every running SLA KPI on: nearing noncompliance past its warning time, noncompliant past its due
    time; email the case owner and the escalation address once for each."""
    summary = monitor()
    get_run_logger().info("SLA monitor: %s", summary.as_json())
    return summary.as_json()
