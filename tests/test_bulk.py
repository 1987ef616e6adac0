"""carepath.bulk: the array literals PostgreSQL parses, and column-wise inserts equal to row-wise ones."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text

from carepath.bulk import bulk_insert, bulk_insert_columns, pg_array_literal
from models import Account, Tier
from tests.utils.databases import BACKEND

NOW = datetime(2026, 12, 3, 15, 37, 0, 123456, tzinfo=UTC)
ATHENS = ZoneInfo("Europe/Athens")
# 03:30 on the night DST ends in Athens happens twice; both compare equal in their zone.
FIRST = datetime(2026, 10, 25, 3, 30, tzinfo=ATHENS)
SECOND = FIRST.replace(fold=1)


@pytest.mark.parametrize(
    ("values", "literal"),
    [
        ([], "{}"),
        ([None, None], "{NULL,NULL}"),
        ([1, None, 3], "{1,NULL,3}"),
        ([True, False, None], "{t,f,NULL}"),
        (["a", "b c", "{x,y}"], '{"a","b c","{x,y}"}'),
        (['say "hi"', "back\\slash", None], '{"say \\"hi\\"","back\\\\slash",NULL}'),
        (['a"'], '{"a\\""}'),
        (['"', '"'], '{"\\"","\\""}'),
        (["", ","], '{"",","}'),
        ([Tier.GOLD, "silver"], '{"gold","silver"}'),
        ([NOW, NOW, None, NOW], "{" + ",".join([NOW.isoformat()] * 2 + ["NULL", NOW.isoformat()]) + "}"),
        (
            [NOW, NOW + timedelta(seconds=1)],
            f"{{{NOW.isoformat()},{(NOW + timedelta(seconds=1)).isoformat()}}}",
        ),
        ([date(2026, 1, 2), date(2026, 1, 2), None], "{2026-01-02,2026-01-02,NULL}"),
        # Repeats in another zone are each formatted: the two 03:30s are two instants.
        (
            [FIRST, SECOND, FIRST, SECOND],
            "{2026-10-25T03:30:00+03:00,2026-10-25T03:30:00+02:00,"
            "2026-10-25T03:30:00+03:00,2026-10-25T03:30:00+02:00}",
        ),
    ],
)
def test_pg_array_literal(values, literal) -> None:
    assert pg_array_literal(values) == literal
    assert pg_array_literal(iter(values)) == literal


@pytest.mark.skipif(BACKEND != "postgresql", reason="PostgreSQL's array input")
def test_postgresql_reads_the_literals_back_as_the_values(session) -> None:
    texts = ['say "hi"', "back\\slash", None, "{x,y}", "", '"', "NULL"]
    assert session.scalar(text("SELECT CAST(:a AS text[])"), {"a": pg_array_literal(texts)}) == texts
    times = [NOW, None, NOW, FIRST, SECOND]
    got = session.scalar(text("SELECT CAST(:a AS timestamptz[])"), {"a": pg_array_literal(times)})
    # (Python never calls a repeated hour's time equal to one in another zone: compare the instants.)
    assert [t and t.timestamp() for t in got] == [t and t.timestamp() for t in times]
    assert got[4] - got[3] == timedelta(hours=1)  # two instants an hour apart
    session.rollback()


def test_column_wise_insert_stores_what_the_row_wise_one_does(session) -> None:
    rows = [
        {"name": f"Bulk {i}", "account_number": f"BULK-{i}", "tier": tier, "created_at": NOW}
        for i, tier in enumerate([Tier.GOLD, Tier.SILVER, Tier.STANDARD])
    ]
    inserted = bulk_insert(session, Account.__table__, rows[:1], returning=["account_number"])
    columns = {name: [r[name] for r in rows[1:]] for name in rows[0]}
    more = bulk_insert_columns(session, Account.__table__, columns, returning=["account_number"])
    # A repeated key is skipped with conflict_columns, as bulk_insert skips it.
    again = bulk_insert_columns(
        session,
        Account.__table__,
        {name: values[:1] for name, values in columns.items()},
        conflict_columns=["account_number"],
        returning=["account_number"],
    )
    assert bulk_insert_columns(session, Account.__table__, {"name": []}) == []
    session.commit()

    assert [r.account_number for r in inserted + more] == ["BULK-0", "BULK-1", "BULK-2"]
    assert again == []
    stored = session.execute(
        select(Account.name, Account.tier, Account.created_at).order_by(Account.account_number)
    ).all()
    assert [tuple(r) for r in stored] == [(r["name"], r["tier"], NOW) for r in rows]
    session.rollback()
