"""Duplicate-contact rules: blocking keys and the score with its reasons."""

from __future__ import annotations

import pytest

from carepath.rules.duplicates import (
    ContactFacts,
    email_key,
    normalise_name,
    phone_key,
    score_pair,
    squash_local,
)


@pytest.mark.parametrize(
    ("local", "squashed"),
    [
        ("j.smith", "jsmith"),
        ("JSmith", "jsmith"),
        ("j.smith+shop", "jsmith"),
        ("j_smith-1", "jsmith1"),
        ("", ""),
    ],
)
def test_squash_local(local, squashed) -> None:
    assert squash_local(local) == squashed


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("J.Smith@Example.COM", ("example.com", "jsmith")),
        (" jsmith+x@example.com ", ("example.com", "jsmith")),
        ("nobody", None),
        ("@example.com", None),
        (None, None),
    ],
)
def test_email_key(address, key) -> None:
    assert email_key(address) == key


@pytest.mark.parametrize(
    ("first", "last", "name"),
    [
        ("Eleni", "Papadopoulou", "eleni papadopoulou"),
        ("  ÉLÉNI ", "Papadopoulou", "eleni papadopoulou"),
        ("Seán", "O'Brien", "sean obrien"),
        ("Ελένη", "Παπαδοπούλου", "ελενη παπαδοπουλου"),
        ("ΕΛΈΝΗ", "ΠΑΠΑΔΟΠΟΎΛΟΥ", "ελενη παπαδοπουλου"),
    ],
)
def test_normalise_name(first, last, name) -> None:
    assert normalise_name(first, last) == name


@pytest.mark.parametrize(
    ("phone", "key"),
    [("+306912345678", "+306912345678"), ("+30 691 234-5678", "+306912345678"), ("12", None), (None, None)],
)
def test_phone_key(phone, key) -> None:
    assert phone_key(phone) == key


def facts(i, first="John", last="Smith", email=None, phone=None, account=1) -> ContactFacts:
    return ContactFacts(i, first, last, email, phone, account)


@pytest.mark.parametrize(
    ("a", "b", "score", "why"),
    [
        (
            facts(1, email="j.smith@acme.com"),
            facts(2, email="J.Smith@acme.com"),
            0.98,
            ["same email", "same name in account"],
        ),
        (
            facts(1, email="j.smith@acme.com", account=1),
            facts(2, email="jsmith@acme.com", account=2),
            0.8,
            ["near-identical email", "same name"],
        ),
        (
            facts(1, email="j.smith@acme.com", last="S"),
            facts(2, email="jsmith+x@acme.com", last="T"),
            0.75,
            ["near-identical email"],
        ),
        (
            facts(1, email="j.smith@hotmail.com", last="S"),
            facts(2, email="jsmith@hotmail.com", last="T"),
            0.35,
            ["near-identical free-mail address"],
        ),
        (
            facts(1, email="j.smith@gmail.com", last="S"),
            facts(2, email="jsmith@gmail.com", last="T"),
            0.75,
            ["near-identical email"],
        ),
        (
            facts(1, phone="+447700123456", last="A"),
            facts(2, phone="+44 7700 123456", last="B"),
            0.6,
            ["same phone"],
        ),
        (facts(1), facts(2), 0.6, ["same name in account"]),
        (facts(1, account=1), facts(2, account=2), 0.0, []),  # two John Smiths at two companies
        (facts(1, account=None), facts(2, account=None), 0.0, []),
        (
            facts(1, phone="+447700123456"),
            facts(2, phone="+447700123456"),
            0.84,
            ["same phone", "same name in account"],
        ),
        (
            facts(1, email="a.b@x.com", phone="+447700123456"),
            facts(2, email="ab@x.com", phone="+447700123456"),
            0.96,
            ["near-identical email", "same phone", "same name in account"],
        ),
        (facts(1, email="a@x.com", last="A"), facts(2, email="b@x.com", last="B"), 0.0, []),
    ],
)
def test_score_pair(a, b, score, why) -> None:
    assert score_pair(a, b) == (score, why)
    assert score_pair(b, a) == (score, why)  # symmetric
