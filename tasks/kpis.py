"""The KPI report's figures, each aggregated in the database and read back as a small pandas frame: one row per
day, per product or per error code (bounded by the period, the catalogue, or a LIMIT), never the cases or
faults themselves, so memory stays flat however large the tables grow."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import count

import pandas as pd
from sqlalchemy import and_, case, func, literal, select, union_all
from sqlalchemy.orm import Session

from carepath.rules.kpis import article_error_codes, change_pct, covered, is_rising, support_cost
from carepath.sql_time import as_date, day_end, day_start, utc_day
from models import (
    Case,
    CaseStatus,
    Device,
    DeviceFault,
    KnowledgeArticle,
    KpiInstance,
    KpiState,
    Product,
    ResolutionActivity,
)

NO_PRODUCT = "(no product)"
TOP = 50  # rows at most in a ranked list (rising, knowledge gaps)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _per_day(session: Session, stmt, first: date, last: date, columns: list[str]) -> pd.DataFrame:
    """Rows of (day, figures…) from `stmt`, one per day from `first` to `last`, days without rows at 0."""
    rows = [(as_date(day), *figures) for day, *figures in session.execute(stmt)]
    days = pd.Index([first + timedelta(days=i) for i in range((last - first).days + 1)], name="day")
    frame = pd.DataFrame(rows, columns=["day", *columns]).set_index("day")
    return frame.groupby(level=0).sum().reindex(days, fill_value=0).astype("int64")


def daily_activity(*, session: Session, first: date, last: date) -> pd.DataFrame:
    """Per UTC day from `first` to `last`: cases opened, cases resolved (and still resolved), SLA KPIs met
    in time and missed (by the day they ended), and the day's SLA compliance % (NaN: none ended)."""
    start, end, dialect = day_start(first), day_end(last), _dialect(session)
    opened = utc_day(Case.created_at, dialect)
    resolved = utc_day(Case.resolved_at, dialect)
    k = KpiInstance
    ended_at = func.coalesce(k.succeeded_at, k.failed_at)
    ended = utc_day(ended_at, dialect)
    met = case((and_(k.state == KpiState.SUCCEEDED, k.succeeded_at <= k.due_at), 1), else_=0)
    frame = pd.concat(
        [
            _per_day(
                session,
                select(opened, func.count())
                .where(Case.created_at >= start, Case.created_at < end)
                .group_by(opened),
                first,
                last,
                ["opened"],
            ),
            _per_day(
                session,
                select(resolved, func.count())
                .where(Case.status == CaseStatus.RESOLVED, Case.resolved_at >= start, Case.resolved_at < end)
                .group_by(resolved),
                first,
                last,
                ["resolved"],
            ),
            _per_day(
                session,
                select(ended, func.sum(met), func.count() - func.sum(met))
                .where(
                    k.state.in_([KpiState.SUCCEEDED, KpiState.NONCOMPLIANT]),
                    ended_at >= start,
                    ended_at < end,
                )
                .group_by(ended),
                first,
                last,
                ["sla_met", "sla_missed"],
            ),
        ],
        axis=1,
    )
    ended_n = frame["sla_met"] + frame["sla_missed"]
    frame["sla_compliance_pct"] = (100.0 * frame["sla_met"] / ended_n.where(ended_n > 0)).round(1)
    return frame


def _case_product():
    """Case → its product: the case's own, else its device's."""
    return func.coalesce(Case.product_id, Device.product_id)


def _label(frame: pd.DataFrame) -> pd.DataFrame:
    frame["sku"] = frame["sku"].fillna(NO_PRODUCT)
    frame["product"] = frame["product"].fillna(NO_PRODUCT)
    return frame


