"""Set-based writes for batch paths: one statement per batch on PostgreSQL, executemany on SQLite.

On PostgreSQL a batch travels as one array per column (`INSERT … SELECT … FROM unnest(…)`), each array as
a single text parameter in PostgreSQL's array syntax (`{1,2,3}`): the server parses one constant per column
instead of thousands of VALUES tuples or ARRAY[…] elements, and the driver quotes one string.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from operator import methodcaller
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Row, Table, Text, bindparam, cast, func, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import Column

from carepath.db import dialect_insert, is_postgres


def _pg_array_cast(column: Column, dialect) -> str:
    return f"{column.type.compile(dialect=dialect)}[]"


def pg_array_literal(values: Iterable[Any]) -> str:
    """Values in PostgreSQL's array input syntax, e.g. `{1,NULL,"say \"hi\""}`; one type per array."""
    values = values if isinstance(values, list) else list(values)
    sample = next((v for v in values if v is not None), None)
    if sample is None:
        return "{" + ",".join("NULL" for _ in values) + "}"
    nulls = values.count(None)
    if isinstance(sample, bool):
        text_of = _bool_text
    elif isinstance(sample, int | float):
        text_of = str
    elif isinstance(sample, datetime | date):
        # ISO text has no comma, quote, brace or space: no quoting needed.
        return "{" + ",".join(_iso_texts(values, nulls)) + "}"
    else:
        # The common case without a call per value: strings with nothing to escape, each quoted.
        strings = [v for v in values if v is not None] if nulls else values
        try:
            joined = '","'.join(strings)
        except TypeError:  # not all strings: each converted below
            joined = None
        # Nothing to escape: no backslash, and no quote but the separators'.
        if joined is not None and "\\" not in joined and joined.count('"') == 2 * (len(strings) - 1):
            if not nulls:
                return '{"' + joined + '"}'
            return "{" + ",".join(["NULL" if v is None else '"' + v + '"' for v in values]) + "}"
        text_of = _quoted_text
    if not nulls:
        return "{" + ",".join(map(text_of, values)) + "}"
    return "{" + ",".join("NULL" if v is None else text_of(v) for v in values) + "}"


def _bool_text(v: bool) -> str:
    return "t" if v else "f"


_isoformat = methodcaller("isoformat")


def _iso_texts(values: list[date | datetime | None], nulls: int) -> Iterable[str]:
    """ISO texts of dates and times ("NULL" for None). A batch repeats its times (created, due, …) and
    isoformat is slow, so when half the values or more are repeats each distinct one is formatted once —
    if they are all UTC times or dates (in another zone, equal times may differ in offset: the same
    instant, or in a zone's repeated hour two instants)."""
    distinct = set(values)
    if len(distinct) * 2 <= len(values) and all(
        v is None or v.__class__ is date or (v.__class__ is datetime and v.tzinfo is UTC) for v in distinct
    ):
        texts = {v: "NULL" if v is None else v.isoformat() for v in distinct}
        return map(texts.__getitem__, values)
    if not nulls:
        return map(_isoformat, values)
    return ("NULL" if v is None else v.isoformat() for v in values)


def _quoted_text(v: Any) -> str:
    s = str(v)
    if "\\" in s or '"' in s:
        s = s.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def _db_values(column: Column, dialect, values: Sequence[Any]) -> list[Any]:
    """Values as the driver would receive them for this column (type decorators, enums, JSON applied).

    A batch repeats values (its time, a status): each distinct one is converted once when half or more
    are repeats. (Equal values convert equally: the same enum member, the same instant in UTC.)"""
    process = column.type.bind_processor(dialect)
    if not process:
        return list(values)
    try:
        distinct = set(values)
    except TypeError:  # unhashable (JSON documents): each converted
        return list(map(process, values))
    if len(distinct) * 2 > len(values):
        return list(map(process, values))
    converted = {v: process(v) for v in distinct}
    return list(map(converted.__getitem__, values))


def bulk_insert(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict_columns: Sequence[str] | None = None,
    conflict_where: str | None = None,
    returning: Sequence[str] = (),
) -> list[Row]:
    """Insert `rows` (all with the same keys); with `conflict_columns`, conflicting rows are skipped.

    Returns the `returning` columns of the rows inserted (skipped rows return nothing).
    """
    if not rows:
        return []
    if not is_postgres(session):
        return _insert_rows(session, table, rows, conflict_columns, conflict_where, returning)
    columns = {name: [r[name] for r in rows] for name in rows[0]}
    return _insert_arrays(session, table, columns, conflict_columns, conflict_where, returning)


def bulk_insert_columns(
    session: Session,
    table: Table,
    columns: Mapping[str, Sequence[Any]],
    *,
    conflict_columns: Sequence[str] | None = None,
    conflict_where: str | None = None,
    returning: Sequence[str] = (),
) -> list[Row]:
    """`bulk_insert` with the rows given column by column (name → the values, in row order, all of one
    length): on PostgreSQL each list becomes the column's array as it is, with no dict built per row."""
    count = len(next(iter(columns.values()), ()))
    if not count:
        return []
    if not is_postgres(session):
        names = list(columns)
        rows = [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        return _insert_rows(session, table, rows, conflict_columns, conflict_where, returning)
    return _insert_arrays(session, table, columns, conflict_columns, conflict_where, returning)


def _insert_rows(session, table, rows, conflict_columns, conflict_where, returning) -> list[Row]:
    """SQLite: one executemany (with RETURNING, one statement per row)."""
    stmt = dialect_insert(session, table)
    if conflict_columns:
        stmt = stmt.on_conflict_do_nothing(
            index_elements=list(conflict_columns),
            index_where=text(conflict_where) if conflict_where else None,
        )
    if returning:
        return list(session.execute(stmt.returning(*(table.c[r] for r in returning)), list(rows)))
    session.execute(stmt, list(rows))
    return []


def _insert_arrays(session, table, columns, conflict_columns, conflict_where, returning) -> list[Row]:
    """PostgreSQL: one `INSERT … SELECT * FROM unnest(…)`, an array literal per column."""
    dialect = session.get_bind().dialect
    params, selects = {}, []
    for i, (name, values) in enumerate(columns.items()):
        col = table.c[name]
        params[f"a{i}"] = pg_array_literal(_db_values(col, dialect, values))
        selects.append(f"CAST(:a{i} AS {_pg_array_cast(col, dialect)})")
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({', '.join(selects)})"
    if conflict_columns:
        where = f" WHERE {conflict_where}" if conflict_where else ""
        sql += f" ON CONFLICT ({', '.join(conflict_columns)}){where} DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(returning)}"
        return list(session.execute(text(sql), params))
    session.execute(text(sql), params)
    return []


def in_list(column: ColumnElement, values: Iterable[Any], session: Session) -> ColumnElement[bool]:
    """`column IN values`, sent as one array parameter on PostgreSQL (no per-value bind to compile)."""
    values = list(values)
    if is_postgres(session):
        array = cast(bindparam(None, pg_array_literal(values), type_=Text), ARRAY(column.type))
        return column == func.any(array)
    return column.in_(values)
