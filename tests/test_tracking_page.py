"""The customer's tracking page: status, times in the customer's zone, resolution, history, in their language;
nothing internal; no ticket oracle; fit for a phone."""

from __future__ import annotations

import hmac
import json
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from models import Case, CaseStatus, CaseStatusChange, Contact
from receiver import tracking
from receiver.tracking import LANGUAGES, TEMPLATE_DIR, customer_zone, page_strings, preferred_language
from tasks.case_status import change_case_status
from tests.test_case_status_journey import make_case

OPENED = datetime(2025, 3, 14, 12, 5, tzinfo=UTC)  # New York is on EDT (UTC-4) since 9 March 2025
RESOLVED = datetime(2025, 3, 20, 9, 30, tzinfo=UTC)


def open_case(session, *, language: str = "en", time_zone: str | None = None, phone: str | None = None):
    case = make_case(session, language=language)
    contact = session.get(Contact, case.contact_id)
    contact.time_zone = time_zone
    if phone != "keep":
        contact.phone = phone
    case.created_at = case.updated_at = OPENED
    for change in session.scalars(select(CaseStatusChange).where(CaseStatusChange.case_id == case.id)):
        change.changed_at = OPENED
    session.commit()
    return case


def page(receiver, case, **headers):
    return receiver.get(f"/track/{case.ticket_number}", params={"t": case.tracking_token}, headers=headers)


# Rules: no database.


def test_every_language_has_every_word_and_twelve_months() -> None:
    assert LANGUAGES == {"en", "el", "pl", "pt", "it"}
    english = json.loads((TEMPLATE_DIR / "track.en.json").read_text(encoding="utf-8"))
    for lang in LANGUAGES:
        own = json.loads((TEMPLATE_DIR / f"track.{lang}.json").read_text(encoding="utf-8"))
        assert own.keys() == english.keys(), lang
        assert own["reasons"].keys() == english["reasons"].keys(), lang
        assert len(own["months"]) == 12 and len(set(own["months"])) == 12, lang
        assert set(page_strings(lang)["statuses"]) == {s.value for s in CaseStatus}, lang


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "en"),
        ("", "en"),
        ("el-GR,el;q=0.9,en;q=0.8", "el"),
        ("de-DE,de;q=0.9,pl;q=0.5,en;q=0.4", "pl"),
        ("en-GB;q=0.3, pt-PT;q=0.7", "pt"),
        ("it;q=0", "en"),
        ("fr, de", "en"),
        ("../../etc/passwd, it", "it"),
        ("it;q=abc, pt", "pt"),
    ],
)
def test_not_found_language_comes_from_accept_language(header, expected) -> None:
    assert preferred_language(header) == expected


@pytest.mark.parametrize(
    ("time_zone", "phone", "expected"),
    [
        ("America/New_York", "+306912345678", "America/New_York"),  # the contact's own zone first
        ("Mars/Olympus_Mons", "+306912345678", "Europe/Athens"),  # not a zone: the phone's
        ("../../etc/passwd", None, "UTC"),
        (None, "+48501234567", "Europe/Warsaw"),
        (None, "+393471234567", "Europe/Rome"),  # Rome and the Vatican keep one clock
        (None, "+351912345678", "UTC"),  # Lisbon or the Azores: unknown, so UTC
        (None, "+447700900123", "UTC"),  # no zone for the number
        (None, "not a phone", "UTC"),
        (None, None, "UTC"),
    ],
)
def test_customer_zone(time_zone, phone, expected) -> None:
    assert customer_zone(time_zone, phone).key == expected


# The page, on the test database.


