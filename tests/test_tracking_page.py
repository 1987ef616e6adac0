"""The customer's tracking page: status, last update, history; nothing internal; no ticket oracle."""

from __future__ import annotations

from sqlalchemy import select

from models import Case, CaseStatus, CaseStatusChange
from tasks.case_status import change_case_status
from tests.test_case_status_journey import make_case


def test_tracking_page_shows_status_and_history_without_internal_notes(session, receiver) -> None:
    case = make_case(session)
    session.add(
        CaseStatusChange(
            case_id=case.id,
            from_status=CaseStatus.ACTIVE,
            to_status=CaseStatus.ACTIVE,
            status_reason="waiting_for_details",
            source="agent",
            note="INTERNAL: customer is difficult",
        )
    )
    change_case_status(session=session, case=case, to_status=CaseStatus.RESOLVED, source="agent")
    session.commit()

    response = receiver.get(f"/track/{case.ticket_number}", params={"t": case.tracking_token})
    assert response.status_code == 200
    html = response.text
    assert case.ticket_number in html and "Resolved" in html and '<html lang="en">' in html
    assert "waiting for details" in html and "<caption>History</caption>" in html
    assert "INTERNAL" not in html
    assert response.headers["cache-control"] == "no-store"


def test_json_form(session, receiver) -> None:
    case = make_case(session)
    response = receiver.get(
        f"/track/{case.ticket_number}", params={"t": case.tracking_token, "format": "json"}
    )
    body = response.json()
    assert body["ticket_number"] == case.ticket_number and body["status"] == "active"
    assert [h["status"] for h in body["history"]] == ["active"]
    assert "note" not in str(body) and "tracking_token" not in body
    negotiated = receiver.get(
        f"/track/{case.ticket_number}",
        params={"t": case.tracking_token},
        headers={"Accept": "application/json"},
    )
    assert negotiated.json()["ticket_number"] == case.ticket_number


def test_wrong_token_and_unknown_ticket_look_the_same(session, receiver) -> None:
    case = make_case(session)
    wrong = receiver.get(f"/track/{case.ticket_number}", params={"t": "guess"})
    missing = receiver.get("/track/CAS-00000-00000", params={"t": "guess"})
    none = receiver.get(f"/track/{case.ticket_number}")
    assert wrong.status_code == missing.status_code == none.status_code == 404
    assert wrong.text == missing.text == none.text
    assert case.ticket_number not in wrong.text
    assert session.scalar(select(Case.status).where(Case.id == case.id)) is CaseStatus.ACTIVE
