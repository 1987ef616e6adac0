"""Set-based writes for batch paths: one statement per batch on PostgreSQL, executemany on SQLite.

On PostgreSQL a batch travels as one array per column (`INSERT … SELECT … FROM unnest(…)`), which costs
the server and the driver far less than thousands of VALUES tuples or an executemany.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Row, Table, bindparam, func, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import Column

from carepath.db import dialect_insert, is_postgres


def _pg_array_cast(column: Column, dialect) -> str:
    return f"{column.type.compile(dialect=dialect)}[]"


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
        params[f"a{i}"] = _db_values(col, dialect, [r[name] for r in rows])
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
        return column == func.any(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)