def test_tracking_page_shows_status_and_history_without_internal_notes(session, receiver) -> None:
    case = open_case(session, phone="keep")  # a Greek mobile, no zone of its own: Athens
    session.add(
        CaseStatusChange(
            case_id=case.id,
            from_status=CaseStatus.ACTIVE,
            to_status=CaseStatus.ACTIVE,
            status_reason="waiting_for_details",
            source="agent",
            note="INTERNAL: customer is difficult",
            changed_at=datetime(2025, 3, 15, 8, 0, tzinfo=UTC),
        )
    )
    session.commit()

    response = page(receiver, case)
    assert response.status_code == 200
    html = response.text
    assert '<html lang="en">' in html and f"<h1>Case {case.ticket_number}</h1>" in html
    assert '<span class="status active" role="status">In progress</span>' in html
    assert "14 March 2025, 14:05 EET" in html and 'datetime="2025-03-14T14:05:00+02:00"' in html
    assert "Waiting for details" in html and '<h2 id="history">History</h2>' in html
    assert "Times are shown in the Europe/Athens time zone." in html
    assert "INTERNAL" not in html and "token-" not in html
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("language", "lang", "words"),
    [
        (
            "en",
            "en",
            ["Case CAS", "Status", "In progress", "Opened", "14 March 2025, 08:05 EDT", "America/New York"],
        ),
        (
            "el",
            "el",
            ["Δελτίο CAS", "Κατάσταση", "Σε εξέλιξη", "Άνοιξε", "14 Μαρτίου 2025, 08:05 EDT", "ζώνη ώρας"],
        ),
        (
            "pl",
            "pl",
            ["Zgłoszenie CAS", "Status", "W toku", "Otwarto", "14 marca 2025, 08:05 EDT", "strefie czasowej"],
        ),
        (
            "pt",
            "pt",
            ["Caso CAS", "Estado", "Em curso", "Aberto em", "14 de março de 2025, 08:05 EDT", "fuso horário"],
        ),
        (
            "it",
            "it",
            ["Caso CAS", "Stato", "In lavorazione", "Aperto il", "14 marzo 2025, 08:05 EDT", "fuso orario"],
        ),
        (
            "de-AT",
            "en",
            ["Case CAS", "In progress", "Opened", "14 March 2025, 08:05 EDT", "time zone"],
        ),  # fallback
        ("pt-BR", "pt", ["Caso CAS", "Em curso"]),
    ],
)
def test_page_speaks_the_contacts_language(session, receiver, language, lang, words) -> None:
    case = open_case(session, language=language, time_zone="America/New_York")
    # The contact's language wins over the browser's.
    html = page(receiver, case, **{"Accept-Language": "it"}).text
    assert f'<html lang="{lang}">' in html
    for word in words:
        assert word in html, word
    if lang != "en":
        for english in ("Opened", "Last update", "History", "Times are shown", "In progress"):
            assert english not in html, english


def test_resolved_case_shows_the_resolution_escaped_and_the_resolved_time(session, receiver) -> None:
    case = open_case(session, language="el", time_zone="Europe/Lisbon")
    text = "Replaced the valve <script>alert('x')</script> & <b>tested</b>.\nCall us if it drops again."
    change_case_status(
        session=session,
        case=case,
        to_status=CaseStatus.RESOLVED,
        source="agent",
        resolution=text,
        changed_at=RESOLVED,
    )
    session.commit()

    html = page(receiver, case).text
    assert "<h2>Επίλυση</h2>" in html
    assert (
        '<p class="resolution">Replaced the valve &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; '
        "&lt;b&gt;tested&lt;/b&gt;.\nCall us if it drops again.</p>"
    ) in html
    assert "<script>" not in html and "<b>tested" not in html
    assert "<dt>Επιλύθηκε</dt>" in html and "20 Μαρτίου 2025, 09:30 WET" in html
    assert "14 Μαρτίου 2025, 12:05 WET" in html  # opened, in Lisbon (UTC+0 in March)
    assert '<span class="status resolved" role="status">Επιλύθηκε</span>' in html
    assert "Το πρόβλημα λύθηκε" in html  # the reason differs from the status in Greek

    body = page(receiver, case, Accept="application/json").json()
    assert body["resolution"] == text and body["time_zone"] == "Europe/Lisbon" and body["language"] == "el"
    assert body["resolved_at"] == "2025-03-20T09:30:00+00:00"


def test_reopened_or_active_case_shows_no_resolution(session, receiver) -> None:
    case = open_case(session)
    assert (
        "Resolution" not in page(receiver, case).text and "<dt>Resolved</dt>" not in page(receiver, case).text
    )
    change_case_status(
        session=session, case=case, to_status=CaseStatus.RESOLVED, source="agent", resolution="Fixed"
    )
    change_case_status(session=session, case=case, to_status=CaseStatus.ACTIVE, source="agent")
    session.commit()
    html = page(receiver, case).text
    assert "Fixed" not in html and "<h2>Resolution</h2>" not in html and "<dt>Resolved</dt>" not in html
    assert html.count("<li>") == 3  # opened, resolved, reopened
    assert page(receiver, case, Accept="application/json").json()["resolution"] is None


