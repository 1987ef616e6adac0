"""The receiver's async engine: asyncpg on PostgreSQL, aiosqlite on SQLite, from the same DATABASE_URL."""

from __future__ import annotations

from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def async_url(database_url: str) -> str:
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        url = url.set(drivername="postgresql+asyncpg")
    elif url.get_backend_name() == "sqlite":
        url = url.set(drivername="sqlite+aiosqlite")
    return url.render_as_string(hide_password=False)


def make_async_engine(database_url: str) -> AsyncEngine:
    url = async_url(database_url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    # pre_ping: after a database restart, pooled connections are dead; each is tested and replaced on checkout.
    # A connect time-out keeps requests from hanging while the server is away (they get a 503 instead).
    return create_async_engine(
        url, pool_size=10, max_overflow=10, pool_pre_ping=True, connect_args={"timeout": 5}
    )
