"""The Twilio adapter against a local fake of Twilio's REST API, in its wire format (form posts, JSON answers)."""

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import parse_qs

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from channels.base import OutgoingMessage, PermanentFailure, RecipientOptedOut
from channels.twilio import OutcomeUnknown, ProviderUnavailable, TwilioChannel
from models.settings import Settings
from models.tables import Channel

SID = "AC" + "0" * 32
TOKEN = "secret-token"
FROM = "+15550001111"
SERVICE = "MG" + "1" * 32
TO = "+15557654321"
MESSAGES = f"/2010-04-01/Accounts/{SID}/Messages.json"
PUBLIC = "https://comeback.example.com"

MESSAGE = OutgoingMessage(message_id=7, channel=Channel.sms, to=TO, body="We miss you! 10% off: https://x.co/a")


def twilio_message(sid: str, body: str = MESSAGE.body, created: datetime | None = None, **extra: object) -> dict:
    when = format_datetime(created or datetime.now(UTC), usegmt=True)
    return {
        "sid": sid,
        "account_sid": SID,
        "to": TO,
        "from": FROM,
        "body": body,
        "status": "queued",
        "messaging_service_sid": None,
        "date_created": when,
        "date_updated": when,
        "date_sent": None,
        "direction": "outbound-api",
        "num_segments": "1",
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{SID}/Messages/{sid}.json",
        **extra,
    }


def message_page(*messages: dict) -> dict:
    return {
        "messages": list(messages),
        "first_page_uri": MESSAGES + "?PageSize=50&Page=0",
        "next_page_uri": None,
        "previous_page_uri": None,
        "page": 0,
        "page_size": 50,
        "start": 0,
        "end": max(len(messages) - 1, 0),
        "uri": MESSAGES + "?PageSize=50&Page=0",
    }


def twilio_error(code: int, status: int) -> Response:
    payload = {"code": code, "message": f"error {code}", "more_info": f"https://www.twilio.com/docs/errors/{code}"}
    return Response(json.dumps({**payload, "status": status}), status=status, content_type="application/json")


def channel(httpserver: HTTPServer, **overrides: object) -> TwilioChannel:
    options: dict = {"public_url": PUBLIC, "from_number": FROM, "api_base_url": httpserver.url_for("/"), "timeout": 2}
    options.update(overrides)
    return TwilioChannel(SID, TOKEN, **options)


def posts(httpserver: HTTPServer) -> list[dict[str, str]]:
    """The form fields of every POST that reached the fake, one value per field."""
    sent = []
    for request, _ in httpserver.log:
        if request.method == "POST":
            fields = parse_qs(request.get_data(as_text=True), strict_parsing=True)
            assert all(len(v) == 1 for v in fields.values()), fields
            sent.append({k: v[0] for k, v in fields.items()})
    return sent


