"""Knowledge base: ranked full-text search (PostgreSQL and SQLite FTS5), sending an article from a case."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest
from sqlalchemy import select

from cli.commands import main as cli
from models import Activity, Case, KnowledgeArticle
from tests.utils import factories

pytestmark = pytest.mark.usefixtures("prefect_server")


def kb(*args: str) -> tuple[int, dict | None, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli(["kb", *args])
    lines = out.getvalue().strip().splitlines()
    return code, (json.loads(lines[-1]) if code == 0 and lines else None), err.getvalue()


@pytest.fixture()
def articles(session):
    rows = [
        KnowledgeArticle(
            article_number="KA-1",
            title="Boiler pressure low (error 14)",
            content="Refill the circuit to 1.2 bar.",
            keywords=["boiler", "pressure"],
            published=True,
        ),
        KnowledgeArticle(
            article_number="KA-2",
            title="Heat pump defrost cycle",
            content="A boiler is not involved; pressure in the refrigerant loop is normal.",
            keywords=["heat pump"],
            published=True,
        ),
        KnowledgeArticle(
            article_number="KA-3",
            title="Boiler pressure draft",
            content="Unpublished notes on boiler pressure.",
            keywords=["boiler"],
            published=False,
        ),
    ]
    session.add_all(rows)
    session.commit()
    return {a.article_number: a.id for a in rows}


def test_search_ranks_a_title_match_above_a_body_match_and_leaves_drafts_out(session, articles) -> None:
    code, out, _ = kb("search", "boiler pressure", "--json")

    assert code == 0 and set(out) == {"articles"}
    ids = [a["id"] for a in out["articles"]]
    assert ids == [articles["KA-1"], articles["KA-2"]]  # the draft KA-3 is never found
    scores = [a["score"] for a in out["articles"]]
    assert scores[0] > scores[1] and set(out["articles"][0]) == {"id", "title", "score"}


@pytest.mark.parametrize(
    "query", ['boiler" OR 1=1 --', "NEAR(boiler pressure)", "*", "boiler AND NOT", "'); DROP TABLE x; --"]
)
def test_hostile_looking_queries_are_plain_words(session, articles, query) -> None:
    code, out, err = kb("search", query, "--json")
    assert code == 0, err
    assert all(a["id"] != articles["KA-3"] for a in out["articles"])


def test_an_edited_article_is_found_by_its_new_words(session, articles) -> None:
    article = session.get(KnowledgeArticle, articles["KA-2"])
    article.title = "Thermostat battery replacement"
    session.commit()
    assert [a["id"] for a in kb("search", "thermostat", "--json")[1]["articles"]] == [articles["KA-2"]]


def make_case(session) -> Case:
    case = factories.make_case(session)
    session.commit()
    return case


def test_send_emails_once_records_an_activity_counts_usage_and_the_first_response(
    session, providers, articles
) -> None:
    case = make_case(session)

    code, out, _ = kb("send", case.ticket_number, str(articles["KA-1"]), "--json")
    again, out_again, _ = kb("send", case.ticket_number, str(articles["KA-1"]), "--json")

    assert code == 0 and out["status"] == "queued" and out["first_response"] is True
    assert again == 0 and out_again["status"] == "already_sent"
    [mail] = providers.sendgrid_mails()
    assert "Refill the circuit" in mail.json["content"][0]["value"]
    session.expire_all()
    assert session.get(KnowledgeArticle, articles["KA-1"]).usage_count == 1
    assert session.get(Case, case.id).first_response_at is not None
    subjects = session.scalars(select(Activity.subject).where(Activity.case_id == case.id)).all()
    session.commit()
    assert subjects == ["Knowledge article: Boiler pressure low (error 14)"]


def test_send_refuses_drafts_and_unknowns(session, articles) -> None:
    case = make_case(session)
    assert kb("send", case.ticket_number, str(articles["KA-3"]), "--json")[0] == 1
    code, _, err = kb("send", "CAS-00000-00000", str(articles["KA-1"]), "--json")
    assert code == 1 and "no case" in err
    code, _, err = kb("send", case.ticket_number, "999999", "--json")
    assert code == 1 and "no article 999999" in err


def test_suggestions_for_a_case_come_from_its_title(session, articles) -> None:
    from tasks.knowledge import suggest_for_case

    case = make_case(session)
    hits = suggest_for_case(session=session, ticket=case.ticket_number)
    session.commit()
    assert hits[0].id == articles["KA-1"]
