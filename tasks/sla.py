"""SLA KPI instances: started with the case, paused while it is on hold, settled by the first response and the
resolution, and moved on by the monitor, which warns and escalates exactly once each."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased

from carepath.bulk import bulk_insert_columns, in_list
from carepath.rules.sla import (
    Calendar,
    SlaTerms,
    add_business_minutes,
    choose_sla,
    extend_for_pause,
    notice_recipients,
)
from carepath.settings import Settings
from models import (
    Account,
    Agent,
    BusinessCalendar,
    Case,
    CaseStatus,
    Holiday,
    KpiInstance,
    KpiState,
    Message,
    MessageChannel,
    Queue,
    Sla,
    SlaKpi,
)
from models.base import utcnow
from tasks.messaging import insert_messages, outbox_row

OPEN_STATES = (KpiState.IN_PROGRESS, KpiState.NEARING_NONCOMPLIANCE, KpiState.PAUSED)


def calendar_of(session: Session, calendar_id: int | None) -> Calendar:
    """The SLA's business-hours calendar (none: around the clock)."""
    if calendar_id is None:
        return Calendar()
    cal = session.get(BusinessCalendar, calendar_id)
    days = session.scalars(select(Holiday.day).where(Holiday.calendar_id == calendar_id)).all()
    return Calendar.from_data(timezone=cal.timezone, hours=cal.hours, holidays=days, country=cal.country)


def _sla_terms(session: Session) -> list[SlaTerms]:
    rows = session.execute(select(Sla.id, Sla.applies_to_tier, Sla.applies_to_priorities)).all()
    return [SlaTerms(id_, tier.value if tier else None, tuple(prios or ())) for id_, tier, prios in rows]


def sla_for(session: Session, case: Case) -> Sla | None:
    """The SLA that applies to the case: the one for its account's tier, else one for every tier."""
    tier = (
        session.scalar(select(Account.tier).where(Account.id == case.account_id)) if case.account_id else None
    )
    sla_id = choose_sla(_sla_terms(session), tier=tier.value if tier else None, priority=case.priority.value)
    return session.get(Sla, sla_id) if sla_id is not None else None


def start_kpis(*, session: Session, case: Case, at: datetime | None = None) -> int:
    """Start the case's KPI instances (first response by, resolve by) on its SLA's clock. Returns how many."""
    session.flush()
    return start_kpis_for_cases(session=session, case_ids=[case.id], at=at or case.created_at)


def start_kpis_for_cases(*, session: Session, case_ids: list[int], at: datetime | None = None) -> int:
    """Start the KPI instances of many new cases at once (the IoT drain's batch): one read of the cases'
    tiers, the SLAs and their KPIs, each due time computed once per SLA KPI and start time, one insert.
    `at`: when the clocks start (default: each case's creation). Returns how many instances started."""
    if not case_ids:
        return 0
    slas = _sla_terms(session)
    if not slas:
        return 0
    cases = session.execute(
        select(Case.id, Case.created_at, Case.priority, Account.tier)
        .outerjoin(Account, Account.id == Case.account_id)
        .where(in_list(Case.id, case_ids, session))
    ).all()
    kpis: dict[int, list[tuple[int, int, int]]] = {}
    calendars: dict[int, Calendar] = {}
    by_calendar: dict[int | None, Calendar] = {}  # SLAs often share one (its holidays computed once)
    for sla_id, calendar_id, kpi_id, minutes, warn in session.execute(
        select(Sla.id, Sla.calendar_id, SlaKpi.id, SlaKpi.minutes, SlaKpi.warn_after_minutes)
        .join(SlaKpi, SlaKpi.sla_id == Sla.id)
        .order_by(SlaKpi.id)
    ):
        kpis.setdefault(sla_id, []).append((kpi_id, minutes, warn))
        if sla_id not in calendars:
            if calendar_id not in by_calendar:
                by_calendar[calendar_id] = calendar_of(session, calendar_id)
            calendars[sla_id] = by_calendar[calendar_id]
    due: dict[tuple[int, datetime], tuple[datetime, datetime]] = {}  # a batch shares one start: computed once
    chosen: dict[tuple[str | None, str], int | None] = {}  # the SLA by (tier, priority): few per batch
    # One lock order for concurrent drains: by case, then KPI (each SLA's KPIs are in id order).
    columns: dict[str, list] = {
        name: [] for name in ("case_id", "sla_kpi_id", "started_at", "warning_at", "due_at")
    }
    case_col, kpi_col, start_col, warn_col, due_col = columns.values()
    for case_id, created_at, priority, tier in sorted(cases, key=lambda c: c[0]):
        key = (tier.value if tier else None, priority.value)
        if key not in chosen:
            chosen[key] = choose_sla(slas, tier=key[0], priority=key[1])
        sla_id = chosen[key]
        start = at or created_at
        for kpi_id, minutes, warn in kpis.get(sla_id, ()):
            if (kpi_id, start) not in due:
                cal = calendars[sla_id]
                due[kpi_id, start] = (
                    add_business_minutes(start, warn, cal),
                    add_business_minutes(start, minutes, cal),
                )
            warning_at, due_at = due[kpi_id, start]
            case_col.append(case_id)
            kpi_col.append(kpi_id)
            start_col.append(start)
            warn_col.append(warning_at)
            due_col.append(due_at)
    n = len(case_col)
    columns["state"] = [KpiState.IN_PROGRESS] * n
    columns["paused_minutes"] = [0] * n
    bulk_insert_columns(session, KpiInstance.__table__, columns, conflict_columns=["case_id", "sla_kpi_id"])
    return n