def faults_per_product(*, session: Session, first: date, last: date) -> pd.DataFrame:
    """Device faults reported from `first` to `last`, per product (by the reporting device), most first."""
    stmt = (
        select(Product.sku, Product.name, func.count(DeviceFault.id).label("faults"))
        .select_from(DeviceFault)
        .outerjoin(Device, Device.device_id == DeviceFault.device_id)
        .outerjoin(Product, Product.id == Device.product_id)
        .where(DeviceFault.occurred_at >= day_start(first), DeviceFault.occurred_at < day_end(last))
        .group_by(Product.sku, Product.name)
        .order_by(func.count(DeviceFault.id).desc(), Product.sku)
    )
    frame = pd.DataFrame(session.execute(stmt).all(), columns=["sku", "product", "faults"])
    return _label(frame).astype({"faults": "int64"})


def cost_per_product(*, session: Session, first: date, last: date, hourly_rate: float) -> pd.DataFrame:
    """Support cost per product: minutes recorded on resolutions made from `first` to `last` (the case's
    product, else its device's), at `hourly_rate` per hour; dearest first."""
    ra = ResolutionActivity
    stmt = (
        select(
            Product.sku,
            Product.name,
            func.count(ra.id).label("cases"),
            func.coalesce(func.sum(ra.time_spent_minutes), 0).label("minutes"),
        )
        .select_from(ra)
        .join(Case, Case.id == ra.case_id)
        .outerjoin(Device, Device.device_id == Case.device_id)
        .outerjoin(Product, Product.id == _case_product())
        .where(ra.created_at >= day_start(first), ra.created_at < day_end(last))
        .group_by(Product.sku, Product.name)
    )
    frame = pd.DataFrame(session.execute(stmt).all(), columns=["sku", "product", "cases", "minutes"])
    frame = _label(frame).astype({"cases": "int64", "minutes": "int64"})
    frame["cost"] = [support_cost(m, hourly_rate) for m in frame["minutes"]]
    frame["cost_per_case"] = (frame["cost"] / frame["cases"].where(frame["cases"] > 0)).round(2)
    return frame.sort_values(["cost", "sku"], ascending=[False, True], ignore_index=True)


def _windows(as_of: date, days: int):
    """The recent window (the last `days` days to `as_of`) and the one before it: (before, recent, end)."""
    recent = as_of - timedelta(days=days - 1)
    return day_start(recent - timedelta(days=days)), day_start(recent), day_end(as_of)


def _trend(
    session: Session, when, keys: list, joins, where: list, before, recent, end, min_count: int
) -> list:
    """Per group of `keys`: (keys…, in the recent window, in the window before), busiest first, only groups
    with at least `min_count` recent."""
    in_recent = func.sum(case((when >= recent, 1), else_=0))
    in_before = func.sum(case((when < recent, 1), else_=0))
    stmt = (
        joins(select(*keys, in_recent, in_before)).where(when >= before, when < end, *where).group_by(*keys)
    )
    return session.execute(stmt.having(in_recent >= min_count).order_by(in_recent.desc()).limit(TOP)).all()


def rising(*, session: Session, as_of: date, days: int, min_count: int, rise_pct: float) -> pd.DataFrame:
    """Products, and error codes per product, whose faults or cases in the last `days` days (to `as_of`) rose
    more than `rise_pct` % over the `days` before, with at least `min_count` in the last `days`."""
    before, recent, end = _windows(as_of, days)

    def fault_joins(stmt):
        return (
            stmt.select_from(DeviceFault)
            .outerjoin(Device, Device.device_id == DeviceFault.device_id)
            .outerjoin(Product, Product.id == Device.product_id)
        )

    def case_joins(stmt):
        return (
            stmt.select_from(Case)
            .outerjoin(Device, Device.device_id == Case.device_id)
            .outerjoin(Product, Product.id == _case_product())
        )

    rows = []
    for source, when, joins, code in (
        ("faults", DeviceFault.occurred_at, fault_joins, DeviceFault.error_code),
        ("cases", Case.created_at, case_joins, Case.error_code),
    ):
        by_code = [Product.sku, Product.name, code]
        for subject, keys, where in (
            ("product", by_code[:2], []),
            ("error code", by_code, [code.is_not(None)]),
        ):
            for sku, name, *rest in _trend(session, when, keys, joins, where, before, recent, end, min_count):
                error_code = rest[0] if subject == "error code" else None
                n_recent, n_before = int(rest[-2]), int(rest[-1])
                if is_rising(n_recent, n_before, min_count=min_count, rise_pct=rise_pct):
                    rows.append((subject, source, sku, name, error_code, n_recent, n_before))
    columns = ["subject", "source", "sku", "product", "error_code", "recent", "previous"]
    frame = _label(pd.DataFrame(rows, columns=columns))
    frame["error_code"] = frame["error_code"].astype("Int64")
    frame["change_pct"] = [change_pct(r, p) for r, p in zip(frame["recent"], frame["previous"])]
    return frame.sort_values(
        ["subject", "source", "recent", "sku"], ascending=[False, True, False, True], ignore_index=True
    )


