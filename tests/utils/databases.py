"""Fresh test databases built by the Alembic migrations: a SQLite file, or a throwaway PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Engine

from carepath.migrate import upgrade
from models import Base

BACKEND = os.environ.get("CAREPATH_TEST_DB", "sqlite")

# A test that runs the console script on an embedded SQLite file of its own (as an operator on a fresh clone
# does) uses nothing of the suite's database: the SQLite suite runs it, the PostgreSQL suite need not repeat it.
embedded_only = pytest.mark.skipif(
    BACKEND == "postgresql", reason="uses an embedded SQLite file of its own: the SQLite suite runs it"
)
POSTGRES_URL = os.environ.get(
    "CAREPATH_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)


@contextmanager
def fresh_database(tmp_dir: Path) -> Iterator[str]:
    """Yield the URL of a new, migrated database for this test session; drop it afterwards."""
    if BACKEND == "sqlite":
        url = f"sqlite:///{tmp_dir / 'carepath-test.db'}"
        upgrade(url)
        yield url
        return
    if BACKEND != "postgresql":
        raise RuntimeError(f"CAREPATH_TEST_DB must be sqlite or postgresql, not {BACKEND!r}")
    server = make_url(POSTGRES_URL)
    name = f"carepath_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def empty_all_tables(engine: Engine) -> None:
    """Remove every row (tests start from an empty, migrated schema)."""
    tables = list(reversed(Base.metadata.sorted_tables))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(t.name for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for t in tables:
                conn.execute(t.delete())