def test_json_form(session, receiver) -> None:
    case = open_case(session, time_zone="Europe/Warsaw")
    response = receiver.get(
        f"/track/{case.ticket_number}", params={"t": case.tracking_token, "format": "json"}
    )
    body = response.json()
    assert body["ticket_number"] == case.ticket_number and body["status"] == "active"
    assert body["opened_at"] == "2025-03-14T12:05:00+00:00" and body["time_zone"] == "Europe/Warsaw"
    assert [h["status"] for h in body["history"]] == ["active"]
    assert "note" not in str(body) and "tracking_token" not in body
    negotiated = page(receiver, case, Accept="application/json")
    assert negotiated.json()["ticket_number"] == case.ticket_number


def test_wrong_token_and_unknown_ticket_look_the_same(session, receiver) -> None:
    case = open_case(session, language="pl")
    wrong = receiver.get(f"/track/{case.ticket_number}", params={"t": "guess"})
    missing = receiver.get("/track/CAS-00000-00000", params={"t": "guess"})
    none = receiver.get(f"/track/{case.ticket_number}")
    assert wrong.status_code == missing.status_code == none.status_code == 404
    assert wrong.text == missing.text == none.text
    assert case.ticket_number not in wrong.text
    # A styled page in English, not the contact's Polish: the language must not tell the ticket exists.
    assert '<html lang="en">' in wrong.text and "<h1>Link not valid</h1>" in wrong.text
    assert "<style>" in wrong.text and "width=device-width" in wrong.text
    assert wrong.headers["cache-control"] == "no-store"
    assert session.scalar(select(Case.status).where(Case.id == case.id)) is CaseStatus.ACTIVE

    greek = {"Accept-Language": "el-GR,el;q=0.9"}
    wrong_el = receiver.get(f"/track/{case.ticket_number}", params={"t": "guess"}, headers=greek)
    missing_el = receiver.get("/track/CAS-00000-00000", params={"t": "guess"}, headers=greek)
    assert wrong_el.status_code == missing_el.status_code == 404 and wrong_el.text == missing_el.text
    assert '<html lang="el">' in wrong_el.text and "Μη έγκυρος σύνδεσμος" in wrong_el.text

    as_json = receiver.get(f"/track/{case.ticket_number}", params={"t": "guess", "format": "json"})
    assert as_json.status_code == 404 and as_json.json() == {"error": "not found"}


def test_token_is_compared_in_constant_time_either_way(session, receiver, monkeypatch) -> None:
    case = open_case(session)
    compared, real = [], hmac.compare_digest

    def compare_digest(a, b):
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(tracking.hmac, "compare_digest", compare_digest)
    receiver.get(f"/track/{case.ticket_number}", params={"t": "a-much-longer-guess-than-any-real-token" * 2})
    receiver.get("/track/CAS-00000-00000", params={"t": "x"})
    assert page(receiver, case).status_code == 200
    # Every comparison is of two equal-length digests: neither the token's length nor the ticket's existence shows.
    assert compared == [(32, 32)] * 3


def _css(html: str) -> str:
    return "\n".join(re.findall(r"<style>(.*?)</style>", html, flags=re.S))


def test_fits_a_phone(session, receiver) -> None:
    case = open_case(session, language="pt", time_zone="Europe/Lisbon")
    change_case_status(
        session=session, case=case, to_status=CaseStatus.RESOLVED, source="agent", resolution="x" * 300
    )
    session.commit()
    for response in (page(receiver, case), receiver.get("/track/CAS-00000-00000")):
        html = response.text
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
        css = _css(html)
        assert css
        # Nothing is made wider than a small phone (360 CSS px; 1rem = 16px); max-width only caps wide screens.
        px = [float(n) for n in re.findall(r"(\d+(?:\.\d+)?)px", css)]
        assert all(n <= 360 for n in px), px
        for prop, value in re.findall(r"(?<![-\w])(min-width|width)\s*:\s*([^;}]+)", css):
            for number, unit in re.findall(r"(\d*\.?\d+)(r?em|px)", value):
                assert float(number) * (1 if unit == "px" else 16) <= 360, (prop, value)
        assert "<table" not in html and 'style="' not in html
        # Long unbroken text wraps instead of widening the page.
        assert "overflow-wrap: anywhere" in css
