"""The daily KPI report: goals measured, the period's figures aggregated in the database, four PNG charts and a
markdown report. The `kpi-report` flow and `carepath kpi-report` run these same functions; the flow also
publishes the report (charts embedded) as a Prefect markdown artifact."""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from carepath.batch_runs import BatchProgress
from carepath.db import unit_of_work
from carepath.rules.kpis import METRICS
from carepath.settings import Settings, get_settings
from carepath.sql_time import day_end, day_start
from models.base import utcnow
from tasks.goals import EVERYONE, goal_rows, median_first_response_minutes, open_cases, refresh_goals
from tasks.kpis import cost_per_product, daily_activity, faults_per_product, knowledge_gaps, rising

STEPS = 8  # goals, per day, open cases, faults, cost, rising, knowledge gaps, charts and markdown


class KpiReportConfig(BaseModel):
    """What a KPI report covers and how it judges; every bound checked before any query runs."""

    model_config = ConfigDict(frozen=True)

    as_of: date | None = Field(default=None, description="The report's last day (UTC); default: today.")
    days: int = Field(default=30, ge=1, le=366, description="Days the report covers, ending on `as_of`.")
    hourly_rate: float | None = Field(
        default=None, ge=0, description="Cost of an hour of support; default CAREPATH_SUPPORT_HOURLY_RATE."
    )
    trend_days: int = Field(
        default=7, ge=1, le=183, description="Rising: the last N days against the N days before."
    )
    trend_min_count: int = Field(
        default=5, ge=1, description="Rising only with at least this many faults or cases in the last N days."
    )
    rise_pct: float = Field(
        default=50.0, ge=0, description="Rising: more than this many percent above the N days before."
    )
    gap_min_count: int = Field(
        default=5,
        ge=1,
        description="A knowledge gap: an error code with at least this many faults or cases in the report's "
        "days and no published article.",
    )


@dataclass
class KpiReport:
    as_of: date
    first: date
    config: KpiReportConfig
    hourly_rate: float
    currency: str
    goals: list[dict] = field(default_factory=list)
    daily: pd.DataFrame = field(default_factory=pd.DataFrame)
    totals: dict[str, Any] = field(default_factory=dict)
    faults: pd.DataFrame = field(default_factory=pd.DataFrame)
    cost: pd.DataFrame = field(default_factory=pd.DataFrame)
    rising: pd.DataFrame = field(default_factory=pd.DataFrame)
    gaps: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def sla_target(self) -> float | None:
        """Everyone's SLA compliance goal in force on the report's last day, if one is set."""
        for g in self.goals:
            if g["metric"] == "sla_compliance_pct" and not (g["agent"] or g["team"]):
                if g["period_start"] <= self.as_of.isoformat() <= g["period_end"]:
                    return g["target"]
        return None

    def as_json(self) -> dict[str, Any]:
        daily = self.daily.reset_index()
        daily["day"] = [d.isoformat() for d in daily["day"]]
        return {
            "as_of": self.as_of.isoformat(),
            "first": self.first.isoformat(),
            "hourly_rate": self.hourly_rate,
            "currency": self.currency,
            "totals": self.totals,
            "goals": self.goals,
            "daily": records(daily),
            "faults_per_product": records(self.faults),
            "cost_per_product": records(self.cost),
            "rising": records(self.rising),
            "kb_gaps": records(self.gaps),
        }


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


@dataclass(frozen=True)
class ReportWindow:
    """The days a report covers and its rate: plain data, so each part can run in another process."""

    as_of: date
    first: date
    config: KpiReportConfig
    hourly_rate: float
    currency: str


def report_window(config: KpiReportConfig, settings: Settings | None = None) -> ReportWindow:
    """The report's days (ending on `as_of`, default today) and hourly rate (default from settings)."""
    s = settings or get_settings()
    as_of = config.as_of or utcnow().date()
    rate = s.support_hourly_rate if config.hourly_rate is None else config.hourly_rate
    return ReportWindow(as_of, as_of - timedelta(days=config.days - 1), config, rate, s.support_currency)


def _goals(session: Session, w: ReportWindow) -> list[dict]:
    return goal_rows(session=session, goals=refresh_goals(session=session, as_of=w.as_of, since=w.first))


def _daily(session: Session, w: ReportWindow) -> pd.DataFrame:
    return daily_activity(session=session, first=w.first, last=w.as_of)


def _cases(session: Session, w: ReportWindow) -> dict[str, Any]:
    start, end = day_start(w.first), day_end(w.as_of)
    return {
        "open_cases": int(open_cases(session, start, end, EVERYONE)),
        "median_first_response_minutes": median_first_response_minutes(session, start, end, EVERYONE),
    }


def _faults(session: Session, w: ReportWindow) -> pd.DataFrame:
    return faults_per_product(session=session, first=w.first, last=w.as_of)


def _cost(session: Session, w: ReportWindow) -> pd.DataFrame:
    return cost_per_product(session=session, first=w.first, last=w.as_of, hourly_rate=w.hourly_rate)