def knowledge_gaps(*, session: Session, first: date, last: date, min_count: int) -> pd.DataFrame:
    """Error codes (per product) with at least `min_count` faults or cases from `first` to `last` that no
    published article covers (an article for the product, or for none, with the keyword `error-N`)."""
    start, end = day_start(first), day_end(last)
    f, c = DeviceFault, Case
    reported = union_all(
        select(Device.product_id.label("product_id"), f.error_code.label("code"), literal(1).label("fault"))
        .select_from(f)
        .outerjoin(Device, Device.device_id == f.device_id)
        .where(f.occurred_at >= start, f.occurred_at < end),
        select(_case_product(), c.error_code, literal(0))
        .select_from(c)
        .outerjoin(Device, Device.device_id == c.device_id)
        .where(c.created_at >= start, c.created_at < end, c.error_code.is_not(None)),
    ).subquery()
    faults, cases = func.sum(reported.c.fault), func.sum(1 - reported.c.fault)
    frequent = (
        select(reported.c.product_id, reported.c.code, faults, cases)
        .group_by(reported.c.product_id, reported.c.code)
        .having((faults >= min_count) | (cases >= min_count))
        .order_by((faults + cases).desc(), reported.c.product_id, reported.c.code)
    )
    articles = published_error_codes(session=session)
    gaps: list[tuple[int | None, int, int, int]] = []
    for page in count():  # most frequent codes are covered: read on, a page at a time, until TOP gaps
        rows = session.execute(frequent.offset(page * TOP).limit(TOP)).all()
        gaps += [
            (pid, int(code), int(nf), int(nc))
            for pid, code, nf, nc in rows
            if not covered(pid, int(code), articles)
        ]
        if len(rows) < TOP or len(gaps) >= TOP:
            break
    ids = {pid for pid, *_ in gaps if pid is not None}
    products = (
        {
            pid: (sku, name)
            for pid, sku, name in session.execute(
                select(Product.id, Product.sku, Product.name).where(Product.id.in_(ids))
            )
        }
        if ids
        else {}
    )
    frame = pd.DataFrame(
        [(*products.get(pid, (None, None)), code, nf, nc) for pid, code, nf, nc in gaps[:TOP]],
        columns=["sku", "product", "error_code", "faults", "cases"],
    )
    return _label(frame).astype({"error_code": "int64", "faults": "int64", "cases": "int64"})


def published_error_codes(*, session: Session) -> set[tuple[int | None, int]]:
    """(product id or None, error code) for every code a published article covers, read in batches."""
    covered_codes: set[tuple[int | None, int]] = set()
    rows = session.execute(
        select(KnowledgeArticle.product_id, KnowledgeArticle.keywords)
        .where(KnowledgeArticle.published.is_(True))
        .execution_options(yield_per=1000)
    )
    for product_id, keywords in rows:
        covered_codes.update((product_id, code) for code in article_error_codes(keywords))
    return covered_codes
