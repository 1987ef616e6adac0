"""Building messages from templates: pure functions, no I/O beyond reading the template files."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, TemplateNotFound

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
DEFAULT_LANGUAGE = "en"

# Customer-facing names of case statuses, per language.
STATUS_LABELS: dict[str, dict[str, str]] = {
    "en": {"active": "in progress", "resolved": "resolved", "cancelled": "cancelled"},
    "el": {"active": "σε εξέλιξη", "resolved": "επιλύθηκε", "cancelled": "ακυρώθηκε"},
    "pl": {"active": "w toku", "resolved": "rozwiązane", "cancelled": "anulowane"},
    "pt": {"active": "em curso", "resolved": "resolvido", "cancelled": "cancelado"},
    "it": {"active": "in lavorazione", "resolved": "risolto", "cancelled": "annullato"},
}


@lru_cache(maxsize=1)
def _environment() -> Environment:
    # StrictUndefined: a template that names a missing field fails loudly instead of texting a blank.
    return Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )


def base_language(language: str | None) -> str:
    return (language or DEFAULT_LANGUAGE).split("-")[0].lower()


@lru_cache(maxsize=256)
def _template(kind: str, name: str, language: str, part: str | None = None) -> Template:
    env = _environment()
    suffix = f".{part}" if part else ""
    for lang in (base_language(language), DEFAULT_LANGUAGE):
        try:
            return env.get_template(f"{kind}/{name}.{lang}{suffix}.txt.j2")
        except TemplateNotFound:
            continue
    raise TemplateNotFound(f"{kind}/{name}.{DEFAULT_LANGUAGE}{suffix}.txt.j2")


def render_text(kind: str, name: str, language: str, part: str | None = None, **context: object) -> str:
    """Render `<kind>/<name>.<language>[.<part>].txt.j2`, falling back to English for a missing language."""
    return _template(kind, name, language, part).render(**context).strip()


def render_fault_sms(
    *, language: str, first_name: str, device_id: str, error_code: int, ticket_number: str, tracking_url: str
) -> str:
    """The SMS telling a device owner that a case was opened for a critical fault."""
    return render_text(
        "sms",
        "iot_fault_case_opened",
        language,
        first_name=first_name,
        device_id=device_id,
        error_code=error_code,
        ticket_number=ticket_number,
        tracking_url=tracking_url,
    )


def render_status_email(
    *,
    language: str,
    status: str,
    first_name: str,
    ticket_number: str,
    title: str,
    tracking_url: str,
    resolution: str | None = None,
) -> tuple[str, str]:
    """Subject and body of the email telling a customer their case changed status."""
    name = "case_resolved" if status == "resolved" else "case_status_changed"
    labels = STATUS_LABELS.get(base_language(language), STATUS_LABELS[DEFAULT_LANGUAGE])
    context = {
        "first_name": first_name,
        "ticket_number": ticket_number,
        "title": title,
        "tracking_url": tracking_url,
        "resolution": resolution,
        "status_label": labels.get(status, status),
    }
    return (
        render_text("email", name, language, "subject", **context),
        render_text("email", name, language, "body", **context),
    )
