"""Knowledge base from the Prefect UI: search articles; send one to a customer from a case."""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from pydantic import Field

from carepath.db import unit_of_work
from carepath.settings import get_settings
from models import MessageChannel
from tasks.knowledge import search_articles, send_article


@flow(name="kb-search")
def kb_search(query: str, limit: Annotated[int, Field(ge=1, le=100)] = 10) -> dict:
    """Published knowledge articles ranked for a text.

    Args:
        query: Words to look for (a case's title, an error code, the customer's words).
        limit: Articles to return at most.
    """
    with unit_of_work() as session:
        hits = search_articles(session=session, query=query, limit=limit)
    return {"articles": [{"id": h.id, "title": h.title, "score": h.score} for h in hits]}


@flow(name="kb-send")
def kb_send(ticket: str, article_id: int) -> dict:
    """Email a published article to the case's customer; it counts as the case's first response.

    Args:
        ticket: The case's ticket number, e.g. CAS-7K3MQ-9XZ2B.
        article_id: The article's id (from a search).
    """
    from tasks.messaging import drain_outbox

    with unit_of_work() as session:
        sent = send_article(session=session, ticket=ticket, article_id=article_id)
    if sent.status == "queued" and sent.message_id is not None:
        drain_outbox(settings=get_settings(), channel=MessageChannel.EMAIL, ids=[sent.message_id])
    get_run_logger().info("article %s to %s: %s", article_id, ticket, sent.status)
    return sent.as_json()
