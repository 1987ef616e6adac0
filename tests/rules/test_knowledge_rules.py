"""Search terms are words only: whatever the input, no query operator reaches the full-text engine."""

import pytest

from carepath.rules.knowledge import fts5_query, search_terms, tsquery


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("Boiler pressure LOW, boiler!", ["boiler", "pressure", "low"]),
        ('boiler" OR 1=1 --', ["boiler", "or"]),
        ("NEAR(pressure error) * ^ :title", ["near", "pressure", "error", "title"]),
        ("Πίεση λέβητα", ["πίεση", "λέβητα"]),
        ("", []),
        (None, []),
    ],
)
def test_search_terms_are_plain_words(text, terms) -> None:
    assert search_terms(text) == terms


def test_a_case_gives_its_title_description_and_error_code() -> None:
    assert search_terms("Boiler fault", None, 14) == ["boiler", "fault", "14"]


def test_queries_quote_every_term() -> None:
    assert fts5_query(["boiler", "or"]) == '"boiler" OR "or"'
    assert tsquery(["boiler", "low"]) == "boiler | low"
