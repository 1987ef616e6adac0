"""knowledge search: full text over published articles (PostgreSQL GIN over a tsvector, SQLite FTS5), usage counts

The search structures live only in the database (an expression index on PostgreSQL; an FTS5 table kept in step
by triggers on SQLite), so they are written here by hand; the models know the usage count.

Revision ID: 0008
Revises: 0007

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The document PostgreSQL searches (tasks/knowledge.py builds the same expression, so the index is used).
PG_DOCUMENT = "to_tsvector('simple', title || ' ' || coalesce(keywords::text, '') || ' ' || content)"


def upgrade() -> None:
    op.add_column(
        "knowledge_article", sa.Column("usage_count", sa.Integer(), nullable=False, server_default="0")
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_knowledge_article_search ON knowledge_article USING gin ({PG_DOCUMENT})")
        return
    op.execute(
        "CREATE VIRTUAL TABLE knowledge_article_fts USING fts5("
        "title, keywords, content, content='knowledge_article', content_rowid='id')"
    )
    op.execute(
        "CREATE TRIGGER knowledge_article_fts_ai AFTER INSERT ON knowledge_article BEGIN "
        "INSERT INTO knowledge_article_fts(rowid, title, keywords, content) "
        "VALUES (new.id, new.title, new.keywords, new.content); END"
    )
    op.execute(
        "CREATE TRIGGER knowledge_article_fts_ad AFTER DELETE ON knowledge_article BEGIN "
        "INSERT INTO knowledge_article_fts(knowledge_article_fts, rowid, title, keywords, content) "
        "VALUES ('delete', old.id, old.title, old.keywords, old.content); END"
    )
    op.execute(
        "CREATE TRIGGER knowledge_article_fts_au AFTER UPDATE OF title, keywords, content ON knowledge_article BEGIN "
        "INSERT INTO knowledge_article_fts(knowledge_article_fts, rowid, title, keywords, content) "
        "VALUES ('delete', old.id, old.title, old.keywords, old.content); "
        "INSERT INTO knowledge_article_fts(rowid, title, keywords, content) "
        "VALUES (new.id, new.title, new.keywords, new.content); END"
    )
    op.execute("INSERT INTO knowledge_article_fts(knowledge_article_fts) VALUES ('rebuild')")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_knowledge_article_search")
    else:
        for trigger in ("ai", "ad", "au"):
            op.execute(f"DROP TRIGGER IF EXISTS knowledge_article_fts_{trigger}")
        op.execute("DROP TABLE IF EXISTS knowledge_article_fts")
    op.drop_column("knowledge_article", "usage_count")
