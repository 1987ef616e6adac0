"""Set-based writes for batch paths: one statement per batch on PostgreSQL, executemany on SQLite.

On PostgreSQL a batch travels as one array per column (`INSERT … SELECT … FROM unnest(…)`), each array as
a single text parameter in PostgreSQL's array syntax (`{1,2,3}`): the server parses one constant per column
instead of thousands of VALUES tuples or ARRAY[…] elements, and the driver quotes one string.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Row, Table, Text, bindparam, cast, func, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import Column

from carepath.db import dialect_insert, is_postgres


def _pg_array_cast(column: Column, dialect) -> str:
    return f"{column.type.compile(dialect=dialect)}[]"


def pg_array_literal(values: Iterable[Any]) -> str:
    """Values in PostgreSQL's array input syntax, e.g. `{1,NULL,"say \"hi\""}`; one type per array."""
    values = list(values)
    sample = next((v for v in values if v is not None), None)
    if sample is None:
        return "{" + ",".join("NULL" for _ in values) + "}"
    if isinstance(sample, bool):
        text_of = _bool_text
    elif isinstance(sample, int | float):
        text_of = str
    elif isinstance(sample, datetime | date):
        text_of = _iso_text  # ISO text has no comma, quote, brace or space: no quoting needed
    else:
        text_of = _quoted_text
    return "{" + ",".join("NULL" if v is None else text_of(v) for v in values) + "}"


def _bool_text(v: bool) -> str:
    return "t" if v else "f"


def _iso_text(v: date) -> str:
    return v.isoformat()


def _quoted_text(v: Any) -> str:
    s = str(v)
    if "\\" in s or '"' in s:
        s = s.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def _db_values(column: Column, dialect, values: list[Any]) -> list[Any]:
    """Values as the driver would receive them for this column (type decorators, enums, JSON applied)."""
    process = column.type.bind_processor(dialect)
    return [process(v) for v in values] if process else values


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
    names = list(rows[0].keys())
    if not is_postgres(session):
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
    dialect = session.get_bind().dialect
    params, selects = {}, []
    for i, name in enumerate(names):
        col = table.c[name]
        params[f"a{i}"] = pg_array_literal(_db_values(col, dialect, [r[name] for r in rows]))
        selects.append(f"CAST(:a{i} AS {_pg_array_cast(col, dialect)})")
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({', '.join(selects)})"
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
