"""Message templates: the plain-template fast path renders exactly what Jinja renders, in every language."""

from __future__ import annotations

import pytest
from jinja2 import UndefinedError

from carepath.messages import TEMPLATE_DIR, _plain_parts, _template, render_fault_sms, render_text

CONTEXT = {
    "first_name": "Ελένη",
    "device_id": "DEV-000001",
    "error_code": 42,
    "ticket_number": "CAS-26-123456",
    "tracking_url": "https://support.example/track/CAS-26-123456?t=abc",
    "status": "resolved",
    "status_label": "resolved",
    "title": "Boiler DEV-000001: critical fault 42",
    "resolution": "Replaced the pressure sensor.",
}


def templates() -> list[tuple[str, str, str, str | None]]:
    found = []
    for path in sorted(TEMPLATE_DIR.glob("*/*.txt.j2")):
        kind = path.parent.name
        name, language, *rest = path.name.removesuffix(".txt.j2").split(".")
        found.append((kind, name, language, rest[0] if rest else None))
    return found


@pytest.mark.parametrize(("kind", "name", "language", "part"), templates())
def test_fast_path_renders_what_jinja_renders(kind, name, language, part) -> None:
    template = _template(kind, name, language, part)
    assert render_text(kind, name, language, part, **CONTEXT) == template.render(**CONTEXT).strip()


def test_sms_templates_take_the_fast_path_and_keep_strict_fields() -> None:
    for language in ("en", "el", "pl", "pt", "it"):
        assert _plain_parts(_template("sms", "iot_fault_case_opened", language)) is not None
    context = {k: CONTEXT[k] for k in ("first_name", "device_id", "error_code", "ticket_number")}
    with pytest.raises(UndefinedError, match="tracking_url"):
        render_text("sms", "iot_fault_case_opened", "en", **context)


def test_fault_sms_reads_naturally_and_falls_back_to_english() -> None:
    text = render_fault_sms(
        language="fr-CA",
        first_name="Zoé",
        device_id="DEV-9",
        error_code=11,
        ticket_number="CAS-1",
        tracking_url="https://x/track/CAS-1?t=t",
    )
    assert text == (
        "Hi Zoé, your device DEV-9 reported a critical fault (code 11). We opened case CAS-1 and are on it. "
        "Track it: https://x/track/CAS-1?t=t"
    )
