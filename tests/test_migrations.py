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


def schema_differences(engine) -> list:
    with engine.connect() as conn, warnings.catch_warnings():
        # SQLAlchemy cannot reflect the lower(email) expression index; its absence is not a difference.
        warnings.simplefilter("ignore")
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def test_migrated_schema_matches_the_models(database_url):
    assert schema_differences(db.get_engine()) == []


def test_fault_log_has_no_inbox_or_device_foreign_keys_but_keeps_its_case(database_url):
    fks = inspect(db.get_engine()).get_foreign_keys("device_fault")
    assert [(fk["constrained_columns"], fk["referred_table"]) for fk in fks] == [
        (["case_id"], "support_case")
    ]


def test_downgrade_to_0001_and_back(database_url):
    cfg = alembic_config(database_url)
    try:
        command.downgrade(cfg, "0001")  # and back through every later step
        fks = inspect(db.get_engine()).get_foreign_keys("device_fault")
        assert {fk["referred_table"] for fk in fks} == {"support_case", "device", "inbox_event"}
    finally:
        upgrade(database_url)
    assert schema_differences(db.get_engine()) == []
