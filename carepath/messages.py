"""Building messages from templates: pure functions, no I/O beyond reading the template files."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
DEFAULT_LANGUAGE = "en"


@lru_cache(maxsize=1)
def _environment() -> Environment:
    # StrictUndefined: a template that names a missing field fails loudly instead of texting a blank.
    return Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )


@lru_cache(maxsize=256)
def _template(kind: str, name: str, language: str):
    env = _environment()
    base = (language or DEFAULT_LANGUAGE).split("-")[0].lower()
    for lang in (base, DEFAULT_LANGUAGE):
        try:
            return env.get_template(f"{kind}/{name}.{lang}.txt.j2")
        except TemplateNotFound:
            continue
    raise TemplateNotFound(f"{kind}/{name}.{DEFAULT_LANGUAGE}.txt.j2")


def render_text(kind: str, name: str, language: str, **context: object) -> str:
    """Render `<kind>/<name>.<language>.txt.j2`, falling back to English when the language has none."""
    return _template(kind, name, language).render(**context).strip()


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
