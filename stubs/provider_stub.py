"""Local HTTP stand-in for Twilio's Messages API and SendGrid's v3 Mail Send API.

It speaks both wire formats, so the official SDKs can be pointed at it in tests and benchmarks;
it records every request and can be programmed to fail. Standard library only. The SDKs, given a
started ``stub``::

    from requests.adapters import HTTPAdapter
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    http = TwilioHttpClient(timeout=5)
    http.session.mount("http://", HTTPAdapter(pool_maxsize=32))  # the SDK only sizes the https:// pool
    twilio = Client("ACtest", "test-token", http_client=http)
    twilio.api.base_url = stub.base_url  # Domain.absolute_url joins base_url and the URI
    twilio.messages.create(to="+15005550006", from_="+15005550001", body="Hi", status_callback=url)
    # Errors raise twilio.base.exceptions.TwilioRestException (.code, .status); a time-out raises
    # requests.exceptions.Timeout. TWILIO_EDGE / TWILIO_REGION must be unset: they rewrite the host.

    from sendgrid import SendGridAPIClient
    from sendgrid.helpers.mail import Mail

    sendgrid = SendGridAPIClient(api_key="SG.test-key", host=stub.base_url)
    sendgrid.send(Mail(from_email="a@x.example", to_emails="b@y.example", subject="S", plain_text_content="T"))
    # Errors raise python_http_client.exceptions.HTTPError subclasses (.status_code, .body).

Faults over time: ``fault_window(provider, seconds, status=..., delay=..., drop=..., every=...)`` answers every
send (or every n-th) with that fault until the window closes, whatever else is programmed; windows queue one
after the other, so a schedule is a few calls. ``fail_next`` programs the next N answers instead.

Standalone: ``python -m stubs.provider_stub --host 127.0.0.1 --port 8025``; ``--fault twilio:30:500`` (provider,
seconds, status, optionally ``:delay`` in seconds) opens fault windows from the start, and a running stub takes
``POST /_stub/faults`` with the ``fault_window`` keywords as JSON, and answers ``GET /_stub/requests`` with its
counts, so a stub in another process can be driven and read.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import secrets
import socketserver
import threading
import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from email.utils import formatdate
from http.client import responses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Self
from urllib.parse import parse_qsl, urlsplit

# GET: every send received so far (ProviderStub.summary), for a benchmark running the stub as a process.
SUMMARY_PATH = "/_stub/sends"
_PROVIDER_PREFIXES = (("/2010-04-01/", "twilio"), ("/v3/", "sendgrid"), ("/_stub/", "control"))
_TWILIO_CREATE = re.compile(r"/2010-04-01/Accounts/([^/]+)/Messages\.json")
_TWILIO_FETCH = re.compile(r"/2010-04-01/Accounts/([^/]+)/Messages/([^/]+)\.json")
_TWILIO_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource {path} was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service is unavailable. Please try again",
    21211: "The 'To' number {to} is not a valid phone number.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
}
# The Twilio code a programmed failure carries when fail_next() names only a status.
_TWILIO_CODE_FOR_STATUS = {400: 21211, 401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}
_SENDGRID_AUTH_ERROR = "The provided authorization grant is invalid, expired, or revoked"
_SENDGRID_RULES = {  # field -> SendGrid's complaint when it is missing
    "personalizations": "The personalizations field is required and must have at least one personalization.",
    "personalizations.to": "The to array is required for all personalization objects.",
    "from.email": "The from object must be provided for every email send.",
    "subject": "The subject is required, unless a template or every personalization has one.",
    "content": "Unless a valid template_id is provided, the content parameter is required.",
}


@dataclass
class RecordedRequest:
    """One request the stub received, with the answer it gave."""

    provider: str  # "twilio" | "sendgrid" | "unknown"
    method: str
    path: str
    headers: dict[str, str]  # lower-case keys
    form: dict[str, str]  # parsed form body (Twilio), else {}
    json: Any  # parsed JSON body (SendGrid), else None
    status: int  # the status the stub answered with
    response: dict | None  # the JSON it answered with; SendGrid's 202: {"x_message_id": ...}
    received_at: float
    accepted: bool = False  # the message was created (Twilio) or the mail taken (SendGrid), answered or not
    delayed: float = 0.0  # seconds the stub waited before answering (a programmed slow answer)


class _Programmed(NamedTuple):
    status: int
    code: int | None
    message: str | None
    delay: float
    body: bytes | None = None  # answer these raw bytes instead (e.g. malformed JSON)
    drop: bool = False  # close the connection without answering
    create: bool = True  # for a 2xx twilio answer: whether the message is created
    headers: dict[str, str] | None = None  # extra answer headers (e.g. Retry-After)


@dataclass(frozen=True)
class FaultWindow:
    """A fault answered to every `every`-th send of `provider` between `starts` and `ends` (monotonic time)."""

    provider: str
    starts: float
    ends: float
    answer: _Programmed
    every: int = 1


def _instant(value: str, *, end: bool = False) -> float:
    """A DateSent filter's Unix time: an ISO 8601 time, or a date (its start, or with `end` its last second)."""
    from datetime import UTC, datetime, timedelta

    text = value.strip().lstrip("<>=")
    if len(text) == 10:  # YYYY-MM-DD
        day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return (day + timedelta(days=1)).timestamp() - 1e-6 if end else day.timestamp()
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _twilio_error(status: int, code: int, message: str) -> dict:
    """Twilio's (pre-RFC 9457) error body, which the SDK turns into TwilioRestException."""
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    return {"code": code, "message": message, "more_info": more_info, "status": status}


