"""Building messages from templates: pure functions, no I/O beyond reading the template files."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    UndefinedError,
    nodes,
)

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


@lru_cache(maxsize=256)
def _plain_parts(template: Template) -> tuple[tuple[bool, str], ...] | None:
    """A template that is only text and `{{ name }}` fields, as (is_field, text-or-name) parts; else None.

    Such a template renders as a join of its parts, several times faster than a Jinja render (which builds
    a context per call): the drain texts thousands of customers a second. Anything more (filters, tags,
    expressions, names of Jinja globals) is rendered by Jinja.
    """
    env = _environment()
    source, _, _ = env.loader.get_source(env, template.name)
    parts: list[tuple[bool, str]] = []
    for node in env.parse(source).body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                parts.append((False, child.data))
            elif isinstance(child, nodes.Name) and child.ctx == "load" and child.name not in env.globals:
                parts.append((True, child.name))
            else:
                return None
    return tuple(parts)


def render_text(kind: str, name: str, language: str, part: str | None = None, **context: object) -> str:
    """Render `<kind>/<name>.<language>[.<part>].txt.j2`, falling back to English for a missing language."""
    template = _template(kind, name, language, part)
    parts = _plain_parts(template)
    if parts is None:
        return template.render(**context).strip()
    missing = next((text for is_field, text in parts if is_field and text not in context), None)
    if missing is not None:  # as StrictUndefined would say it
        raise UndefinedError(f"{missing!r} is undefined")
    return "".join(str(context[text]) if is_field else text for is_field, text in parts).strip()


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


def render_acknowledgement_email(
    *, language: str, first_name: str, ticket_number: str, title: str, tracking_url: str
) -> tuple[str, str]:
    """Subject and body of the "we have your request" email for a case opened from an email."""
    context = {
        "first_name": first_name,
        "ticket_number": ticket_number,
        "title": title,
        "tracking_url": tracking_url,
    }
    return (
        render_text("email", "acknowledgement", language, "subject", **context),
        render_text("email", "acknowledgement", language, "body", **context),
    )
