"""Believable people, companies and phone numbers per country, from data/people.json."""

from __future__ import annotations

import json
import random
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import phonenumbers

PEOPLE_FILE = Path(__file__).resolve().parent / "people.json"

# Letters NFKD cannot split into base + accent (ł, ø, ß…) still need an ASCII spelling in emails and domains.
_ASCII_EXTRA = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss", "æ": "ae", "Æ": "AE"})


@dataclass(frozen=True)
class Country:
    """Everything needed to invent a company and its people in one country."""

    code: str  # ISO 3166 region, as phonenumbers uses it ("GB", not "UK")
    language: str
    time_zone: str  # IANA name the demo contacts' times are shown in (the US ones: New York's)
    tld: str
    weight: int
    legal_forms: tuple[str, ...]
    male: tuple[str, ...]
    female: tuple[str, ...]
    surnames: tuple[tuple[str, str], ...]  # (male form, female form): Greek and Polish surnames inflect
    stems: tuple[str, ...]
    kinds: tuple[tuple[str, str], ...]  # (display word, domain slug)
    country_code: int
    phone_prefixes: tuple[str, ...]
    phone_digits: int


@lru_cache(maxsize=1)
def countries() -> dict[str, Country]:
    """The countries demo customers come from, keyed by region code."""
    raw = json.loads(PEOPLE_FILE.read_text(encoding="utf-8"))["countries"]
    return {
        code: Country(
            code=code,
            language=c["language"],
            time_zone=c["time_zone"],
            tld=c["tld"],
            weight=c["weight"],
            legal_forms=tuple(c["legal_forms"]),
            male=tuple(c["male"]),
            female=tuple(c["female"]),
            surnames=tuple((m, f) for m, f in c["surnames"]),
            stems=tuple(c["stems"]),
            kinds=tuple((d, s) for d, s in c["kinds"]),
            country_code=c["phone"]["country_code"],
            phone_prefixes=tuple(c["phone"]["prefixes"]),
            phone_digits=c["phone"]["digits"],
        )
        for code, c in raw.items()
    }


def ascii_slug(text: str) -> str:
    """Lower-case ASCII letters and digits only: 'Wiśniewska' → 'wisniewska', "O'Brien" → 'obrien'."""
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII_EXTRA))
    return "".join(ch for ch in folded.lower() if ch.isascii() and ch.isalnum())


def pick_country(rng: random.Random) -> Country:
    """A country, weighted so Greece leads and Ireland is rarer, as in the demo's customer base."""
    pool = list(countries().values())
    return rng.choices(pool, weights=[c.weight for c in pool], k=1)[0]


def person_name(rng: random.Random, country: Country) -> tuple[str, str]:
    """A (first, last) name; the surname agrees with the first name's gender where the language needs it."""
    female = rng.random() < 0.5
    first = rng.choice(country.female if female else country.male)
    male_form, female_form = rng.choice(country.surnames)
    return first, female_form if female else male_form


def phone_number(rng: random.Random, country: Country, used: set[str]) -> str:
    """A unique mobile number in E.164 that libphonenumber accepts as valid for the country."""
    # Prefixes are real mobile ranges, but a few sub-ranges (or US exchanges) are unassigned: draw again.
    for _ in range(200):
        national = rng.choice(country.phone_prefixes) + "".join(
            rng.choice("0123456789") for _ in range(country.phone_digits)
        )
        parsed = phonenumbers.parse(f"+{country.country_code}{national}")
        if not phonenumbers.is_valid_number_for_region(parsed, country.code):
            continue
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        if e164 not in used:
            used.add(e164)
            return e164
    raise RuntimeError(f"no valid phone number found for {country.code}; check people.json prefixes")


def company(rng: random.Random, country: Country, used_domains: set[str]) -> tuple[str, str]:
    """A unique (company name, email domain) such as ('Aegean Energy S.A.', 'aegean-energy.gr')."""
    for attempt in range(1000):
        stem = rng.choice(country.stems)
        kind, kind_slug = rng.choice(country.kinds)
        # Past the stem × kind combinations, a branch number keeps names and domains unique.
        branch = f" {attempt // 50 + 1}" if attempt >= 50 else ""
        domain = f"{ascii_slug(stem)}-{kind_slug}{branch.strip()}.{country.tld}"
        # Prefer a stem nobody has yet: two "Kronos …" companies in one demo look generated.
        stem_taken = any(d.startswith(f"{ascii_slug(stem)}-") for d in used_domains)
        if domain not in used_domains and (attempt >= 20 or not stem_taken):
            used_domains.add(domain)
            return f"{stem} {kind}{branch} {rng.choice(country.legal_forms)}", domain
    raise RuntimeError(f"ran out of company names for {country.code}")


def email_address(first: str, last: str, domain: str, used: set[str]) -> str:
    """first.last@domain in ASCII, with a digit added when two colleagues share a name."""
    local = f"{ascii_slug(first)}.{ascii_slug(last)}"
    candidate, n = f"{local}@{domain}", 1
    while candidate in used:
        n += 1
        candidate = f"{local}{n}@{domain}"
    used.add(candidate)
    return candidate
