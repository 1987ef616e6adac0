"""The KPI report's charts as PNG files. matplotlib's object API (a Figure, no pyplot) draws with the Agg
renderer: no screen, no global state, safe in a worker's threads. A chart with nothing to show says so."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

OPENED, RESOLVED, MET, MISSED, BARS, TARGET = "#4C72B0", "#55A868", "#55A868", "#C44E52", "#8172B2", "#333333"
TOP_PRODUCTS = 15
LABEL_CHARS = 60
LABEL_CHARS = 60


def _figure(
    title: str, *, left: float = 0.07, right: float = 0.98, bottom: float = 0.12
) -> tuple[Figure, object]:
    # Fixed margins: a layout engine would find them too, at twice the drawing time of the report's charts.
    fig = Figure(figsize=(9, 4), dpi=100)
    fig.subplots_adjust(left=left, right=right, top=0.9, bottom=bottom)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=11, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"No data: {what}", ha="center", va="center", fontsize=13, color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.spines[:].set_visible(False)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _day_ticks(ax, days: pd.Index) -> None:
    step = max(1, len(days) // 10)
    ax.set_xticks(range(0, len(days), step))
    ax.set_xticklabels([f"{d:%d %b}" for d in days[::step]], fontsize=8)


def cases_per_day_chart(daily: pd.DataFrame, path: Path) -> Path:
    """Cases opened and resolved per day, side by side."""
    first, last = daily.index[0], daily.index[-1]
    fig, ax = _figure(f"Cases opened and resolved per day (UTC), {first:%d %b} – {last:%d %b %Y}")
    if not (daily["opened"].sum() or daily["resolved"].sum()):
        _no_data(ax, "no case was opened or resolved in these days")
        return _save(fig, path)
    x = range(len(daily))
    ax.bar([i - 0.2 for i in x], daily["opened"], width=0.4, color=OPENED, label="opened")
    ax.bar([i + 0.2 for i in x], daily["resolved"], width=0.4, color=RESOLVED, label="resolved")
    _day_ticks(ax, daily.index)
    ax.set_ylabel("cases")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(frameon=False, loc="upper left")
    return _save(fig, path)


def sla_compliance_chart(
    daily: pd.DataFrame, overall_pct: float | None, target: float | None, path: Path
) -> Path:
    """SLA KPIs met and missed per day (bars) and the day's compliance % (line), with the target if one is set."""
    first, last = daily.index[0], daily.index[-1]
    overall = f": {overall_pct:.1f} % overall" if overall_pct is not None else ""
    fig, ax = _figure(
        f"SLA compliance per day (UTC), {first:%d %b} – {last:%d %b %Y}{overall}", right=0.92, bottom=0.2
    )
    if not (daily["sla_met"].sum() or daily["sla_missed"].sum()):
        _no_data(ax, "no SLA KPI succeeded or failed in these days")
        return _save(fig, path)
    x = list(range(len(daily)))
    ax.bar(x, daily["sla_met"], color=MET, alpha=0.6, label="met in time")
    ax.bar(x, daily["sla_missed"], bottom=daily["sla_met"], color=MISSED, alpha=0.6, label="missed")
    ax.set_ylabel("SLA KPIs ended")
    ax.yaxis.get_major_locator().set_params(integer=True)
    _day_ticks(ax, daily.index)
    pct = ax.twinx()
    pct.spines[["top"]].set_visible(False)
    pct.plot(x, daily["sla_compliance_pct"], color=TARGET, marker="o", markersize=3, label="compliance %")
    if target is not None:
        pct.axhline(target, color=MISSED, linestyle="--", linewidth=1, label=f"goal {target:g} %")
    pct.set_ylim(0, 105)
    pct.set_ylabel("compliance %")
    handles = ax.get_legend_handles_labels()[0] + pct.get_legend_handles_labels()[0]
    fig.legend(handles=handles, frameon=False, loc="lower center", ncols=len(handles), fontsize=8)
    return _save(fig, path)


def _per_product(
    frame: pd.DataFrame, value: str, title: str, xlabel: str, empty: str, path: Path, fmt: str
) -> Path:
    shown = frame[frame[value] > 0].head(TOP_PRODUCTS).iloc[::-1]  # largest at the top
    labels = [(f"{p} ({s})" if s != p else p)[:LABEL_CHARS] for p, s in zip(shown["product"], shown["sku"])]
    # Room on the left for the longest label: about 0.0068 of the width per character at 8 pt.
    fig, ax = _figure(title, left=min(0.45, 0.03 + 0.0068 * max(map(len, labels), default=0)), bottom=0.14)
    if shown.empty:
        _no_data(ax, empty)
        return _save(fig, path)
    bars = ax.barh(labels, shown[value], color=BARS)
    ax.bar_label(bars, labels=[fmt.format(v) for v in shown[value]], padding=3, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.tick_params(axis="y", labelsize=8)
    ax.margins(x=0.12)
    return _save(fig, path)


def faults_per_product_chart(frame: pd.DataFrame, first, last, path: Path) -> Path:
    """Device faults per product, most first."""
    return _per_product(
        frame,
        "faults",
        f"Device faults per product, {first:%d %b} – {last:%d %b %Y}",
        "faults reported",
        "no device reported a fault in these days",
        path,
        "{:,}",
    )


def cost_per_product_chart(
    frame: pd.DataFrame, first, last, hourly_rate: float, currency: str, path: Path
) -> Path:
    """Cost of support per product (resolution time × hourly rate), dearest first."""
    return _per_product(
        frame,
        "cost",
        f"Cost of support per product at {hourly_rate:,.2f} {currency}/h, {first:%d %b} – {last:%d %b %Y}",
        f"{currency} (time spent on resolutions × hourly rate)",
        "no resolution time was recorded in these days",
        path,
        "{:,.2f}",
    )
