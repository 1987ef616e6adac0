"""The receiver's OpenAPI document, fuzzed by schemathesis in-process (ASGI, with its lifespan): every route,
unsigned and then signed the way each source signs. Whatever arrives: a 2xx, or a 4xx with a reason — never a
500, never a hang (each call has a time-out), never a partial write (a refused webhook adds no inbox row and
one rejection row; an accepted one adds at most its events).

Examples per operation and mode: CAREPATH_FUZZ_EXAMPLES (default 6; `CAREPATH_FUZZ_EXAMPLES=500` for a long run).
"""

from __future__ import annotations

import base64
import os
from urllib.parse import parse_qsl

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi
from sqlalchemy import func, select

from carepath import db
from carepath.settings import get_settings, reset_settings
from carepath.sources import routes
from models import InboxEvent, WebhookRejection
from tests.utils import signing

EXAMPLES = int(os.environ.get("CAREPATH_FUZZ_EXAMPLES", "6"))
INBOUND_AUTH = "parse:inbound-test-password"
SUMMARY_TOKEN = "summary-test-token"
SECRETS = {
    "iot": signing.IOT_SECRET,
    "cases": signing.CASES_SECRET,
    "portal": signing.PORTAL_SECRET,
    "webshop": "webshop-test-secret",
}
BASE = "https://care.example.test"
TIMEOUT = 15  # seconds: a call that takes longer is a hang


@pytest.fixture()
def receiver_schema(engine, monkeypatch: pytest.MonkeyPatch, sendgrid_keys):
    """The receiver with every source's credentials known, as schemathesis loads it (ASGI, lifespan run)."""
    from receiver.app import create_app

    for source, secret in SECRETS.items():
        monkeypatch.setenv(f"CAREPATH_{source.upper()}_WEBHOOK_SECRET", secret)
    monkeypatch.setenv("CAREPATH_TWILIO_AUTH_TOKEN", signing.TWILIO_TOKEN)
    monkeypatch.setenv("CAREPATH_SENDGRID_WEBHOOK_PUBLIC_KEY", sendgrid_keys.public_key)
    monkeypatch.setenv("CAREPATH_SENDGRID_INBOUND_AUTH", INBOUND_AUTH)
    monkeypatch.setenv("CAREPATH_SUMMARY_API_TOKEN", SUMMARY_TOKEN)
    monkeypatch.setenv("CAREPATH_WEBHOOK_MAX_BODY_BYTES", "65536")
    monkeypatch.setenv("CAREPATH_PUBLIC_BASE_URL", BASE)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    reset_settings()
    app = create_app(get_settings())
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    yield schema
    asgi.shutdown_lifespans()  # the app's lifespan: its writer, announcer and engine
    reset_settings()


def _operations() -> list[tuple[str, str, str]]:
    """Every (method, path) the receiver serves, as its OpenAPI document lists them, with valid requests and
    with requests that break the document ("negative": none for an operation that takes nothing)."""
    from receiver.app import create_app

    paths = create_app(get_settings()).openapi()["paths"]
    return [
        (method.upper(), path, mode)
        for path, ops in paths.items()
        for method, op in ops.items()
        for mode in ("positive", "negative")
        if mode == "positive" or op.get("parameters") or op.get("requestBody")
    ]


OPERATIONS = _operations()


def counts() -> tuple[int, int]:
    """(inbox rows, rejection rows), read in a transaction of their own."""
    with db.get_engine().connect() as conn:
        inbox = conn.scalar(select(func.count()).select_from(InboxEvent))
        rejected = conn.scalar(select(func.count()).select_from(WebhookRejection))
    return inbox, rejected


def sign(path: str, body: bytes, headers: dict[str, str], keys: signing.SendGridKeys) -> dict[str, str]:
    """Headers that prove the body comes from the route's source, as that source would sign it."""
    declared = routes().get(path)
    if declared is None:
        return {"Authorization": f"Bearer {SUMMARY_TOKEN}"} if path == "/customers/summary" else {}
    if declared.verifier == "carepath-hmac":
        signed = signing.carepath_headers(SECRETS[declared.source], body)
        signed.pop("Content-Type")  # the generated request's own media type stays
        return signed
    if declared.verifier == "sendgrid":
        signed = keys.headers(body)
        signed.pop("Content-Type")
        return signed
    if declared.verifier == "basic-auth":
        return {"Authorization": "Basic " + base64.b64encode(INBOUND_AUTH.encode()).decode()}
    try:  # Twilio signs the URL and the form's fields: a body that is no form cannot be signed
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        return {}
    signed = signing.twilio_headers(BASE + path, form)
    signed.pop("Content-Type")
    return signed


