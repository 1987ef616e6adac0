"""Knowledge search queries: free text (or a case's title, description and error code) into safe query terms."""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W_]{2,}", re.UNICODE)  # letters and digits only: no query-language operator survives
MAX_TERMS = 16


def search_terms(*texts: str | int | None) -> list[str]:
    """Distinct lower-case words (two characters or more), in order, at most MAX_TERMS."""
    seen: dict[str, None] = {}
    for text in texts:
        for word in _WORD.findall(str(text) if text is not None else ""):
            seen.setdefault(word.lower(), None)
    return list(seen)[:MAX_TERMS]


def fts5_query(terms: list[str]) -> str:
    """An SQLite FTS5 MATCH expression: any of the terms, each a quoted string (never an operator)."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def tsquery(terms: list[str]) -> str:
    """A PostgreSQL to_tsquery text: any of the terms (already letters and digits only)."""
    return " | ".join(terms)
