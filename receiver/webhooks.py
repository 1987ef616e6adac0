"""Webhook endpoints: authenticate → validate → store (commit) → 202 with the inbox id → announce.

Every route, and the inbox (source, kind), schema and verification behind it, comes from the source registry
(carepath/sources.py). Our own HMAC-signed JSON sources share one handler; a source whose body or answer
differs (Twilio's form posts and TwiML, SendGrid's signed arrays) has its own below, keyed by its name.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, TypeAdapter, ValidationError

from carepath.settings import Settings
from carepath.sources import Source, routes
from receiver.errors import Rejected, Unavailable
from receiver.inbox_writer import Accepted
from receiver.signatures import verify_basic_auth, verify_carepath, verify_sendgrid, verify_twilio

router = APIRouter(prefix="/webhooks")


def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def read_body(request: Request, source: str, limit: int | None = None) -> bytes:
    """The raw body (signatures are over the exact bytes), refused past the configured size."""
    request.scope["carepath_source"] = source
    limit = limit or _settings(request).webhook_max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Rejected(413, f"body of {declared} bytes exceeds the {limit}-byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Rejected(413, f"body exceeds the {limit}-byte limit")
    return bytes(body)


def parse_json(body: bytes) -> Any:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:  # deeply nested arrays or objects, well under the size limit
        raise Rejected(400, "body is not acceptable JSON: nested too deeply") from None
    require_storable(data)
    return data


def _unstorable_text(value: Any) -> str | None:
    """The first text (key or value) the database cannot keep: a NUL, or half a surrogate pair."""
    if isinstance(value, str):
        if "\x00" in value:
            return "a NUL character (\\u0000)"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "an unpaired surrogate (\\ud800-\\udfff)"
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _unstorable_text(key) or _unstorable_text(item)
        if found:
            return found
    return None


def require_storable(data: Any) -> None:
    """Refuse (400) text no database keeps (PostgreSQL's jsonb and text refuse NUL and unpaired surrogates):
    checked before anything is stored, so one such event never fails the others written with it."""
    found = _unstorable_text(data)
    if found:
        raise Rejected(400, f"body is not acceptable: its text contains {found}")


def validate(model: type[BaseModel] | TypeAdapter, data: Any) -> Any:
    """Pydantic validation; a failure is a 422 naming each field and why."""
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_python(data)
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "error": e["msg"]} for e in exc.errors()
        ]
        summary = "; ".join(f"{e['field']}: {e['error']}" for e in errors[:5])
        raise Rejected(422, f"invalid payload: {summary}", errors=errors) from None


def check_carepath_signature(request: Request, source: str, body: bytes) -> None:
    settings = _settings(request)
    secret = settings.webhook_secret(source)
    verify_carepath(
        secret=secret.get_secret_value() if secret else None,
        signature=request.headers.get("x-carepath-signature"),
        timestamp=request.headers.get("x-carepath-timestamp"),
        body=body,
        tolerance=settings.webhook_tolerance_seconds,
    )


def public_url(request: Request) -> str:
    """The URL the provider called, as it saw it (Twilio signs it): the configured public base, or the
    proxy's X-Forwarded-Proto/Host when trusted."""
    settings = _settings(request)
    path_qs = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if settings.trust_forwarded_headers and request.headers.get("x-forwarded-host"):
        proto = request.headers.get("x-forwarded-proto", request.url.scheme).split(",")[0].strip()
        host = request.headers["x-forwarded-host"].split(",")[0].strip()
        return f"{proto}://{host}{path_qs}"
    return settings.public_base_url.rstrip("/") + path_qs


def twilio_form(request: Request, body: bytes) -> dict[str, str]:
    try:
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected(400, f"malformed form body: {exc}") from None
    require_storable(form)
    settings = _settings(request)
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else None
    verify_twilio(
        auth_token=token,
        url=public_url(request),
        params=form,
        signature=request.headers.get("x-twilio-signature"),
    )
    return form


async def store(request: Request, declared: Source, event_id: str, payload: dict[str, Any]) -> Accepted:
    """The event's inbox row, committed; a store that failed (the database is away) is a 503, never a 202."""
    try:
        return await request.app.state.writer.store(
            source=declared.source, kind=declared.kind, event_id=event_id, payload=payload
        )
    except Exception as exc:  # nothing was stored: the sender must send it again
        raise Unavailable(
            f"the inbox could not store the event ({type(exc).__name__}); send it again"
        ) from exc


def accepted_one(a: Accepted) -> JSONResponse:
    return JSONResponse({"inbox_id": a.inbox_id, "duplicate": a.duplicate}, status_code=202)


def accepted_many(items: list[Accepted]) -> JSONResponse:
    return JSONResponse(
        {
            "inbox_ids": [a.inbox_id for a in items],
            "accepted": len(items),
            "duplicates": sum(a.duplicate for a in items),
        },
        status_code=202,
    )


@lru_cache(maxsize=16)
def list_of(schema: type[BaseModel]) -> TypeAdapter:
    """A validator for an array of `schema` (built once per schema: building one costs more than using it)."""
    return TypeAdapter(list[schema])


def require_media_type(request: Request, source: str, expected: str) -> None:
    """Refuse (415) a body that says it is something else: `application/json` also takes `…+json`. Checked
    after the signature where the signature covers the raw body: an unsigned caller learns nothing more."""
    request.scope["carepath_source"] = source
    given = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if given != expected and not (expected == "application/json" and given.endswith("+json")):
        raise Rejected(415, f"{source} webhooks post {expected}, not {given or 'a body without a type'}")


async def signed_json_events(request: Request, declared: Source) -> JSONResponse:
    """One of our own sources (HMAC-signed JSON with an `event_id`): one event, or an array when the source
    sends batches (a device that buffers)."""
    body = await read_body(request, declared.source)
    check_carepath_signature(request, declared.source, body)
    require_media_type(request, declared.source, "application/json")
    data = parse_json(body)
    if not (declared.batches and isinstance(data, list)):
        one = validate(declared.schema, data)
        return accepted_one(await store(request, declared, one.event_id, one.model_dump(mode="json")))
    if not data:
        raise Rejected(422, "invalid payload: empty array")
    events = validate(list_of(declared.schema), data)
    stored = await asyncio.gather(
        *(store(request, declared, e.event_id, e.model_dump(mode="json")) for e in events)
    )
    return accepted_many(list(stored))


async def twilio_status(request: Request, declared: Source) -> JSONResponse:
    """Twilio's delivery status callback for a message we sent."""
    require_media_type(request, declared.source, "application/x-www-form-urlencoded")
    body = await read_body(request, declared.source)
    form = twilio_form(request, body)
    status = validate(declared.schema, form)
    # Twilio marks retries of one callback with the same idempotency token.
    event_id = request.headers.get("i-twilio-idempotency-token") or (
        f"{status.MessageSid}:{status.MessageStatus}:{status.ErrorCode or ''}"
    )
    return accepted_one(await store(request, declared, event_id, form))


async def twilio_inbound(request: Request, declared: Source) -> Response:
    """An SMS from a customer (STOP/START keywords change consent). Answers TwiML, as Twilio expects."""
    require_media_type(request, declared.source, "application/x-www-form-urlencoded")
    body = await read_body(request, declared.source)
    form = twilio_form(request, body)
    message = validate(declared.schema, form)
    accepted = await store(request, declared, message.MessageSid, form)
    return Response(
        '<?xml version="1.0" encoding="UTF-8"?><Response></Response>',
        media_type="text/xml",
        status_code=200,
        headers={"X-Carepath-Inbox-Id": str(accepted.inbox_id)},
    )


async def sendgrid_events(request: Request, declared: Source) -> JSONResponse:
    """SendGrid's signed event webhook: an array of delivery and engagement events."""
    body = await read_body(request, declared.source)
    settings = _settings(request)
    verify_sendgrid(
        public_key=settings.sendgrid_webhook_public_key,
        signature=request.headers.get("x-twilio-email-event-webhook-signature"),
        timestamp=request.headers.get("x-twilio-email-event-webhook-timestamp"),
        body=body,
        tolerance=settings.webhook_tolerance_seconds,
    )
    require_media_type(request, declared.source, "application/json")
    data = parse_json(body)
    if not isinstance(data, list) or not data:
        raise Rejected(422, "invalid payload: expected a non-empty array of events")
    events = validate(list_of(declared.schema), data)
    stored = await asyncio.gather(
        *(store(request, declared, e.sg_event_id, raw) for e, raw in zip(events, data, strict=True))
    )
    return accepted_many(list(stored))


Handler = Callable[[Request, Source], Awaitable[Response]]


# Sources whose requests are not our signed JSON events; the verifier each handler implements.
def form_fields(request: Request, body: bytes) -> dict[str, str]:
    """The text fields of a multipart/form-data body, parsed by the standard library's MIME parser."""
    from email import policy
    from email.parser import BytesParser

    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data") or "boundary=" not in content_type:
        raise Rejected(415, "SendGrid Inbound Parse posts multipart/form-data with a boundary")
    try:
        message = BytesParser(policy=policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1") + body
        )
    except (ValueError, UnicodeError) as exc:
        raise Rejected(400, f"malformed multipart body: {exc}") from None
    if not message.is_multipart():
        raise Rejected(400, "malformed multipart body: no parts")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name or part.get_filename():  # attachments are in the raw message when it is posted whole
            continue
        payload = part.get_payload(decode=True) or b""
        charset = part.get_content_charset() or "utf-8"
        fields[str(name)] = payload.decode(charset, "replace")
    return fields


async def sendgrid_inbound(request: Request, declared: Source) -> JSONResponse:
    """An email to one of our mailboxes, from SendGrid Inbound Parse (HTTP Basic in the URL it posts to)."""
    settings = _settings(request)
    auth = settings.sendgrid_inbound_auth
    request.scope["carepath_source"] = declared.source
    verify_basic_auth(
        expected=auth.get_secret_value() if auth else None, authorization=request.headers.get("authorization")
    )
    body = await read_body(request, declared.source, settings.inbound_email_max_bytes)
    fields = form_fields(request, body)
    require_storable(fields)
    inbound = validate(declared.schema, fields)
    raw = inbound.raw_message()
    return accepted_one(await store(request, declared, inbound_event_id(raw), {"raw": raw}))


def inbound_event_id(raw: str) -> str:
    """The email's Message-ID (SendGrid retries a post it got no 2xx for: the same email is stored once), or a
    digest of the message when it has none."""
    import hashlib
    import re

    head = raw.split("\n\n", 1)[0]
    found = re.search(r"^message-id:\s*<?([^>\r\n]+)>?", head, re.IGNORECASE | re.MULTILINE)
    return found.group(1).strip()[:200] if found else "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


HANDLERS: dict[str, tuple[str, Handler]] = {
    "twilio-status": ("twilio", twilio_status),
    "twilio-inbound": ("twilio", twilio_inbound),
    "sendgrid-events": ("sendgrid", sendgrid_events),
    "sendgrid-inbound": ("basic-auth", sendgrid_inbound),
}


def handler_for(declared: Source) -> Handler:
    """The handler of a declared webhook source: its own, or the shared one for our signed JSON events."""
    verifier, handle = HANDLERS.get(declared.name, ("carepath-hmac", signed_json_events))
    if verifier != declared.verifier:
        raise ValueError(
            f"{declared.name} is declared {declared.verifier!r}; its handler verifies {verifier!r}"
        )
    return handle


def _endpoint(declared: Source, handle: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await handle(request, declared)

    endpoint.__name__ = declared.name.replace("-", "_")
    endpoint.__doc__ = handle.__doc__
    return endpoint


# What each verifier's requests carry: the media type of the body the OpenAPI document describes.
MEDIA_TYPES = {
    "carepath-hmac": "application/json",
    "sendgrid": "application/json",
    "twilio": "application/x-www-form-urlencoded",
    "basic-auth": "multipart/form-data",
}
_REFUSALS = {
    400: "The body cannot be read (malformed JSON or form, nested too deeply, not UTF-8).",
    401: "Not provably from the source (signature, timestamp window, credentials).",
    413: "The body exceeds the size limit.",
    415: "The body is not of the media type this source posts.",
    422: "The body is readable but invalid: each field and why.",
    429: "Over the per-client or per-source rate: try again after Retry-After seconds.",
}
_REFUSAL_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "errors": {"type": "array", "items": {"type": "object"}}},
}


