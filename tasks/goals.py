"""Goals: set per agent, per team (a queue) or for everyone over a period; their actuals measured with one
aggregate query each (cases resolved, open cases, SLA compliance %, median first response)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from carepath.rules.kpis import METRICS, goal_progress, median, median_slice
from carepath.sql_time import day_end, day_start, minutes_between
from models import Agent, Case, CaseStatus, CaseStatusChange, Goal, KpiInstance, KpiState, Queue
from models.base import utcnow


class GoalRefused(ValueError):
    """A goal that cannot be set as asked (unknown metric, agent or team; a target or period out of range)."""


@dataclass(frozen=True)
class Owner:
    """Whose cases a goal counts: one agent's (the cases they own), one team's (the cases in its queue), or
    everyone's (both None)."""

    agent_id: int | None = None
    queue_id: int | None = None

    def where(self) -> list:
        return [
            *([Case.owner_agent_id == self.agent_id] if self.agent_id is not None else []),
            *([Case.queue_id == self.queue_id] if self.queue_id is not None else []),
        ]


EVERYONE = Owner()


def find_owner(*, session: Session, agent_email: str | None = None, team: str | None = None) -> Owner:
    """The agent (by email) or the team (by queue name, any case), or everyone."""
    if agent_email and team:
        raise GoalRefused("a goal belongs to an agent or to a team, not both")
    if agent_email:
        agent_id = session.scalar(select(Agent.id).where(func.lower(Agent.email) == agent_email.lower()))
        if agent_id is None:
            raise GoalRefused(f"no agent with the email {agent_email}")
        return Owner(agent_id=agent_id)
    if team:
        queue_id = session.scalar(select(Queue.id).where(func.lower(Queue.name) == team.lower()))
        if queue_id is None:
            known = ", ".join(session.scalars(select(Queue.name).order_by(Queue.name))) or "none"
            raise GoalRefused(f"no team (queue) named {team!r}; teams: {known}")
        return Owner(queue_id=queue_id)
    return EVERYONE


def set_goal(
    *,
    session: Session,
    metric: str,
    target: float,
    period_start: date,
    period_end: date,
    owner: Owner = EVERYONE,
    name: str | None = None,
    description: str | None = None,
    as_of: date | None = None,
) -> tuple[Goal, bool]:
    """Create the goal, or change the target of the one with the same metric, period and owner; its actual
    is measured at once. Returns the goal and whether it is new."""
    spec = METRICS.get(metric)
    if spec is None:
        raise GoalRefused(f"unknown metric {metric!r}; metrics: {', '.join(METRICS)}")
    if target < 0 or (spec.unit == "%" and target > 100):
        raise GoalRefused(f"target {target:g} is out of range for {metric}")
    if period_end < period_start:
        raise GoalRefused(f"the period ends ({period_end}) before it starts ({period_start})")
    goal = session.scalars(
        select(Goal).where(
            Goal.metric == metric,
            Goal.period_start == period_start,
            Goal.period_end == period_end,
            _is(Goal.owner_agent_id, owner.agent_id),
            _is(Goal.owner_queue_id, owner.queue_id),
        )
    ).one_or_none()
    created = goal is None
    if goal is None:
        goal = Goal(
            name=name or _default_name(session, spec.label, owner, period_start, period_end),
            metric=metric,
            period_start=period_start,
            period_end=period_end,
            owner_agent_id=owner.agent_id,
            owner_queue_id=owner.queue_id,
            description=spec.meaning,
        )
        session.add(goal)
    goal.target = float(target)
    goal.name = (name or goal.name)[:100]
    goal.description = description if description is not None else goal.description
    session.flush()
    refresh_goal(session=session, goal=goal, as_of=as_of or utcnow().date())
    return goal, created


def _is(column, value):
    return column.is_(None) if value is None else column == value


def _default_name(session: Session, label: str, owner: Owner, start: date, end: date) -> str:
    return f"{label}, {owner_label(session, owner)}, {start:%Y-%m-%d} to {end:%Y-%m-%d}"


def owner_label(session: Session, owner: Owner) -> str:
    if owner.agent_id is not None:
        return (
            session.scalar(select(Agent.email).where(Agent.id == owner.agent_id)) or f"agent {owner.agent_id}"
        )
    if owner.queue_id is not None:
        return (
            session.scalar(select(Queue.name).where(Queue.id == owner.queue_id)) or f"team {owner.queue_id}"
        )
    return "everyone"


def remove_goal(*, session: Session, goal_id: int) -> bool:
    """Delete a goal; False when there is none with that id."""
    goal = session.get(Goal, goal_id)
    if goal is None:
        return False
    session.delete(goal)
    session.flush()
    return True


def measure(
    *, session: Session, metric: str, period_start: date, period_end: date, owner: Owner, as_of: date
) -> float | None:
    """A metric's value for an owner over a period, as of a day (a running period counts up to that day's
    end). None before the period starts, or when there is nothing to measure (no SLA KPI ended, no
    response yet)."""
    if period_start > as_of:
        return None
    start, end = day_start(period_start), day_end(min(period_end, as_of))
    return MEASURES[metric](session, start, end, owner)


def cases_resolved(session: Session, start: datetime, end: datetime, owner: Owner) -> float:
    """Cases resolved in [start, end) that are still resolved."""
    return float(
        session.scalar(
            select(func.count())
            .select_from(Case)
            .where(
                Case.status == CaseStatus.RESOLVED,
                Case.resolved_at >= start,
                Case.resolved_at < end,
                *owner.where(),
            )
        )
        or 0
    )