def _rising(session: Session, w: ReportWindow) -> pd.DataFrame:
    c = w.config
    return rising(
        session=session, as_of=w.as_of, days=c.trend_days, min_count=c.trend_min_count, rise_pct=c.rise_pct
    )


def _gaps(session: Session, w: ReportWindow) -> pd.DataFrame:
    return knowledge_gaps(session=session, first=w.first, last=w.as_of, min_count=w.config.gap_min_count)


# The report's parts, each a few grouped queries that need none of the others: a flow runs them at once on the
# batch task runner (threads, or Dask workers on other hosts); the command line one after the other.
PARTS: dict[str, Callable[[Session, ReportWindow], Any]] = {
    "goals": _goals,
    "daily": _daily,
    "cases": _cases,
    "faults": _faults,
    "cost": _cost,
    "rising": _rising,
    "gaps": _gaps,
}
assert STEPS == len(PARTS) + 1  # the parts, then the charts and the markdown


def report_part(name: str, window: ReportWindow) -> Any:
    """One part of the report's figures, in a transaction of its own (goals store their actuals)."""
    with unit_of_work() as session:
        return PARTS[name](session, window)


def part_figures(name: str, value: Any) -> dict[str, int]:
    """What the progress line says of a finished part."""
    if name == "cases":
        return {"open_cases": value["open_cases"]}
    key = {"goals": "goals", "daily": "days", "faults": "products", "cost": "products"}.get(name, name)
    return {key: len(value)}


def assemble(window: ReportWindow, parts: dict[str, Any]) -> KpiReport:
    """The report from its parts: the totals are sums over them."""
    d, faults, cost = parts["daily"], parts["faults"], parts["cost"]
    met, ended = int(d["sla_met"].sum()), int(d["sla_met"].sum() + d["sla_missed"].sum())
    totals = {
        "cases_opened": int(d["opened"].sum()),
        "cases_resolved": int(d["resolved"].sum()),
        "open_cases": parts["cases"]["open_cases"],
        "sla_met": met,
        "sla_ended": ended,
        "sla_compliance_pct": round(100.0 * met / ended, 1) if ended else None,
        "median_first_response_minutes": parts["cases"]["median_first_response_minutes"],
        "device_faults": int(faults["faults"].sum()),
        "resolution_minutes": int(cost["minutes"].sum()),
        "support_cost": round(float(cost["cost"].sum()), 2),
    }
    return KpiReport(
        as_of=window.as_of,
        first=window.first,
        config=window.config,
        hourly_rate=window.hourly_rate,
        currency=window.currency,
        goals=parts["goals"],
        daily=d,
        totals=totals,
        faults=faults,
        cost=cost,
        rising=parts["rising"],
        gaps=parts["gaps"],
    )


def collect_kpis(
    config: KpiReportConfig, *, settings: Settings | None = None, progress: BatchProgress | None = None
) -> KpiReport:
    """Measure the goals overlapping the report's days (stored), then aggregate its figures, part by part."""
    progress = progress or BatchProgress("kpi-report", total=STEPS)
    window = report_window(config, settings)
    parts = {}
    for name in PARTS:
        parts[name] = report_part(name, window)
        progress.advance(1, **part_figures(name, parts[name]))
    return assemble(window, parts)


CHARTS = ("cases-per-day", "sla-compliance", "faults-per-product", "cost-per-product")


def draw_charts(report: KpiReport, out_dir: Path) -> dict[str, Path]:
    """The four PNG charts of a report, named after its last day (a rerun that day replaces them)."""
    from tasks import kpi_charts  # matplotlib's import (~0.5 s) only where charts are drawn

    stem = f"kpi-report-{report.as_of.isoformat()}"
    paths = {name: out_dir / f"{stem}-{name}.png" for name in CHARTS}
    kpi_charts.cases_per_day_chart(report.daily, paths["cases-per-day"])
    kpi_charts.sla_compliance_chart(
        report.daily, report.totals["sla_compliance_pct"], report.sla_target, paths["sla-compliance"]
    )
    kpi_charts.faults_per_product_chart(
        report.faults, report.first, report.as_of, paths["faults-per-product"]
    )
    kpi_charts.cost_per_product_chart(
        report.cost,
        report.first,
        report.as_of,
        report.hourly_rate,
        report.currency,
        paths["cost-per-product"],
    )
    return paths


def write_report(
    report: KpiReport, out_dir: str | Path, *, progress: BatchProgress | None = None
) -> list[Path]:
    """The charts and the markdown report (which shows them from beside it) in `out_dir`: absolute paths,
    charts first."""
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    charts = draw_charts(report, out)
    markdown = out / f"kpi-report-{report.as_of.isoformat()}.md"
    markdown.write_text(render_markdown(report, {k: p.name for k, p in charts.items()}), encoding="utf-8")
    if progress is not None:
        progress.advance(1, files=len(charts) + 1)
        progress.finish()
    return [*charts.values(), markdown]


def embedded(paths: list[Path]) -> dict[str, str]:
    """The charts as data: URIs, so a markdown artifact shows them in the Prefect UI without a file server."""
    charts = {}
    for path in paths:
        for name in CHARTS:
            if path.name.endswith(f"-{name}.png"):
                charts[name] = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return charts


