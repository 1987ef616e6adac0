"""Create or upgrade the schema with Alembic (the same path for the demo, tests and production)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from carepath.settings import PROJECT_ROOT, get_settings


def alembic_config(database_url: str | None = None) -> Config:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = database_url or get_settings().database_url
    return cfg


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    """Bring the database at `database_url` (default: settings) to `revision`."""
    command.upgrade(alembic_config(database_url), revision)