def call_and_check(case, *, signed: bool, keys: signing.SendGridKeys) -> None:
    """Send the generated request (signed or not); assert the answer and what reached the database."""
    kwargs = case.as_transport_kwargs(base_url=BASE)
    prepared = requests.Request(
        method=kwargs["method"],
        url=kwargs["url"],
        headers=kwargs.get("headers"),
        params=kwargs.get("params"),
        data=kwargs.get("data"),
        json=kwargs.get("json"),
        files=kwargs.get("files"),
        cookies=kwargs.get("cookies"),
    ).prepare()
    body = prepared.body.encode() if isinstance(prepared.body, str) else (prepared.body or b"")
    headers = dict(prepared.headers)
    if signed:
        headers.update(sign(case.path, body, headers, keys))
    before = counts()
    response = case.call(base_url=BASE, headers=headers, data=body, timeout=TIMEOUT)
    after = counts()
    case.validate_response(response, checks=[not_a_server_error])
    status, text = response.status_code, response.text
    assert 200 <= status < 300 or 400 <= status < 500, (status, text)
    if status >= 400:
        assert text.strip(), f"{status} without a reason"
    if not case.path.startswith("/webhooks/"):
        assert after[0] == before[0], "only a webhook writes to the inbox"
        assert after[1] - before[1] in (0, 1)
        return
    if status >= 400:
        assert response.json()["error"], f"{status} without a reason"
        assert after == (before[0], before[1] + 1), "a refused webhook must add no event and one rejection"
    else:
        assert before[1] == after[1] and after[0] >= before[0], "an accepted webhook rejects nothing"
        answer = response.json() if text.startswith("{") else {}  # Twilio's inbound answers TwiML
        assert after[0] - before[0] <= answer.get("accepted", 1), (before, after, answer, body[:300])


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # CI runs the same examples every time; CAREPATH_FUZZ_EXAMPLES widens the search
    database=None,
)


def fuzz(schema, method: str, path: str, mode: str, *, signed: bool, keys: signing.SendGridKeys) -> None:
    """Generate requests for one operation (valid ones, or ones that break its schema) and check each."""
    strategy = schema[path][method].as_strategy(generation_mode=GenerationMode(mode))

    @FUZZ
    @given(case=strategy)
    def each(case) -> None:
        call_and_check(case, signed=signed, keys=keys)

    each()


@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS)
def test_unsigned_requests_are_refused_with_a_reason_and_write_nothing(
    receiver_schema, sendgrid_keys, method, path, mode
) -> None:
    fuzz(receiver_schema, method, path, mode, signed=False, keys=sendgrid_keys)


@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS)
def test_signed_requests_are_accepted_or_refused_with_a_reason_never_half_written(
    receiver_schema, sendgrid_keys, method, path, mode
) -> None:
    fuzz(receiver_schema, method, path, mode, signed=True, keys=sendgrid_keys)


def test_every_webhook_route_describes_its_body() -> None:
    """FastAPI cannot see the raw-request handlers' bodies: each route's document names its media type and
    its schema, from the source's pydantic model."""
    from receiver.app import create_app
    from receiver.webhooks import MEDIA_TYPES

    document = create_app(get_settings()).openapi()
    for path, declared in routes().items():
        body = document["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        [(media, content)] = body["content"].items()
        assert media == MEDIA_TYPES[declared.verifier]
        described = content["schema"]
        one = described.get("items") or (described.get("anyOf") or [described])[0]
        required = declared.schema.model_json_schema(by_alias=True).get("required", [])
        assert set(required) == set(one.get("required", []))
        assert {"400", "401", "413", "415", "422", "429"} <= set(document["paths"][path]["post"]["responses"])
