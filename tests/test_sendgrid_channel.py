"""The SendGrid channel against a local fake of the v3 Mail Send API (pytest-httpserver): what reaches the wire,
and what each answer becomes under the send policy."""

import json
import socket
import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from channels.base import OutgoingMessage, PermanentFailure, RecipientOptedOut
from channels.sendgrid import OutcomeUnknown, ProviderUnavailable, SendGridChannel
from models.settings import Settings
from models.tables import Channel

API_KEY = "SG.test-key"
PATH = "/v3/mail/send"


def _channel(httpserver: HTTPServer, **kwargs: Any) -> SendGridChannel:
    options: dict[str, Any] = {
        "public_url": "https://shop.example/",
        "api_host": httpserver.url_for("/"),
        "timeout": 2.0,
    }
    options.update(kwargs)
    return SendGridChannel(API_KEY, "Northwind <hello@northwind.example>", **options)


MESSAGE = OutgoingMessage(
    message_id=42,
    channel=Channel.email,
    to="ada@example.com",
    subject="Your cart misses you",
    body="Hi Ada,\nyour boots are still waiting.",
    journey="abandoned_cart",
)


def _message(**changes: Any) -> OutgoingMessage:
    return replace(MESSAGE, **changes)


def _errors(message: str, field: str | None = None) -> dict:
    return {"errors": [{"message": message, "field": field, "help": None}]}


def _sent_json(httpserver: HTTPServer) -> dict:
    assert len(httpserver.log) == 1
    request, _ = httpserver.log[0]
    return json.loads(request.get_data())


def test_sends_the_exact_request_and_returns_the_message_id(httpserver: HTTPServer) -> None:
    httpserver.expect_request(PATH, method="POST").respond_with_data(
        "", status=202, headers={"X-Message-Id": "sg-abc123"}
    )

    unsubscribe = "https://comeback.example.com/u/tok"
    provider_id = _channel(httpserver, unsubscribe_group_id=7).send(_message(unsubscribe_url=unsubscribe))

    assert provider_id == "sg-abc123"
    request, _ = httpserver.log[0]
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert _sent_json(httpserver) == {
        "from": {"name": "Northwind", "email": "hello@northwind.example"},
        "subject": "Your cart misses you",
        "personalizations": [{"to": [{"email": "ada@example.com"}]}],
        "content": [{"type": "text/plain", "value": "Hi Ada,\nyour boots are still waiting."}],
        "categories": ["abandoned_cart"],
        "custom_args": {"comeback_message_id": "42"},
        "headers": {"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        "asm": {"group_id": 7},
    }


def test_leaves_out_the_group_and_category_when_there_are_none(httpserver: HTTPServer) -> None:
    httpserver.expect_request(PATH, method="POST").respond_with_data("", status=202, headers={"X-Message-Id": "m"})

    _channel(httpserver).send(_message(journey=None))

    sent = _sent_json(httpserver)
    assert "asm" not in sent
    assert "categories" not in sent
    assert sent["custom_args"] == {"comeback_message_id": "42"}


@pytest.mark.parametrize(
    ("status", "body", "code", "text"),
    [
        (
            400,
            _errors("Does not contain a valid address.", "personalizations.0.to.0.email"),
            "400",
            "personalizations.0.to.0.email: Does not contain a valid address.",
        ),
        (413, _errors("Payload too large"), "413", "Payload too large"),
        (415, _errors("Content-Type should be application/json."), "415", "Content-Type should be"),
    ],
)
def test_refusals_are_permanent_with_the_status_and_message(
    httpserver: HTTPServer, status: int, body: dict, code: str, text: str
) -> None:
    httpserver.expect_request(PATH, method="POST").respond_with_json(body, status=status)

    with pytest.raises(PermanentFailure) as raised:
        _channel(httpserver).send(_message())

    assert not isinstance(raised.value, RecipientOptedOut)
    assert raised.value.code == code
    assert text in str(raised.value)
    assert len(httpserver.log) == 1


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "The provided authorization grant is invalid, expired, or revoked"),
        (403, "The from address does not match a verified Sender Identity."),
    ],
)
def test_configuration_errors_are_retried_and_logged(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture, status: int, message: str
) -> None:
    httpserver.expect_request(PATH, method="POST").respond_with_json(_errors(message), status=status)

    with pytest.raises(ProviderUnavailable, match=f"HTTP {status}.*{message[:20]}") as raised:
        _channel(httpserver).send(_message())

    assert not isinstance(raised.value, PermanentFailure)
    assert "SENDGRID_API_KEY" in caplog.text
    assert len(httpserver.log) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_rate_limits_and_server_errors_are_retryable_after_exactly_one_request(
    httpserver: HTTPServer, status: int
) -> None:
    httpserver.expect_request(PATH, method="POST").respond_with_json(_errors("try later"), status=status)

    with pytest.raises(ProviderUnavailable, match=f"HTTP {status}: try later") as raised:
        _channel(httpserver).send(_message())

    assert not isinstance(raised.value, PermanentFailure)
    assert len(httpserver.log) == 1  # no retries inside the SDK: Temporal retries