def _sendgrid_error(message: str, field: str | None = None) -> dict:
    """SendGrid's error body."""
    return {"errors": [{"message": message, "field": field, "help": None}]}


def _sendgrid_problems(mail: Any) -> list[str]:
    """Fields of a v3 mail/send body that SendGrid would reject, as keys of _SENDGRID_RULES."""
    mail = mail if isinstance(mail, dict) else {}
    people = mail.get("personalizations")
    problems = []
    if not (isinstance(people, list) and people and all(isinstance(p, dict) for p in people)):
        problems, people = ["personalizations"], []
    elif not all(isinstance(to, dict) and to.get("email") for p in people for to in p.get("to") or [None]):
        problems.append("personalizations.to")
    if not (isinstance(mail.get("from"), dict) and mail["from"].get("email")):
        problems.append("from.email")
    templated = bool(mail.get("template_id"))  # a dynamic template may supply subject and content
    if not (mail.get("subject") or templated or (people and all(p.get("subject") for p in people))):
        problems.append("subject")
    if not (mail.get("content") or templated):
        problems.append("content")
    return problems


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # pooled keep-alive connections would otherwise hold up stop()
    request_queue_size = 256  # the SendGrid SDK (urllib) opens a connection per request
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], stub: ProviderStub) -> None:
        self.stub = stub
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS getfqdn(), which can stall for seconds."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that hung up (time-out tests do so on purpose)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
    disable_nagle_algorithm = True  # headers and body are two writes; avoid the delayed-ACK stall
    server_version = "ProviderStub/1.0"
    sys_version = ""
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: a line per request would cost more than the request."""

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, data, extra = self.server.stub._answer(self.command, self.path, headers, body)
        if status == 0:  # programmed to hang up after reading the request
            self.close_connection = True
            with suppress(OSError):
                self.connection.shutdown(2)
            return
        try:
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up, e.g. its time-out fired during a programmed delay
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class ProviderStub:
    """A Twilio + SendGrid look-alike on a local port that records every request."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        twilio_account_sid: str = "ACtest",
        twilio_auth_token: str = "test-token",
        sendgrid_api_key: str = "SG.test-key",
    ) -> None:
        self.host, self.port = host, port
        self.twilio_account_sid, self.twilio_auth_token = twilio_account_sid, twilio_auth_token
        self.sendgrid_api_key = sendgrid_api_key
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._messages: dict[str, dict] = {}  # sid -> resource, for GET .../Messages/{sid}.json and lists
        self._sent_at: dict[str, float] = {}  # sid -> Unix time, for the list's DateSent filters
        self._programmed: dict[str, deque[_Programmed]] = {"twilio": deque(), "sendgrid": deque()}
        self._windows: list[FaultWindow] = []
        self._window_hits: dict[int, int] = {}  # id(window) -> sends seen inside it
        self._server: _Server | None = None
        self._generation = 0  # bumped by reset(), so requests still in flight then are not recorded after it

    def start(self) -> Self:
        """Bind, serve in a background daemon thread, and return self."""
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        # A short poll interval keeps stop() quick; serve_forever only notices shutdown() between polls.
        serve = self._server.serve_forever
        threading.Thread(target=serve, args=(0.05,), name="provider-stub", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (idle keep-alive threads are daemons)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The URL to give the SDKs, e.g. http://127.0.0.1:54321."""
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def twilio_messages(self) -> list[RecordedRequest]:
        """Accepted (2xx) Twilio message creates."""
        return [
            r for r in self.requests if r.provider == "twilio" and r.method == "POST" and 0 < r.status < 300
        ]

    def twilio_creates(self) -> list[RecordedRequest]:
        """Every Twilio message create received, whatever was answered (or not): what exactly-once counts."""
        return [r for r in self.requests if r.provider == "twilio" and r.method == "POST"]

    def twilio_created(self) -> list[dict]:
        """The message resources the stub holds (created, whether or not the answer reached the client)."""
        with self._lock:
            return list(self._messages.values())

    def sendgrid_accepted(self) -> list[RecordedRequest]:
        """Every mail SendGrid took, including those whose answer was dropped: what exactly-once counts."""
        return [r for r in self.requests if r.provider == "sendgrid" and r.accepted]

    def sendgrid_mails(self) -> list[RecordedRequest]:
        """Accepted (2xx) SendGrid sends."""
        return [r for r in self.requests if r.provider == "sendgrid" and 0 < r.status < 300]

    def summary(self) -> list[dict]:
        """Every message send received (Twilio creates, SendGrid mails), as plain JSON: what a benchmark in
        another process counts exactly-once by (the recipient and body for SMS, our key for email)."""
        rows = []
        for r in self.requests:
            if r.method != "POST" or r.provider not in ("twilio", "sendgrid"):
                continue
            mail = r.json if isinstance(r.json, dict) else {}
            people = mail.get("personalizations") or [{}]
            key = (people[0].get("custom_args") or mail.get("custom_args") or {}).get("carepath_key")
            rows.append(
                {
                    "provider": r.provider,
                    "status": r.status,
                    "to": r.form.get("To")
                    if r.provider == "twilio"
                    else (people[0].get("to") or [{}])[0].get("email"),
                    "key": key,
                    "body": r.form.get("Body"),
                    "received_at": r.received_at,
                }
            )
        return rows

    def fail_next(
        self,
        provider: str,
        count: int = 1,
        *,
        status: int = 500,
        code: int | None = None,
        message: str | None = None,
        delay: float = 0.0,
        body: bytes | None = None,
        drop: bool = False,
        create: bool = True,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Program the provider's next `count` answers (FIFO); a 2xx status with a delay succeeds slowly.

        `body`: answer these raw bytes; `drop`: read the request, then close the connection unanswered (for
        Twilio, `create` says whether the message was created first); `headers`: extra answer headers."""
        if provider not in self._programmed or count < 1:
            raise ValueError(f"unknown provider {provider!r} or count {count} < 1")
        answer = _Programmed(status, code, message, delay, body, drop, create, headers)
        with self._lock:
            self._programmed[provider].extend([answer] * count)

    def fault_window(
        self,
        provider: str,
        seconds: float,
        *,
        status: int = 500,
        delay: float = 0.0,
        drop: bool = False,
        create: bool = True,
        headers: dict[str, str] | None = None,
        every: int = 1,
    ) -> FaultWindow:
        """For `seconds`, starting when the windows already queued for `provider` close, answer every
        `every`-th send with this fault (the others as usual). A 2xx status with a delay is a slow provider;
        `drop=True, create=True` a time-out after accepting; 429 with ``headers={"Retry-After": "1"}``."""
        if provider not in self._programmed or seconds <= 0 or every < 1:
            raise ValueError(f"unknown provider {provider!r}, seconds {seconds} <= 0 or every {every} < 1")
        answer = _Programmed(status, None, None, delay, None, drop, create, headers)
        with self._lock:
            now = time.monotonic()
            starts = max([now, *(w.ends for w in self._windows if w.provider == provider)])
            window = FaultWindow(provider, starts, starts + seconds, answer, every)
            self._windows.append(window)
        return window

    def faults_over(self) -> float:
        """Seconds until every fault window has closed (0 when none is open or queued)."""
        with self._lock:
            return max([0.0, *(w.ends - time.monotonic() for w in self._windows)])

    def _window_answer(self, provider: str) -> _Programmed | None:
        """The answer of the fault window open now for `provider`, if this send is one it hits (under the lock)."""
        now = time.monotonic()
        self._windows = [w for w in self._windows if w.ends > now]
        for window in self._windows:
            if window.provider == provider and window.starts <= now:
                hits = self._window_hits[id(window)] = self._window_hits.get(id(window), 0) + 1
                return window.answer if hits % window.every == 0 else None
        return None

    def reset(self) -> None:
        """Forget recorded requests, created messages, programmed answers and fault windows."""
        with self._lock:
            self._requests.clear()
            self._messages.clear()
            self._sent_at.clear()
            for queue in self._programmed.values():
                queue.clear()
            self._windows.clear()
            self._window_hits.clear()
            self._generation += 1

    # Request handling, on the server's threads. Each answer sets rec.status and rec.response.

    def _answer(self, method: str, target: str, headers: dict, body: bytes) -> tuple[int, bytes, dict]:
        """Handle one request: returns status, body bytes and extra headers."""
        path = urlsplit(target).path
        if method == "GET" and path == SUMMARY_PATH:  # the stub's own read-out, never recorded
            return 200, json.dumps(self.summary()).encode(), {}
        provider = next((name for prefix, name in _PROVIDER_PREFIXES if path.startswith(prefix)), "unknown")
        rec = RecordedRequest(provider, method, path, headers, {}, None, 404, None, time.time())
        query = dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
        if provider == "control":
            return self._control(method, path, body)
        with self._lock:  # programmed answers are for sends (POST), never for look-ups
            generation, queue = self._generation, self._programmed.get(provider)
            programmed = self._window_answer(provider) if queue is not None and method == "POST" else None
            if programmed is None:  # an open fault window comes first; the programmed answer waits
                programmed = queue.popleft() if queue and method == "POST" else None
        if programmed and programmed.delay > 0:
            rec.delayed = programmed.delay
            time.sleep(programmed.delay)
        failure = programmed if programmed and not 200 <= programmed.status < 300 else None
        if programmed and 200 <= programmed.status < 300 and not programmed.create:
            failure = programmed  # answered (or dropped) without creating anything
        extra = dict(programmed.headers or {}) if programmed else {}
        if provider == "twilio":
            self._twilio(rec, body, failure, query)
        elif provider == "sendgrid" and self._sendgrid(rec, body, failure):
            extra["X-Message-Id"] = rec.response["x_message_id"]  # SendGrid's 202 has an empty body
        elif provider == "unknown":
            rec.response = {"error": "not found", "path": path}
        if programmed and programmed.drop:
            rec.status, rec.response = 0, None  # 0: no answer was given
        with self._lock:  # record before answering: a client holding its response must find the record
            if generation == self._generation:
                self._requests.append(rec)
        if programmed and programmed.body is not None:
            return rec.status, programmed.body, extra
        if "X-Message-Id" in extra:
            return rec.status, b"", extra
        data = b"" if rec.response is None else json.dumps(rec.response).encode()
        return rec.status, data, extra

    def _control(self, method: str, path: str, body: bytes) -> tuple[int, bytes, dict]:
        """The control routes of a stub in another process: open a fault window; read the counts."""
        if method == "POST" and path == "/_stub/faults":
            try:
                options = json.loads(body)
                window = self.fault_window(options.pop("provider"), options.pop("seconds"), **options)
            except (ValueError, KeyError, TypeError) as exc:
                return 400, json.dumps({"error": str(exc)}).encode(), {}
            return 201, json.dumps({"ends_in": window.ends - time.monotonic()}).encode(), {}
        if method == "GET" and path == "/_stub/requests":
            counts = {
                "twilio_creates": len(self.twilio_creates()),
                "twilio_created": len(self.twilio_created()),
                "sendgrid_mails": len(self.sendgrid_mails()),
                "faults_over_in": self.faults_over(),
            }
            return 200, json.dumps(counts).encode(), {}
        return 404, json.dumps({"error": "not found", "path": path}).encode(), {}

    def _twilio(
        self, rec: RecordedRequest, body: bytes, failure: _Programmed | None, query: dict[str, str]
    ) -> None:
        try:
            rec.form = dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body)))
        except ValueError:  # UnicodeDecodeError is a ValueError too
            rec.status, rec.response = 400, _twilio_error(400, 400, "Unable to parse the form-encoded body")
            return
        if failure:
            code = failure.code or _TWILIO_CODE_FOR_STATUS.get(failure.status, failure.status)
            text = failure.message or _TWILIO_MESSAGES.get(code, responses.get(failure.status, "Error"))
            text = text if failure.message else text.format(to=rec.form.get("To", ""), path=rec.path)
            rec.status, rec.response = failure.status, _twilio_error(failure.status, code, text)
            return
        create, fetch = _TWILIO_CREATE.fullmatch(rec.path), _TWILIO_FETCH.fullmatch(rec.path)
        if not self._twilio_authorized(rec.headers.get("authorization", ""), create or fetch):
            rec.status, rec.response = 401, _twilio_error(401, 20003, _TWILIO_MESSAGES[20003])
        elif create and rec.method == "POST":
            rec.status, rec.response = self._twilio_create(rec.form, rec.path)
            rec.accepted = rec.status == 201
        elif create and rec.method == "GET":
            rec.status, rec.response = 200, self._twilio_list(query, rec.path)
        elif fetch and rec.method == "GET" and fetch.group(2) in self._messages:
            rec.status, rec.response = 200, self._messages[fetch.group(2)]
        else:
            text = _TWILIO_MESSAGES[20404].format(path=rec.path)
            rec.status, rec.response = 404, _twilio_error(404, 20404, text)

    def _twilio_authorized(self, authorization: str, route: re.Match[str] | None) -> bool:
        """Basic auth whose user is the configured AccountSid (also the one in the path) and the token."""
        scheme, _, encoded = authorization.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:  # binascii.Error and UnicodeDecodeError
            return False
        sid_in_path = route.group(1) if route else user
        sid_ok = user == sid_in_path == self.twilio_account_sid
        return scheme.lower() == "basic" and sid_ok and password == self.twilio_auth_token

    def _twilio_list(self, query: dict[str, str], path: str) -> dict:
        """Messages filtered by To, From and DateSent (=, <, > as the SDK sends them; a date or a time),
        newest first, in one page."""
        after, before, on = query.get("DateSent>"), query.get("DateSent<"), query.get("DateSent")
        with self._lock:
            messages = list(self._messages.values())
        found = []
        for m in reversed(messages):
            sent = self._sent_at[m["sid"]]
            if query.get("To") and m["to"] != query["To"]:
                continue
            if query.get("From") and m["from"] != query["From"]:
                continue
            if (after and sent < _instant(after)) or (before and sent > _instant(before, end=True)):
                continue
            if on and not _instant(on) <= sent <= _instant(on, end=True):
                continue
            found.append(m)
        uri = f"{path}?{'&'.join(f'{k}={v}' for k, v in query.items())}"
        return {
            "messages": found, "end": max(len(found) - 1, 0), "first_page_uri": uri, "next_page_uri": None,
            "page": 0, "page_size": max(len(found), 50), "previous_page_uri": None, "start": 0, "uri": uri,
        }  # fmt: skip

    def _twilio_create(self, form: dict[str, str], path: str) -> tuple[int, dict]:
        """Validate like Twilio and create the message resource."""
        to, sender, body = form.get("To"), form.get("From"), form.get("Body", "")
        service = form.get("MessagingServiceSid")
        has_content = body or "MediaUrl" in form or "ContentSid" in form
        missing = 21604 if not to else 21602 if not has_content else 21603 if not (sender or service) else 0
        if missing:
            return 400, _twilio_error(400, missing, _TWILIO_MESSAGES[missing])
        sid, created = "SM" + secrets.token_hex(16), time.time()
        now = formatdate(created, usegmt=True).replace("GMT", "+0000")
        uri = f"{path.removesuffix('.json')}/{sid}"
        message = {
            "account_sid": self.twilio_account_sid, "api_version": "2010-04-01", "body": body,
            "date_created": now, "date_sent": now, "date_updated": now, "direction": "outbound-api",
            "error_code": None, "error_message": None, "from": sender, "messaging_service_sid": service,
            "num_media": "1" if "MediaUrl" in form else "0", "num_segments": "1",
            "price": None, "price_unit": "USD", "sid": sid,
            # Twilio says "accepted" while a Messaging Service has yet to pick the sender.
            "status": "queued" if sender else "accepted", "to": to, "uri": f"{uri}.json",
            "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
        }  # fmt: skip
        with self._lock:
            self._messages[sid] = message
            self._sent_at[sid] = created
        return 201, message

    def _sendgrid(self, rec: RecordedRequest, body: bytes, failure: _Programmed | None) -> bool:
        """Answer a SendGrid request; True when the mail was accepted."""
        try:
            rec.json = json.loads(body) if body else None
        except ValueError:
            rec.status, rec.response = 400, _sendgrid_error("Bad Request: the body is not valid JSON")
            return False
        if failure:  # SendGrid has no error codes, so failure.code is not used
            text = failure.message or (_SENDGRID_AUTH_ERROR if failure.status == 401 else None)
            text = text or responses.get(failure.status, "error").lower()
            rec.status, rec.response = failure.status, _sendgrid_error(text)
        elif rec.headers.get("authorization") != f"Bearer {self.sendgrid_api_key}":
            rec.status, rec.response = 401, _sendgrid_error(_SENDGRID_AUTH_ERROR)
        elif rec.path != "/v3/mail/send" or rec.method != "POST":
            rec.status, rec.response = 404, _sendgrid_error("resource not found")
        elif problems := _sendgrid_problems(rec.json):
            errors = [_sendgrid_error(_SENDGRID_RULES[field], field)["errors"][0] for field in problems]
            rec.status, rec.response = 400, {"errors": errors}
        else:
            # 22 url-safe characters, the shape of SendGrid's X-Message-Id.
            rec.status, rec.response = 202, {"x_message_id": secrets.token_urlsafe(16)}
            rec.accepted = True
            return True
        return False


def main(argv: list[str] | None = None) -> None:
    """Serve the stub until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Local Twilio + SendGrid API stub.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--twilio-account-sid", default="ACtest")
    parser.add_argument("--twilio-auth-token", default="test-token")
    parser.add_argument("--sendgrid-api-key", default="SG.test-key")
    parser.add_argument(
        "--fault", action="append", default=[], metavar="PROVIDER:SECONDS:STATUS[:DELAY]",
        help="open a fault window at start (repeatable; windows of a provider follow one another)",
    )  # fmt: skip
    options = vars(parser.parse_args(argv))
    faults = options.pop("fault")
    with ProviderStub(**options) as stub:  # option names match the keywords
        for fault in faults:
            provider, seconds, status, *delay = fault.split(":")
            stub.fault_window(
                provider, float(seconds), status=int(status), delay=float(delay[0]) if delay else 0
            )
        print(stub.base_url, flush=True)
        with suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
