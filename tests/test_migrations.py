"""The migrations build exactly the schema the models describe, and step down and up again."""

from __future__ import annotations

import warnings

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from carepath import db
from carepath.migrate import alembic_config, upgrade
from models import Base

# Full-text search structures exist only in the database (migration 0008): not differences from the models.
_SEARCH_ONLY = ("knowledge_article_fts", "ix_knowledge_article_search")


def _modelled(obj, name, type_, reflected, compare_to) -> bool:
    return not (name or "").startswith(_SEARCH_ONLY)


def schema_differences(engine) -> list:
    with engine.connect() as conn, warnings.catch_warnings():
        # SQLAlchemy cannot reflect the lower(email) expression index; its absence is not a difference.
        warnings.simplefilter("ignore")
        context = MigrationContext.configure(conn, opts={"include_object": _modelled})
        return compare_metadata(context, Base.metadata)


def test_migrated_schema_matches_the_models(database_url):
    assert schema_differences(db.get_engine()) == []


def test_fault_log_has_no_inbox_or_device_foreign_keys_but_keeps_its_case(database_url):
    fks = inspect(db.get_engine()).get_foreign_keys("device_fault")
    assert [(fk["constrained_columns"], fk["referred_table"]) for fk in fks] == [
        (["case_id"], "support_case")
    ]


def test_downgrade_to_0001_and_back(engine, database_url):
    cfg = alembic_config(database_url)
    try:
        command.downgrade(cfg, "0001")  # and back through every later step
        fks = inspect(db.get_engine()).get_foreign_keys("device_fault")
        assert {fk["referred_table"] for fk in fks} == {"support_case", "device", "inbox_event"}
    finally:
        upgrade(database_url)
    assert schema_differences(db.get_engine()) == []


def test_upgrade_to_0003_checks_the_phones_already_stored(engine, database_url):
    from sqlalchemy import text

    cfg = alembic_config(database_url)
    try:
        command.downgrade(cfg, "0002")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO contact (id, first_name, last_name, phone, language, active, created_at) VALUES "
                    "(1, 'A', 'B', '+306912345678', 'en', true, CURRENT_TIMESTAMP),"
                    "(2, 'C', 'D', '+3912', 'en', true, CURRENT_TIMESTAMP),"
                    "(3, 'E', 'F', NULL, 'en', true, CURRENT_TIMESTAMP)"
                )
            )
        upgrade(database_url)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, phone_checked, phone_valid FROM contact ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, "+306912345678", True), (2, "+3912", False), (3, None, None)]
    finally:
        upgrade(database_url)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM contact"))
