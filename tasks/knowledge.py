"""Knowledge base: full-text search over published articles, suggestions for a case, and sending an article to
the customer from a case (an activity, the case's first response, the article's usage count)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from carepath.db import is_postgres
from carepath.rules.knowledge import fts5_query, search_terms, tsquery
from models import (
    Activity,
    ActivityDirection,
    ActivityState,
    ActivityType,
    Case,
    CaseArticle,
    Contact,
    KnowledgeArticle,
)
from models.base import utcnow
from tasks.messaging import queue_contact_email
from tasks.sla import record_first_response

# The document migration 0008 indexes on PostgreSQL (the same expression, so the GIN index is used), and a
# weighted one for ranking: the title counts most, keywords next, the body least.
_PG_SEARCH = text(
    """
    SELECT id, title, ts_rank_cd(
               setweight(to_tsvector('simple', title), 'A')
               || setweight(to_tsvector('simple', coalesce(keywords::text, '')), 'B')
               || setweight(to_tsvector('simple', content), 'D'),
               to_tsquery('simple', :query)) AS score
    FROM knowledge_article
    WHERE published
      AND to_tsvector('simple', title || ' ' || coalesce(keywords::text, '') || ' ' || content)
          @@ to_tsquery('simple', :query)
      AND (CAST(:language AS text) IS NULL OR language = :language)
    ORDER BY score DESC, id
    LIMIT :limit
    """
)
# SQLite FTS5 with bm25 (lower is better: negated into a score), columns weighted title 10, keywords 5, body 1.
_SQLITE_SEARCH = text(
    """
    SELECT a.id, a.title, -bm25(knowledge_article_fts, 10.0, 5.0, 1.0) AS score
    FROM knowledge_article_fts JOIN knowledge_article a ON a.id = knowledge_article_fts.rowid
    WHERE knowledge_article_fts MATCH :query AND a.published
      AND (:language IS NULL OR a.language = :language)
    ORDER BY score DESC, a.id
    LIMIT :limit
    """
)


class KnowledgeError(Exception):
    """An unknown case or article, or an article that may not be sent (a draft)."""


@dataclass(frozen=True)
class ArticleHit:
    id: int
    title: str
    score: float


def search_articles(
    *, session: Session, query: str, limit: int = 10, language: str | None = None
) -> list[ArticleHit]:
    """Published articles ranked by relevance to the words of `query` (scores compare within one database)."""
    terms = search_terms(query)
    if not terms:
        return []
    stmt, q = (_PG_SEARCH, tsquery(terms)) if is_postgres(session) else (_SQLITE_SEARCH, fts5_query(terms))
    rows = session.execute(stmt, {"query": q, "limit": limit, "language": language}).all()
    return [ArticleHit(r.id, r.title, float(r.score)) for r in rows]


def suggest_for_case(*, session: Session, ticket: str, limit: int = 5) -> list[ArticleHit]:
    """Articles for a case, from its title, description and error code."""
    case = _case(session, ticket)
    return search_articles(
        session=session,
        query=" ".join(search_terms(case.title, case.description, case.error_code)),
        limit=limit,
    )


@dataclass(frozen=True)
class ArticleSent:
    ticket: str
    article_id: int
    message_id: int | None
    status: str  # queued | already_sent | blocked
    first_response: bool

    def as_json(self) -> dict:
        return {
            "ticket": self.ticket,
            "article_id": self.article_id,
            "message_id": self.message_id,
            "status": self.status,
            "first_response": self.first_response,
        }


def send_article(*, session: Session, ticket: str, article_id: int) -> ArticleSent:
    """Email a published article to the case's contact: one email per case and article (sending it again
    sends nothing), an activity on the case, the case's first response, the article's usage count."""
    case = _case(session, ticket)
    article = session.get(KnowledgeArticle, article_id)
    if article is None:
        raise KnowledgeError(f"no article {article_id}")
    if not article.published:
        raise KnowledgeError(f"article {article_id} ({article.article_number}) is a draft: publish it first")
    contact = session.get(Contact, case.contact_id) if case.contact_id else None
    if contact is None:
        raise KnowledgeError(f"{ticket} has no contact to send the article to")
    existing = session.execute(
        select(CaseArticle.id, CaseArticle.message_id).where(
            CaseArticle.case_id == case.id, CaseArticle.article_id == article.id
        )
    ).first()
    if existing is not None:
        return ArticleSent(ticket, article.id, existing.message_id, "already_sent", False)
    now = utcnow()
    message_id, blocked = queue_contact_email(
        session=session,
        case_id=case.id,
        contact_id=contact.id,
        step=f"article:{article.id}",
        subject=f"[{case.ticket_number}] {article.title}",
        body=f"Hello {contact.first_name},\n\n{article.content}\n\n({article.article_number})\n",
        template="email/knowledge_article",
        now=now,
    )
    session.add_all(
        [
            CaseArticle(case_id=case.id, article_id=article.id, message_id=message_id, sent_at=now),
            Activity(
                case_id=case.id,
                type=ActivityType.EMAIL,
                subject=f"Knowledge article: {article.title}"[:300],
                body=article.content,
                state=ActivityState.COMPLETED,
                direction=ActivityDirection.OUTBOUND,
                message_id=message_id,
                created_at=now,
                closed_at=now,
            ),
        ]
    )
    session.execute(
        update(KnowledgeArticle)
        .where(KnowledgeArticle.id == article.id)
        .values(usage_count=KnowledgeArticle.usage_count + 1)
    )
    first = False if blocked else record_first_response(session=session, case_id=case.id, at=now)
    return ArticleSent(ticket, article.id, message_id, "blocked" if blocked else "queued", first)


def _case(session: Session, ticket: str) -> Case:
    case = session.scalars(select(Case).where(Case.ticket_number == ticket)).one_or_none()
    if case is None:
        raise KnowledgeError(f"no case {ticket}")
    return case
