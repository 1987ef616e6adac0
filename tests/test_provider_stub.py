"""The provider stub, exercised through the official Twilio and SendGrid SDKs (no database, no Prefect)."""

from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Iterator

import httpx
import pytest
import requests
from python_http_client.exceptions import BadRequestsError, InternalServerError, UnauthorizedError
from requests.adapters import HTTPAdapter
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from stubs.provider_stub import ProviderStub

TO, FROM = "+15005550006", "+15005550001"
CALLBACK = "http://127.0.0.1:8000/webhooks/twilio/status"


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProviderStub]:
    """A started stub; Twilio edge/region variables would rewrite the SDK's host, so they are unset."""
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    monkeypatch.delenv("TWILIO_REGION", raising=False)
    with ProviderStub() as running:
        yield running


def twilio_client(stub: ProviderStub, token: str = "test-token", timeout: float = 5.0) -> Client:
    """The official Twilio client, pointed at the stub as the module docstring describes."""
    http_client = TwilioHttpClient(timeout=timeout)
    http_client.session.mount("http://", HTTPAdapter(pool_maxsize=32))
    client = Client("ACtest", token, http_client=http_client)
    client.api.base_url = stub.base_url
    return client


def send_sms(client: Client, body: str = "Your ticket T-1 is open."):
    """One Messages create, as Carepath's SMS channel makes it."""
    return client.messages.create(to=TO, from_=FROM, body=body, status_callback=CALLBACK)


def sendgrid_client(stub: ProviderStub, api_key: str = "SG.test-key") -> SendGridAPIClient:
    """The official SendGrid client, pointed at the stub."""
    return SendGridAPIClient(api_key=api_key, host=stub.base_url)


def mail() -> Mail:
    """A plain + HTML mail, as Carepath's email channel builds it."""
    return Mail(
        from_email="support@carepath.example",
        to_emails="ada@example.com",
        subject="Ticket T-1",
        plain_text_content="Your ticket is open.",
        html_content="<p>Your ticket is open.</p>",
    )


def test_twilio_send_is_recorded_with_form_and_basic_auth(stub: ProviderStub) -> None:
    client = twilio_client(stub)
    message = send_sms(client)

    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert (message.status, message.direction, message.to, message.from_) == (
        "queued",
        "outbound-api",
        TO,
        FROM,
    )
    assert message.date_created is not None and message.num_segments == "1"
    [record] = stub.twilio_messages()
    assert record.form == {
        "To": TO,
        "From": FROM,
        "Body": "Your ticket T-1 is open.",
        "StatusCallback": CALLBACK,
    }
    assert record.headers["authorization"] == "Basic " + base64.b64encode(b"ACtest:test-token").decode()
    assert record.path == "/2010-04-01/Accounts/ACtest/Messages.json"
    assert (record.status, record.response["sid"]) == (201, message.sid)
    assert client.messages(message.sid).fetch().body == "Your ticket T-1 is open."


def test_twilio_wrong_token_is_error_20003(stub: ProviderStub) -> None:
    with pytest.raises(TwilioRestException) as caught:
        send_sms(twilio_client(stub, token="wrong"))
    assert (caught.value.code, caught.value.status) == (20003, 401)
    assert stub.twilio_messages() == [] and stub.requests[0].status == 401


@pytest.mark.parametrize(
    ("status", "code", "expected_code"),
    [(400, 21211, 21211), (400, 21610, 21610), (500, None, 20500), (429, None, 20429)],
)
def test_twilio_programmed_failure_then_success(
    stub: ProviderStub, status: int, code: int | None, expected_code: int
) -> None:
    client = twilio_client(stub)
    stub.fail_next("twilio", status=status, code=code)
    with pytest.raises(TwilioRestException) as caught:
        send_sms(client)
    assert (caught.value.code, caught.value.status) == (expected_code, status)
    send_sms(client)
    assert [r.status for r in stub.requests] == [status, 201]
    assert len(stub.twilio_messages()) == 1


def test_twilio_error_body_has_twilio_shape(stub: ProviderStub) -> None:
    stub.fail_next("twilio", status=400, code=21211)
    with pytest.raises(TwilioRestException):
        send_sms(twilio_client(stub))
    assert stub.requests[0].response == {
        "code": 21211,
        "message": f"The 'To' number {TO} is not a valid phone number.",
        "more_info": "https://www.twilio.com/docs/errors/21211",
        "status": 400,
    }


def test_twilio_failures_are_fifo_and_counted(stub: ProviderStub) -> None:
    client = twilio_client(stub)
    stub.fail_next("twilio", 2, status=503)
    stub.fail_next("twilio", status=400, code=21610, message="Unsubscribed")
    for expected in (503, 503, 400):
        with pytest.raises(TwilioRestException) as caught:
            send_sms(client)
        assert caught.value.status == expected
    assert "Unsubscribed" in caught.value.msg
    send_sms(client)