def open_cases(session: Session, _start: datetime, end: datetime, owner: Owner) -> float:
    """Cases open at `end`: created before it and not resolved or cancelled by then (a case reopened after
    `end` counts by its latest resolution)."""
    cancelled_at = (
        select(func.max(CaseStatusChange.changed_at))
        .where(CaseStatusChange.case_id == Case.id, CaseStatusChange.to_status == CaseStatus.CANCELLED)
        .scalar_subquery()
    )
    still_open = or_(
        Case.status == CaseStatus.ACTIVE,
        and_(Case.status == CaseStatus.RESOLVED, Case.resolved_at >= end),
        and_(Case.status == CaseStatus.CANCELLED, cancelled_at >= end),
    )
    return float(
        session.scalar(
            select(func.count()).select_from(Case).where(Case.created_at < end, still_open, *owner.where())
        )
        or 0
    )


def sla_counts(session: Session, start: datetime, end: datetime, owner: Owner) -> tuple[int, int]:
    """SLA KPIs that ended in [start, end): (met in time, all ended). A KPI succeeded after its due time (the
    monitor had not yet failed it) is not met; cancelled and running ones are left out."""
    k = KpiInstance
    ended_at = func.coalesce(k.succeeded_at, k.failed_at)
    met = func.sum(case((and_(k.state == KpiState.SUCCEEDED, k.succeeded_at <= k.due_at), 1), else_=0))
    stmt = select(met, func.count()).where(
        k.state.in_([KpiState.SUCCEEDED, KpiState.NONCOMPLIANT]), ended_at >= start, ended_at < end
    )
    if owner.where():
        stmt = stmt.join(Case, Case.id == k.case_id).where(*owner.where())
    n_met, n = session.execute(stmt).one()
    return int(n_met or 0), int(n or 0)


def sla_compliance_pct(session: Session, start: datetime, end: datetime, owner: Owner) -> float | None:
    n_met, n = sla_counts(session, start, end, owner)
    return round(100.0 * n_met / n, 1) if n else None


def median_first_response_minutes(
    session: Session, start: datetime, end: datetime, owner: Owner
) -> float | None:
    """The median minutes to a first response of cases created in [start, end) that have one: the database
    counts, sorts and returns the middle one or two values."""
    where = [
        Case.created_at >= start,
        Case.created_at < end,
        Case.first_response_at.is_not(None),
        *owner.where(),
    ]
    n = session.scalar(select(func.count()).select_from(Case).where(*where)) or 0
    if not n:
        return None
    minutes = minutes_between(Case.created_at, Case.first_response_at, session.get_bind().dialect.name)
    offset, limit = median_slice(n)
    middle = session.scalars(
        select(minutes).where(*where).order_by(minutes).offset(offset).limit(limit)
    ).all()
    return round(median([float(m) for m in middle]) or 0.0, 1)


MEASURES = {
    "cases_resolved": cases_resolved,
    "open_cases": open_cases,
    "sla_compliance_pct": sla_compliance_pct,
    "median_first_response_minutes": median_first_response_minutes,
}
assert MEASURES.keys() == METRICS.keys()


def refresh_goal(*, session: Session, goal: Goal, as_of: date) -> Goal:
    """Measure one goal's actual as of a day and store it."""
    owner = Owner(goal.owner_agent_id, goal.owner_queue_id)
    goal.actual = measure(
        session=session,
        metric=goal.metric,
        period_start=goal.period_start,
        period_end=goal.period_end,
        owner=owner,
        as_of=as_of,
    )
    goal.computed_at = utcnow()
    return goal


def refresh_goals(*, session: Session, as_of: date, since: date | None = None) -> list[Goal]:
    """Measure every goal whose period has started by `as_of` and had not ended before `since` (default:
    `as_of`), so a period's final figure is taken on the first run after it ends when `since` reaches back."""
    goals = session.scalars(
        select(Goal)
        .where(
            Goal.period_start <= as_of, Goal.period_end >= (since or as_of), Goal.metric.in_(list(METRICS))
        )
        .order_by(Goal.period_start, Goal.metric, Goal.id)
    ).all()
    for goal in goals:
        refresh_goal(session=session, goal=goal, as_of=as_of)
    session.flush()
    return list(goals)


def goal_rows(
    *, session: Session, goals: list[Goal] | None = None, active_on: date | None = None
) -> list[dict]:
    """Goals as JSON-ready rows: owner, period, target, actual, progress % and whether met. Default: every
    goal (or those whose period includes `active_on`), newest periods first."""
    if goals is None:
        stmt = select(Goal).order_by(Goal.period_start.desc(), Goal.metric, Goal.id)
        if active_on is not None:
            stmt = stmt.where(Goal.period_start <= active_on, Goal.period_end >= active_on)
        goals = list(session.scalars(stmt))
    agents = dict(session.execute(select(Agent.id, Agent.email)).all()) if goals else {}
    queues = dict(session.execute(select(Queue.id, Queue.name)).all()) if goals else {}
    rows = []
    for g in goals:
        spec = METRICS.get(g.metric)
        progress = goal_progress(g.metric, g.target, g.actual) if spec else None
        rows.append(
            {
                "id": g.id,
                "name": g.name,
                "metric": g.metric,
                "agent": agents.get(g.owner_agent_id),
                "team": queues.get(g.owner_queue_id),
                "period_start": g.period_start.isoformat(),
                "period_end": g.period_end.isoformat(),
                "target": g.target,
                "actual": g.actual,
                "unit": spec.unit if spec else None,
                "progress_pct": progress.progress_pct if progress else None,
                "met": progress.met if progress else None,
                "computed_at": g.computed_at.isoformat() if g.computed_at else None,
            }
        )
    return rows