def _cell(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}"
    if isinstance(value, int):
        return f"{value:,}"
    # Names come from data (products, goals, agents): as text in the markdown, never as HTML the UI would run.
    text = html.escape(str(value), quote=False).replace("|", "\\|")
    return re.sub(r"[\r\n]+", " ", text)


def _money(value: Any) -> str:
    value = _plain(value)
    return "–" if value is None else f"{value:,.2f}"


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_markdown(report: KpiReport, images: dict[str, str]) -> str:
    """The report as markdown; `images` gives each chart's source (a file name beside it, or a data: URI)."""
    t, c, cur = report.totals, report.config, report.currency
    pct = t["sla_compliance_pct"]
    fr = t["median_first_response_minutes"]
    parts = [
        f"# Service KPIs, {report.first:%d %b %Y} – {report.as_of:%d %b %Y}\n",
        f"UTC days; generated {utcnow():%Y-%m-%d %H:%M} UTC by the `kpi-report` flow "
        f"(`carepath kpi-report`).\n",
        _table(
            [
                "cases opened",
                "cases resolved",
                "open now",
                "SLA compliance",
                "median first response",
                "device faults",
                "cost of support",
            ],
            [
                [
                    t["cases_opened"],
                    t["cases_resolved"],
                    t["open_cases"],
                    f"{pct:.1f} % ({t['sla_met']} of {t['sla_ended']})" if pct is not None else "–",
                    f"{fr:g} min" if fr is not None else "–",
                    t["device_faults"],
                    f"{t['support_cost']:,.2f} {cur} ({t['resolution_minutes']:,} min)",
                ]
            ],
        ),
        "## Goals\n",
    ]
    if report.goals:
        parts.append(
            _table(
                ["goal", "owner", "period", "target", "actual", "progress", "met"],
                [
                    [
                        g["name"],
                        g["agent"] or (f"team {g['team']}" if g["team"] else "everyone"),
                        f"{g['period_start']} – {g['period_end']}",
                        f"{_cell(g['target'])} {g['unit'] or ''}".strip(),
                        f"{_cell(g['actual'])} {g['unit'] or ''}".strip() if g["actual"] is not None else "–",
                        f"{g['progress_pct']:g} %" if g["progress_pct"] is not None else "–",
                        {True: "yes", False: "no", None: "–"}[g["met"]],
                    ]
                    for g in report.goals
                ],
            )
        )
        parts.append(
            "\n".join(f"- {m.label}: {m.meaning}." for m in METRICS.values())
            + "\n- Progress: actual ÷ target, or target ÷ actual where the target is a ceiling; at most 100 %.\n"
        )
    else:
        parts.append("No goal covers these days: set one with `carepath goal set`.\n")
    parts += [
        "## Cases opened and resolved per day\n",
        f"![Cases opened and resolved per day]({images['cases-per-day']})\n",
        "## SLA compliance\n",
        "SLA KPIs (first response, resolve by) that ended each day: met in time or missed.\n",
        f"![SLA compliance per day]({images['sla-compliance']})\n",
        "## Device faults per product\n",
        f"![Device faults per product]({images['faults-per-product']})\n",
        _table(["product", "SKU", "faults"], report.faults[["product", "sku", "faults"]].values.tolist())
        if len(report.faults)
        else "No device faults in these days.\n",
        "## Cost of support per product\n",
        f"Time spent on resolutions × {report.hourly_rate:,.2f} {cur} an hour "
        "(`CAREPATH_SUPPORT_HOURLY_RATE`, or the flow's `hourly_rate`).\n",
        f"![Cost of support per product]({images['cost-per-product']})\n",
        _table(
            ["product", "SKU", "cases resolved", "minutes", f"cost ({cur})", f"per case ({cur})"],
            [
                [r.product, r.sku, r.cases, r.minutes, _money(r.cost), _money(r.cost_per_case)]
                for r in report.cost.itertuples()
            ],
        )
        if len(report.cost)
        else "No resolution time recorded in these days.\n",
        "## Rising\n",
        f"Faults or cases in the last {c.trend_days} days against the {c.trend_days} days before: at least "
        f"{c.trend_min_count} and more than {c.rise_pct:g} % up.\n",
        _table(
            ["what", "from", "product", "error code", f"last {c.trend_days} days", "days before", "change"],
            [
                [
                    r.subject,
                    r.source,
                    r.product,
                    r.error_code,
                    r.recent,
                    r.previous,
                    f"+{r.change_pct:g} %" if _plain(r.change_pct) is not None else "new",
                ]
                for r in report.rising.itertuples()
            ],
        )
        if len(report.rising)
        else "Nothing rising.\n",
        "## Knowledge gaps\n",
        f"Error codes with at least {c.gap_min_count} faults or cases in these days and no published article "
        "for the product (an article covers code N with the keyword `error-N`): articles to write.\n",
        _table(
            ["product", "SKU", "error code", "faults", "cases"],
            report.gaps[["product", "sku", "error_code", "faults", "cases"]].values.tolist(),
        )
        if len(report.gaps)
        else "No gaps: every frequent error code has an article.\n",
    ]
    return "\n".join(parts)