def test_a_slow_answer_times_out_as_retryable(httpserver: HTTPServer) -> None:
    answered = threading.Event()

    def slow(request: Request) -> Response:
        time.sleep(0.8)
        answered.set()
        return Response("", status=202, headers={"X-Message-Id": "late"})

    httpserver.expect_request(PATH, method="POST").respond_with_handler(slow)

    started = time.monotonic()
    with pytest.raises(OutcomeUnknown) as raised:
        _channel(httpserver, timeout=0.5).send(_message())

    assert time.monotonic() - started < 0.75
    assert not isinstance(raised.value, PermanentFailure)
    answered.wait(5)  # the late answer lands in this test's log, not the next one's


def test_an_unreachable_host_is_retryable() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    channel = SendGridChannel(
        API_KEY,
        "hello@northwind.example",
        public_url="https://shop.example",
        api_host=f"http://127.0.0.1:{port}",
        timeout=0.5,
    )

    with pytest.raises(ProviderUnavailable, match="unreachable") as raised:
        channel.send(_message())

    assert not isinstance(raised.value, OutcomeUnknown)  # never connected: nothing was sent


def test_a_message_without_subject_is_refused_before_any_request(httpserver: HTTPServer) -> None:
    with pytest.raises(PermanentFailure, match="no subject"):
        _channel(httpserver).send(_message(subject=None))

    assert httpserver.log == []


def test_from_settings_reads_the_optional_unsubscribe_group(httpserver: HTTPServer) -> None:
    settings = Settings(
        _env_file=None,
        SENDGRID_API_KEY=API_KEY,
        SENDGRID_FROM_EMAIL="hello@northwind.example",
        SENDGRID_API_HOST=httpserver.url_for("/"),
        COMEBACK_PUBLIC_URL="https://shop.example",
        SENDGRID_UNSUBSCRIBE_GROUP_ID="12",
    )
    channel = SendGridChannel.from_settings(settings)
    assert channel.unsubscribe_group_id == 12
    assert channel.client.client.timeout == 10.0

    without_group = settings.model_copy(update={"sendgrid_unsubscribe_group_id": None})
    assert SendGridChannel.from_settings(without_group).unsubscribe_group_id is None

    with pytest.raises(ValueError, match="SENDGRID_API_KEY"):
        SendGridChannel.from_settings(settings.model_copy(update={"sendgrid_api_key": None}))


# --- after an unknown outcome: look in the Email Activity API before sending again ------------------------

ACTIVITY = "/v3/messages"
QUERY = "unique_args['comeback_message_id']=\"42\""


def _activity(msg_id: str | None) -> dict:
    messages = [{"msg_id": msg_id, "to_email": "ada@example.com", "status": "delivered"}] if msg_id else []
    return {"messages": messages}


def test_an_email_sendgrid_already_has_is_not_sent_again(httpserver: HTTPServer) -> None:
    httpserver.expect_request(ACTIVITY, method="GET", query_string={"query": QUERY, "limit": "1"}).respond_with_json(
        _activity("sg-first.filter0001p1-1")
    )

    assert _channel(httpserver).send(_message(), maybe_sent=True) == "sg-first"
    assert [request.method for request, _ in httpserver.log] == ["GET"]


def test_an_email_sendgrid_does_not_list_is_sent(httpserver: HTTPServer) -> None:
    httpserver.expect_request(ACTIVITY, method="GET").respond_with_json(_activity(None))
    httpserver.expect_request(PATH, method="POST").respond_with_data("", status=202, headers={"X-Message-Id": "m2"})

    assert _channel(httpserver).send(_message(), maybe_sent=True) == "m2"
    assert [request.method for request, _ in httpserver.log] == ["GET", "POST"]


def test_without_the_activity_add_on_the_email_is_sent(httpserver: HTTPServer) -> None:
    httpserver.expect_request(ACTIVITY, method="GET").respond_with_json(_errors("access forbidden"), status=403)
    httpserver.expect_request(PATH, method="POST").respond_with_data("", status=202, headers={"X-Message-Id": "m3"})

    assert _channel(httpserver).send(_message(), maybe_sent=True) == "m3"


def test_a_failed_lookup_sends_nothing_and_is_retried(httpserver: HTTPServer) -> None:
    httpserver.expect_request(ACTIVITY, method="GET").respond_with_json(_errors("oops"), status=503)

    with pytest.raises(ProviderUnavailable):
        _channel(httpserver).send(_message(), maybe_sent=True)
    assert [request.method for request, _ in httpserver.log] == ["GET"]