def _open_kpis(session: Session, case_id: int, kpi: str | None = None):
    stmt = (
        select(KpiInstance, SlaKpi.kpi)
        .join(SlaKpi, SlaKpi.id == KpiInstance.sla_kpi_id)
        .where(KpiInstance.case_id == case_id, KpiInstance.state.in_(OPEN_STATES))
    )
    if kpi is not None:
        stmt = stmt.where(SlaKpi.kpi == kpi)
    return session.execute(stmt.with_for_update(of=KpiInstance)).all()


def record_first_response(*, session: Session, case_id: int, at: datetime | None = None) -> bool:
    """A person's first outbound email, SMS, call or article to the customer: the first-response KPI succeeds
    (if still open). Automatic acknowledgements and journey notifications must not call this. True when the
    case's first response was recorded now."""
    at = at or utcnow()
    first = session.execute(
        update(Case).where(Case.id == case_id, Case.first_response_at.is_(None)).values(first_response_at=at),
        execution_options={"synchronize_session": False},
    ).rowcount
    for instance, _ in _open_kpis(session, case_id, "first_response"):
        instance.state, instance.succeeded_at = KpiState.SUCCEEDED, at
    return bool(first)


def on_status_change(
    *, session: Session, case: Case, to_status: CaseStatus, reason: str, on_hold: list[str], at: datetime
) -> None:
    """Resolved: resolve-by succeeds, first response (never given) is cancelled. Cancelled: all cancelled.
    An on-hold reason pauses the clocks; leaving it resumes them, the warning and due times moved on by the
    working minutes the pause took on the SLA's calendar (a weekend on hold costs an office-hours SLA
    nothing)."""
    calendar: Calendar | None = None
    for instance, kpi in _open_kpis(session, case.id):
        if to_status is CaseStatus.RESOLVED:
            done = kpi == "resolve_by"
            instance.state = KpiState.SUCCEEDED if done else KpiState.CANCELLED
            instance.succeeded_at = at if done else None
        elif to_status is CaseStatus.CANCELLED:
            instance.state = KpiState.CANCELLED
        elif reason in on_hold and instance.state is not KpiState.PAUSED:
            instance.state, instance.paused_at = KpiState.PAUSED, at
        elif reason not in on_hold and instance.state is KpiState.PAUSED and instance.paused_at:
            calendar = calendar or _calendar_of_kpi(session, instance.sla_kpi_id)
            instance.due_at, paused = extend_for_pause(
                due_at=instance.due_at, paused_at=instance.paused_at, resumed_at=at, calendar=calendar
            )
            instance.warning_at, _ = extend_for_pause(
                due_at=instance.warning_at, paused_at=instance.paused_at, resumed_at=at, calendar=calendar
            )
            instance.paused_minutes += round(paused)
            instance.paused_at = None
            instance.state = (
                KpiState.IN_PROGRESS if at < instance.warning_at else KpiState.NEARING_NONCOMPLIANCE
            )
    session.flush()


def _calendar_of_kpi(session: Session, sla_kpi_id: int) -> Calendar:
    calendar_id = session.scalar(
        select(Sla.calendar_id).join(SlaKpi, SlaKpi.sla_id == Sla.id).where(SlaKpi.id == sla_kpi_id)
    )
    return calendar_of(session, calendar_id)


@dataclass
class MonitorSummary:
    states: dict[str, int]
    warnings_sent: int
    failures_sent: int

    def as_json(self) -> dict:
        return {
            "states": self.states,
            "warnings_sent": self.warnings_sent,
            "failures_sent": self.failures_sent,
        }