def test_send_posts_twilios_form_fields_with_basic_auth(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(MESSAGES, method="POST").respond_with_json(twilio_message("SM1"), status=201)

    assert channel(httpserver).send(MESSAGE) == "SM1"

    assert posts(httpserver) == [
        {
            "To": TO,
            "From": FROM,
            "Body": MESSAGE.body,
            "StatusCallback": f"{PUBLIC}/webhooks/twilio/status",
            "ValidityPeriod": "3600",
        }
    ]
    request, _ = httpserver.log[0]
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()


def test_send_through_a_messaging_service(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(MESSAGES, method="POST").respond_with_json(twilio_message("SM2"), status=201)
    twilio = channel(
        httpserver, from_number=None, messaging_service_sid=SERVICE, validity_period=600, public_url=PUBLIC + "/"
    )

    assert twilio.send(MESSAGE) == "SM2"

    assert posts(httpserver) == [
        {
            "To": TO,
            "MessagingServiceSid": SERVICE,
            "Body": MESSAGE.body,
            "StatusCallback": f"{PUBLIC}/webhooks/twilio/status",
            "ValidityPeriod": "600",
        }
    ]


@pytest.mark.parametrize(
    ("from_number", "service"), [(None, None), ("", None), (FROM, SERVICE)], ids=["none", "blank", "both"]
)
def test_exactly_one_sender_is_required(from_number: str | None, service: str | None) -> None:
    with pytest.raises(ValueError, match="exactly one of TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"):
        TwilioChannel(SID, TOKEN, public_url=PUBLIC, from_number=from_number, messaging_service_sid=service)


def test_validity_period_within_twilios_range() -> None:
    with pytest.raises(ValueError, match="validity_period"):
        TwilioChannel(SID, TOKEN, public_url=PUBLIC, from_number=FROM, validity_period=36001)


def test_from_settings() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        public_url=PUBLIC,
        twilio_account_sid=SID,
        twilio_auth_token=TOKEN,
        twilio_from_number=None,
        twilio_messaging_service_sid=SERVICE,
        twilio_api_base_url="http://127.0.0.1:9/",
    )
    twilio = TwilioChannel.from_settings(settings)
    assert (twilio.from_number, twilio.messaging_service_sid) == (None, SERVICE)
    assert twilio.status_callback == f"{PUBLIC}/webhooks/twilio/status"
    assert twilio.client.api.base_url == "http://127.0.0.1:9"


def test_real_twilio_by_default_and_no_http_retries() -> None:
    twilio = TwilioChannel(SID, TOKEN, public_url=PUBLIC, from_number=FROM)
    assert twilio.client.api.base_url == "https://api.twilio.com"
    session = twilio.client.http_client.session  # type: ignore[attr-defined]
    for url in ("https://api.twilio.com/", "http://127.0.0.1/"):
        retries = session.get_adapter(url).max_retries
        assert (retries.total, retries.connect, retries.read) == (0, None, False)


@pytest.mark.parametrize(("code", "status"), [(21211, 400), (21614, 400), (30005, 400), (30006, 400), (21408, 400)])
def test_refusals_are_permanent_with_twilios_code(httpserver: HTTPServer, code: int, status: int) -> None:
    httpserver.expect_request(MESSAGES, method="POST").respond_with_response(twilio_error(code, status))

    with pytest.raises(PermanentFailure) as raised:
        channel(httpserver).send(MESSAGE)

    assert raised.type is PermanentFailure
    assert raised.value.code == str(code)
    assert len(httpserver.log) == 1


def test_opted_out_recipient(httpserver: HTTPServer) -> None:
    httpserver.expect_request(MESSAGES, method="POST").respond_with_response(twilio_error(21610, 400))

    with pytest.raises(RecipientOptedOut) as raised:
        channel(httpserver).send(MESSAGE)

    assert raised.value.code == "21610"
    assert len(httpserver.log) == 1


@pytest.mark.parametrize(("code", "status"), [(20429, 429), (20500, 500), (20503, 503), (20003, 401)])
def test_busy_or_broken_twilio_is_retryable_after_exactly_one_request(
    httpserver: HTTPServer, code: int, status: int
) -> None:
    httpserver.expect_request(MESSAGES, method="POST").respond_with_response(twilio_error(code, status))

    with pytest.raises(ProviderUnavailable) as raised:
        channel(httpserver).send(MESSAGE)

    assert not isinstance(raised.value, PermanentFailure)
    assert len(httpserver.log) == 1  # no SDK- or urllib3-level retry


def test_timeout_is_retryable_and_the_outcome_unknown(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(0.5)
        return Response(json.dumps(twilio_message("SM-late")), status=201, content_type="application/json")

    httpserver.expect_request(MESSAGES, method="POST").respond_with_handler(slow)

    started = time.monotonic()
    with pytest.raises(OutcomeUnknown):
        channel(httpserver, timeout=0.2).send(MESSAGE)

    assert time.monotonic() - started < 0.45
    deadline = time.monotonic() + 2
    while not httpserver.log and time.monotonic() < deadline:  # the fake logs once its handler returns
        time.sleep(0.02)
    time.sleep(0.1)
    assert len(httpserver.log) == 1


def test_find_sent_matches_the_body_among_recent_messages_to_the_number(httpserver: HTTPServer) -> None:
    old = datetime.now(UTC) - timedelta(days=2)
    httpserver.expect_request(
        MESSAGES, method="GET", query_string={"To": TO, "From": FROM, "PageSize": "50"}
    ).respond_with_json(
        message_page(
            twilio_message("SM-other", body="Another text"),
            twilio_message("SM-old", created=old),
            twilio_message("SM-found"),
        )
    )

    assert channel(httpserver).find_sent(MESSAGE) == "SM-found"


def test_find_sent_with_a_messaging_service_checks_the_service(httpserver: HTTPServer) -> None:
    httpserver.expect_request(MESSAGES, method="GET", query_string={"To": TO, "PageSize": "50"}).respond_with_json(
        message_page(
            twilio_message("SM-elsewhere", messaging_service_sid="MG" + "2" * 32),
            twilio_message("SM-ours", messaging_service_sid=SERVICE),
        )
    )
    twilio = channel(httpserver, from_number=None, messaging_service_sid=SERVICE)

    assert twilio.find_sent(MESSAGE) == "SM-ours"


def test_maybe_sent_returns_the_found_sid_without_posting(httpserver: HTTPServer) -> None:
    httpserver.expect_request(MESSAGES, method="GET").respond_with_json(message_page(twilio_message("SM-earlier")))
    httpserver.expect_request(MESSAGES, method="POST").respond_with_json(twilio_message("SM-twice"), status=201)

    assert channel(httpserver).send(MESSAGE, maybe_sent=True) == "SM-earlier"

    assert [request.method for request, _ in httpserver.log] == ["GET"]


def test_maybe_sent_posts_when_twilio_has_nothing(httpserver: HTTPServer) -> None:
    httpserver.expect_request(MESSAGES, method="GET").respond_with_json(
        message_page(twilio_message("SM-other", body="Another text"))
    )
    httpserver.expect_request(MESSAGES, method="POST").respond_with_json(twilio_message("SM-new"), status=201)

    assert channel(httpserver).send(MESSAGE, maybe_sent=True) == "SM-new"

    assert [request.method for request, _ in httpserver.log] == ["GET", "POST"]
    assert posts(httpserver)[0]["Body"] == MESSAGE.body


def test_maybe_sent_never_sends_blind_when_the_lookup_fails(httpserver: HTTPServer) -> None:
    httpserver.expect_request(MESSAGES, method="GET").respond_with_response(twilio_error(20500, 500))
    httpserver.expect_request(MESSAGES, method="POST").respond_with_json(twilio_message("SM-blind"), status=201)

    with pytest.raises(ProviderUnavailable):
        channel(httpserver).send(MESSAGE, maybe_sent=True)

    assert [request.method for request, _ in httpserver.log] == ["GET"]