def _form_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema as form fields: every value is text (a nullable field is an optional one)."""
    props = {}
    for name, prop in schema.get("properties", {}).items():
        branch = next((b for b in prop.get("anyOf", [prop]) if b.get("type") == "string"), {"type": "string"})
        props[name] = {k: v for k, v in branch.items() if k in ("type", "minLength", "maxLength", "pattern")}
    return {"type": "object", "properties": props, "required": schema.get("required", [])}


def request_body(declared: Source) -> dict[str, Any]:
    """The OpenAPI request body of a source's route, from its pydantic schema (the handlers read the raw
    request, so FastAPI cannot see it): one event or an array for JSON, form fields for Twilio and SendGrid
    Inbound Parse."""
    assert declared.schema is not None and declared.verifier is not None
    one = declared.schema.model_json_schema(by_alias=True)
    media = MEDIA_TYPES[declared.verifier]
    if media != "application/json":
        body = _form_fields(one)
    elif declared.verifier == "sendgrid":
        body = {"type": "array", "items": one, "minItems": 1}
    elif declared.batches:
        body = {"anyOf": [one, {"type": "array", "items": one, "minItems": 1}]}
    else:
        body = one
    return {"required": True, "content": {media: {"schema": body}}}


def _responses(declared: Source) -> dict[int | str, dict[str, Any]]:
    refusal = {"application/json": {"schema": _REFUSAL_SCHEMA}}
    answers: dict[int | str, dict[str, Any]] = {
        status: {"description": text, "content": refusal} for status, text in _REFUSALS.items()
    }
    if declared.name == "twilio-inbound":
        answers[200] = {"description": "Stored; an empty TwiML answer.", "content": {"text/xml": {}}}
    return answers


for _path, _declared in routes().items():
    router.add_api_route(
        _path.removeprefix(router.prefix),
        _endpoint(_declared, handler_for(_declared)),
        methods=["POST"],
        status_code=200 if _declared.name == "twilio-inbound" else 202,
        responses=_responses(_declared),
        openapi_extra={"requestBody": request_body(_declared)},
        summary=_declared.name,
    )