def monitor_kpis(
    *, session: Session, settings: Settings, now: datetime | None = None
) -> tuple[MonitorSummary, list[int]]:
    """Move running KPIs past their warning or due time on (set-based), and queue each warning and failure
    email once (the idempotency key is per KPI instance, step and recipient): a warning to the case's owner, a
    failure to the owner and the queue's manager (`notice_recipients`). Returns the summary and the ids of the
    emails queued now."""
    now = now or utcnow()
    failing = session.scalars(
        update(KpiInstance)
        .where(
            KpiInstance.state.in_([KpiState.IN_PROGRESS, KpiState.NEARING_NONCOMPLIANCE]),
            KpiInstance.due_at <= now,
        )
        .values(state=KpiState.NONCOMPLIANT, failed_at=now)
        .returning(KpiInstance.id),
        execution_options={"synchronize_session": False},
    ).all()
    warning = session.scalars(
        update(KpiInstance)
        .where(KpiInstance.state == KpiState.IN_PROGRESS, KpiInstance.warning_at <= now)
        .values(state=KpiState.NEARING_NONCOMPLIANCE)
        .returning(KpiInstance.id),
        execution_options={"synchronize_session": False},
    ).all()
    queued = _queue_notices(session, settings, warning, "warning", now) + _queue_notices(
        session, settings, failing, "failure", now
    )
    counts = Counter(
        {
            s.value: n
            for s, n in session.execute(select(KpiInstance.state, func.count()).group_by(KpiInstance.state))
        }
    )
    states = {s.value: counts.get(s.value, 0) for s in KpiState}
    return MonitorSummary(
        states, sum(1 for k in queued if k[1] == "warning"), sum(1 for k in queued if k[1] == "failure")
    ), [k[0] for k in queued]


def _queue_notices(
    session: Session, settings: Settings, ids: list[int], step: str, now: datetime
) -> list[tuple[int, str]]:
    if not ids:
        return []
    owner, manager = aliased(Agent), aliased(Agent)
    rows = session.execute(
        select(
            KpiInstance.id,
            KpiInstance.due_at,
            SlaKpi.kpi,
            Case.id,
            Case.ticket_number,
            Case.title,
            owner.email.label("owner"),
            manager.email.label("manager"),
        )
        .join(SlaKpi, SlaKpi.id == KpiInstance.sla_kpi_id)
        .join(Case, Case.id == KpiInstance.case_id)
        .outerjoin(owner, owner.id == Case.owner_agent_id)
        .outerjoin(Queue, Queue.id == Case.queue_id)
        .outerjoin(manager, manager.id == Queue.manager_agent_id)
        .where(KpiInstance.id.in_(ids))
    ).all()
    messages = []
    for r in rows:
        what = "will breach" if step == "warning" else "breached"
        subject = (
            f"[{r.ticket_number}] SLA {what}: {r.kpi.replace('_', ' ')} due {r.due_at:%Y-%m-%d %H:%M} UTC"
        )
        body = (
            f"Case {r.ticket_number} «{r.title}»: its {r.kpi.replace('_', ' ')} KPI {what} "
            f"(due {r.due_at:%Y-%m-%d %H:%M} UTC).\n"
        )
        for to in notice_recipients(
            step=step, owner=r.owner, manager=r.manager, fallback=settings.sla_escalation_email
        ):
            messages.append(
                outbox_row(
                    key=f"kpi:{r.id}:{step}:{to}",
                    channel=MessageChannel.EMAIL,
                    case_id=r[3],
                    contact_id=None,
                    journey_step=f"sla_{step}",
                    to_address=to,
                    subject=subject[:300],
                    body=body,
                    template=f"email/sla_{step}",
                    blocked=None,
                    now=now,
                )
            )
    if not messages:
        return []
    insert_messages(session=session, rows=messages)
    keys = [m["idempotency_key"] for m in messages]
    return [
        (mid, step) for mid in session.scalars(select(Message.id).where(Message.idempotency_key.in_(keys)))
    ]


def sla_monitor(*, settings: Settings, now: datetime | None = None) -> MonitorSummary:
    """One monitor run: move states on, queue the notices, send them (exactly once each)."""
    from carepath.db import unit_of_work
    from tasks.messaging import drain_outbox

    with unit_of_work() as session:
        summary, queued = monitor_kpis(session=session, settings=settings, now=now)
    if queued:
        drain_outbox(settings=settings, channel=MessageChannel.EMAIL, ids=queued)
    return summary
