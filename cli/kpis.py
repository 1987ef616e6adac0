"""`carepath goal set|remove`, `carepath goals` and `carepath kpi-report`: operators set goals per agent, team or
everyone, see how far each has come, and produce the KPI report (the daily `kpi-report` flow's work, without
Prefect)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date

from carepath.db import unit_of_work
from carepath.rules.kpis import METRICS, month_of
from carepath.settings import get_settings


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def ensure_schema() -> None:
    """A database with no tables yet (a fresh clone's embedded SQLite) gets the schema first, so a report on it
    is an empty report, not an error; an existing schema is never touched here."""
    from sqlalchemy import inspect

    from carepath.db import get_engine

    if not inspect(get_engine()).has_table("support_case"):
        from carepath.migrate import upgrade

        print("the database had no schema: created it (carepath migrate)", file=sys.stderr)
        upgrade()


def _today() -> date:
    from models.base import utcnow

    return utcnow().date()


def cmd_goal_set(args: argparse.Namespace) -> int:
    """Create a goal, or change the target of the one with the same metric, period and owner."""
    from tasks.goals import GoalRefused, find_owner, goal_rows, set_goal

    # Default period: a calendar month (this one; or the one --from or --to falls in).
    start = args.from_ or (args.to.replace(day=1) if args.to else month_of(_today())[0])
    end = args.to or month_of(start)[1]
    ensure_schema()
    try:
        with unit_of_work() as session:
            owner = find_owner(session=session, agent_email=args.agent, team=args.team)
            goal, created = set_goal(
                session=session,
                metric=args.metric,
                target=args.target,
                period_start=start,
                period_end=end,
                owner=owner,
                name=args.name,
                description=args.description,
            )
            [row] = goal_rows(session=session, goals=[goal])
    except GoalRefused as exc:
        print(f"goal refused: {exc}", file=sys.stderr)
        return 2
    row["created"] = created
    if args.json:
        print(json.dumps(row))
    else:
        print(f"{'set' if created else 'changed'} goal {row['id']}: {_line(row)}")
    return 0


def cmd_goal_remove(args: argparse.Namespace) -> int:
    from tasks.goals import remove_goal

    ensure_schema()
    with unit_of_work() as session:
        removed = remove_goal(session=session, goal_id=args.goal_id)
    if args.json:
        print(json.dumps({"id": args.goal_id, "removed": removed}))
    else:
        print(f"goal {args.goal_id} {'removed' if removed else 'not found'}")
    return 0 if removed else 1


def cmd_goals(args: argparse.Namespace) -> int:
    """Goals with target, actual and progress (measured now with --refresh)."""
    from models import Goal
    from tasks.goals import goal_rows, refresh_goal

    ensure_schema()
    with unit_of_work() as session:
        rows = goal_rows(session=session, active_on=args.on)
        if args.refresh:
            goals = [session.get(Goal, r["id"]) for r in rows]
            today = _today()
            rows = goal_rows(
                session=session, goals=[refresh_goal(session=session, goal=g, as_of=today) for g in goals]
            )
    if args.json:
        print(json.dumps({"goals": rows}))
        return 0
    if not rows:
        print(
            "no goals" + (f" in force on {args.on}" if args.on else "") + " (set one with carepath goal set)"
        )
    for row in rows:
        print(f"{row['id']:>4}  {_line(row)}")
    return 0


def _line(row: dict) -> str:
    owner = row["agent"] or (f"team {row['team']}" if row["team"] else "everyone")
    unit = row["unit"] or ""
    actual = "not measured" if row["actual"] is None else f"{row['actual']:g} {unit}".strip()
    progress = (
        ""
        if row["progress_pct"] is None
        else f", {row['progress_pct']:g} %" + (" (met)" if row["met"] else "")
    )
    return (
        f"{row['metric']} for {owner}, {row['period_start']}–{row['period_end']}: "
        f"target {row['target']:g} {unit}".rstrip()
        + f", actual {actual}{progress}"
    )


def cmd_kpi_report(args: argparse.Namespace) -> int:
    """The KPI report, written to --out (default CAREPATH_REPORTS_DIR): charts and markdown."""
    from pydantic import ValidationError

    from carepath.batch_runs import BatchProgress
    from tasks.kpi_report import STEPS, KpiReportConfig, collect_kpis, write_report

    try:
        config = KpiReportConfig(
            as_of=args.as_of,
            days=args.days,
            hourly_rate=args.hourly_rate,
            trend_days=args.trend_days,
            trend_min_count=args.trend_min_count,
            rise_pct=args.rise_pct,
            gap_min_count=args.gap_min_count,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"kpi report refused: {problems}", file=sys.stderr)
        return 2
    ensure_schema()
    progress = BatchProgress("kpi-report", total=STEPS)  # a log line per step on stderr
    report = collect_kpis(config, progress=progress)
    files = write_report(report, args.out or get_settings().reports_dir, progress=progress)
    if args.json:
        print(json.dumps({"files": [str(p) for p in files]}))
        return 0
    t = report.totals
    print(
        f"KPIs {report.first} – {report.as_of}: opened {t['cases_opened']}, resolved {t['cases_resolved']}, "
        f"open {t['open_cases']}, SLA compliance "
        + (f"{t['sla_compliance_pct']} %" if t["sla_compliance_pct"] is not None else "–")
        + f", goals {len(report.goals)}, rising {len(report.rising)}, knowledge gaps {len(report.gaps)}"
    )
    for path in files:
        print(f"  {path}")
    return 0


def print_demo_kpi_report() -> None:
    """The demo's last step: today's KPI figures and goals in a few lines. The charts are left to
    `carepath kpi-report` (matplotlib's import and four charts would add a second or two to the demo)."""
    import logging

    from tasks.kpi_report import KpiReportConfig, collect_kpis

    logging.getLogger("carepath.batch").setLevel(logging.WARNING)  # its per-step lines are for long runs
    report = collect_kpis(KpiReportConfig())
    t = report.totals
    sla = "–" if t["sla_compliance_pct"] is None else f"{t['sla_compliance_pct']:g} %"
    print(
        f"\nKPIs of the last {report.config.days} days: {t['cases_opened']} case(s) opened, "
        f"{t['cases_resolved']} resolved, {t['open_cases']} open, SLA compliance {sla}"
    )
    for row in report.goals:
        print(f"  goal {_line(row)}")
    print("  Charts and the report: carepath kpi-report --out DIR (daily: the kpi-report deployment)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("goal", help="set or remove a goal (per agent, team or everyone, over a period)")
    goal = p.add_subparsers(dest="goal_command", required=True)
    q = goal.add_parser(
        "set",
        help="create a goal, or change the target of the one with the same metric, period and owner",
        description="Metrics: "
        + "; ".join(
            f"{m.key} ({m.unit}, {'higher' if m.higher_is_better else 'lower'} is better): {m.meaning}"
            for m in METRICS.values()
        ),
    )
    q.add_argument("--metric", required=True, choices=list(METRICS))
    q.add_argument(
        "--target", required=True, type=float, help="the value to reach (a ceiling where lower is better)"
    )
    q.add_argument(
        "--from", dest="from_", type=_day, default=None, help="first day (default: this month's first)"
    )
    q.add_argument(
        "--to", type=_day, default=None, help="last day, inclusive (default: the end of that month)"
    )
    who = q.add_mutually_exclusive_group()
    who.add_argument("--agent", metavar="EMAIL", help="an agent's goal: the cases they own")
    who.add_argument("--team", metavar="QUEUE", help="a team's goal: the cases in that queue (by name)")
    q.add_argument("--name", default=None, help="a name for the goal (default: metric, owner and period)")
    q.add_argument("--description", default=None)
    q.add_argument("--json", action="store_true", help="print the goal with its actual and progress")
    q.set_defaults(func=cmd_goal_set)
    q = goal.add_parser("remove", help="delete a goal")
    q.add_argument("goal_id", type=int, help="the id `carepath goals` shows")
    q.add_argument("--json", action="store_true", help='print {"id", "removed"}')
    q.set_defaults(func=cmd_goal_remove)

    p = sub.add_parser("goals", help="goals with target, actual and progress %")
    p.add_argument("--on", type=_day, default=None, help="only goals whose period includes this day")
    p.add_argument("--refresh", action="store_true", help="measure the actuals now (else: as last measured)")
    p.add_argument("--json", action="store_true", help='print {"goals": [...]}')
    p.set_defaults(func=cmd_goals)

    p = sub.add_parser(
        "kpi-report", help="KPI report: PNG charts and a markdown report (the daily kpi-report flow's work)"
    )
    p.add_argument(
        "--out", metavar="DIR", default=None, help="folder for the files (default: CAREPATH_REPORTS_DIR)"
    )
    p.add_argument("--as-of", type=_day, default=None, help="the report's last day, UTC (default: today)")
    p.add_argument("--days", type=int, default=30, help="days covered, ending on --as-of (default 30)")
    p.add_argument(
        "--hourly-rate",
        type=float,
        default=None,
        help="cost of an hour of support (default: CAREPATH_SUPPORT_HOURLY_RATE)",
    )
    p.add_argument(
        "--trend-days", type=int, default=7, help="rising: last N days against the N before (default 7)"
    )
    p.add_argument(
        "--trend-min-count", type=int, default=5, help="rising only from this many in the last N days"
    )
    p.add_argument("--rise-pct", type=float, default=50.0, help="rising: more than this %% up (default 50)")
    p.add_argument(
        "--gap-min-count", type=int, default=5, help="knowledge gap: at least this many faults or cases"
    )
    p.add_argument("--json", action="store_true", help='print {"files": [absolute paths]}')
    p.set_defaults(func=cmd_kpi_report)