def test_twilio_missing_body_is_21602(stub: ProviderStub) -> None:
    with pytest.raises(TwilioRestException) as caught:
        twilio_client(stub).messages.create(to=TO, from_=FROM)
    assert (caught.value.code, caught.value.status) == (21602, 400)


def test_twilio_unknown_message_fetch_is_20404(stub: ProviderStub) -> None:
    with pytest.raises(TwilioRestException) as caught:
        twilio_client(stub).messages("SM" + "0" * 32).fetch()
    assert (caught.value.code, caught.value.status) == (20404, 404)


def test_twilio_slow_success_times_out_the_client(stub: ProviderStub) -> None:
    stub.fail_next("twilio", status=201, delay=0.5)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        send_sms(twilio_client(stub, timeout=0.1))
    assert time.monotonic() - started < 0.45


def test_request_in_flight_during_reset_is_not_recorded_after_it(stub: ProviderStub) -> None:
    stub.fail_next("twilio", status=201, delay=0.3)
    with pytest.raises(requests.exceptions.Timeout):
        send_sms(twilio_client(stub, timeout=0.05))
    stub.reset()  # e.g. a session-wide stub reset between tests
    time.sleep(0.35)
    assert stub.requests == []


def test_twilio_slow_success_within_the_timeout(stub: ProviderStub) -> None:
    stub.fail_next("twilio", status=201, delay=0.15)
    started = time.monotonic()
    send_sms(twilio_client(stub))
    assert time.monotonic() - started >= 0.15 and len(stub.twilio_messages()) == 1


def test_sendgrid_send_is_recorded_and_message_id_returned(stub: ProviderStub) -> None:
    response = sendgrid_client(stub).send(mail())

    assert (response.status_code, response.body) == (202, b"")
    [record] = stub.sendgrid_mails()
    assert response.headers["X-Message-Id"] == record.response["x_message_id"]
    assert len(record.response["x_message_id"]) == 22
    assert record.headers["authorization"] == "Bearer SG.test-key"
    assert record.json["personalizations"][0]["to"] == [{"email": "ada@example.com"}]
    assert record.json["subject"] == "Ticket T-1"
    assert [c["type"] for c in record.json["content"]] == ["text/plain", "text/html"]


def test_sendgrid_wrong_key_is_401(stub: ProviderStub) -> None:
    with pytest.raises(UnauthorizedError) as caught:
        sendgrid_client(stub, api_key="SG.wrong").send(mail())
    assert caught.value.status_code == 401
    assert caught.value.to_dict == {
        "errors": [
            {
                "message": "The provided authorization grant is invalid, expired, or revoked",
                "field": None,
                "help": None,
            }
        ]
    }
    assert stub.sendgrid_mails() == []


def test_sendgrid_programmed_500_then_success(stub: ProviderStub) -> None:
    client = sendgrid_client(stub)
    stub.fail_next("sendgrid", status=500)
    with pytest.raises(InternalServerError) as caught:
        client.send(mail())
    assert caught.value.status_code == 500 and "errors" in caught.value.to_dict
    assert client.send(mail()).status_code == 202
    assert [r.status for r in stub.requests] == [500, 202]


def test_sendgrid_rejects_mail_without_content(stub: ProviderStub) -> None:
    body = mail().get()
    del body["content"]
    with pytest.raises(BadRequestsError) as caught:
        sendgrid_client(stub).send(body)
    assert [e["field"] for e in caught.value.to_dict["errors"]] == ["content"]


def test_unknown_path_bad_form_and_bad_json(stub: ProviderStub) -> None:
    auth = ("ACtest", "test-token")
    with httpx.Client(base_url=stub.base_url) as client:
        assert client.get("/nowhere").status_code == 404
        bad_form = client.post(
            "/2010-04-01/Accounts/ACtest/Messages.json",
            content=b"\xff\xfe",
            auth=auth,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert bad_form.status_code == 400 and bad_form.json()["status"] == 400
        bad_json = client.post(
            "/v3/mail/send", content=b"{nope", headers={"Authorization": "Bearer SG.test-key"}
        )
        assert bad_json.status_code == 400 and "errors" in bad_json.json()
    assert [r.provider for r in stub.requests] == ["unknown", "twilio", "sendgrid"]


def test_keep_alive_serves_several_requests_on_one_connection(stub: ProviderStub) -> None:
    connection = http.client.HTTPConnection(stub.host, stub.port, timeout=5)
    try:
        for _ in range(3):
            connection.request("GET", "/nowhere")
            response = connection.getresponse()
            assert response.status == 404 and json.loads(response.read())
            assert not response.will_close
    finally:
        connection.close()


def test_reset_and_fail_next_validation(stub: ProviderStub) -> None:
    stub.fail_next("twilio", status=500)
    with pytest.raises(TwilioRestException):
        send_sms(twilio_client(stub))
    stub.fail_next("twilio", status=500)
    stub.reset()
    assert stub.requests == []
    send_sms(twilio_client(stub))  # the programmed failure was forgotten
    with pytest.raises(ValueError):
        stub.fail_next("mailgun")
    with pytest.raises(ValueError):
        stub.fail_next("twilio", 0)
