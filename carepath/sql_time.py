"""Date arithmetic in SQL, the same on SQLite and PostgreSQL: so reports aggregate in the database and read
back one row per day or per group, never the rows themselves.

SQLite keeps Carepath's timestamps as naive UTC text (models.base.UTCDateTime); PostgreSQL as timestamptz.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import ColumnElement, Float, cast, func


def utc_day(column, dialect: str) -> ColumnElement:
    """The UTC calendar day of a timestamp (text 'YYYY-MM-DD' on SQLite, a date on PostgreSQL)."""
    if dialect == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def minutes_between(start, end, dialect: str) -> ColumnElement:
    """Minutes from `start` to `end`, fractional."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", end - start), Float) / 60.0
    return (func.julianday(end) - func.julianday(start)) * 1440.0


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of a day."""
    return datetime.combine(day, time.min, UTC)


def day_end(day: date) -> datetime:
    """Midnight UTC at the end of a day (the next day's start): periods are [start, end)."""
    return day_start(day + timedelta(days=1))


def as_date(value: date | str) -> date:
    """A day as the database returned it (a date, or ISO text from SQLite)."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
