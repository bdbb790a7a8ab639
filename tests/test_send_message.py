"""send_message on its own: the outbox row comes first, and a repeated step sends nothing more."""

import dataclasses

import pytest
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.messages import MessageActivities
from activities.rendering import TemplateRenderer
from api.intake import store_order
from api.schemas import OrderIn
from channels import channels_from_settings
from channels.base import Channels, OutgoingMessage
from channels.outbox import OutboxChannel
from channels.sendgrid import SendGridChannel
from channels.twilio import TwilioChannel
from models.contracts import SendRequest
from models.settings import Settings
from models.store import consent_status
from models.tables import Channel, ConsentStatus, Message, MessageStatus
from tests.factories import order_payload


@pytest.fixture
def activities(engine, config, channels) -> MessageActivities:
    with Session(engine) as session:
        store_order(session, OrderIn.model_validate(order_payload()), config)
    return MessageActivities(engine, channels, config, TemplateRenderer())


def request(step: str = "thank_you", template: str = "post_purchase/thank_you") -> SendRequest:
    return SendRequest(
        customer_id="c_42", journey="post_purchase", step=step, template=template, channels=["sms"], order_id="1001"
    )


def outbox(engine) -> list[Message]:
    with Session(engine) as session:
        return list(session.exec(select(Message)).all())


def test_the_same_step_twice_is_one_row_and_one_send(activities, engine, recorder):
    env = ActivityEnvironment()
    first = env.run(activities.send_message, request())
    again = env.run(activities.send_message, request())

    assert first.status == "sent" and again == first
    assert len(recorder.sent) == 1
    [row] = outbox(engine)
    assert row.idempotency_key == f"{env.info.workflow_id}/thank_you"
    assert row.status == MessageStatus.sent and row.provider_id == "rec-1" and row.sent_at is not None
    assert "John" in (row.body or "")


def test_other_steps_and_workflows_are_separate_messages(activities, engine, recorder):
    env = ActivityEnvironment()
    env.run(activities.send_message, request("thank_you"))
    env.run(activities.send_message, request("loyalty_review", "post_purchase/loyalty_first_time"))
    env.info = dataclasses.replace(env.info, workflow_id="post-purchase-other")
    env.run(activities.send_message, request("thank_you"))
    assert len(recorder.sent) == 3
    assert len({m.idempotency_key for m in outbox(engine)}) == 3


class FailingChannel:
    """A provider whose outcome is lost: the worker died, or the call timed out."""

    name = "failing"

    def send(self, message: OutgoingMessage, *, maybe_sent: bool = False) -> str:
        raise ConnectionError("provider unreachable")


def test_row_is_written_before_the_provider_and_a_retry_completes_it(engine, config, recorder):
    with Session(engine) as session:
        store_order(session, OrderIn.model_validate(order_payload()), config)
    broken = MessageActivities(engine, Channels(FailingChannel(), FailingChannel()), config, TemplateRenderer())
    env = ActivityEnvironment()
    with pytest.raises(ConnectionError):
        env.run(broken.send_message, request())
    [row] = outbox(engine)
    assert row.status == MessageStatus.pending and row.body  # decided and rendered before the call

    working = MessageActivities(engine, Channels(recorder, recorder), config, TemplateRenderer())
    result = env.run(working.send_message, request())
    assert result.status == "sent" and result.message_id == row.id
    assert [m.message_id for m in recorder.sent] == [row.id]
    assert recorder.maybe_sent == [True]  # the provider is told to look for the first attempt's message
    assert len(outbox(engine)) == 1


def test_a_broken_template_is_recorded_as_failed_not_retried(activities, engine, recorder):
    result = ActivityEnvironment().run(activities.send_message, request(template="post_purchase/no_such_template"))
    assert result.status == "skipped" and result.reason and result.reason.startswith("template_error")
    [row] = outbox(engine)
    assert row.status == MessageStatus.failed
    assert recorder.sent == []


def test_unknown_customer_is_a_permanent_error(activities):
    bad = request().model_copy(update={"customer_id": "nobody"})
    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(activities.send_message, bad)
    assert raised.value.non_retryable


# --- through the real Twilio adapter, against a fake Twilio ------------------------------------------------


def twilio_channels(httpserver, recorder) -> Channels:
    twilio = TwilioChannel(
        "AC123",
        "token",
        public_url="https://shop.example",
        from_number="+15005550006",
        api_base_url=httpserver.url_for(""),
    )
    return Channels(sms=twilio, email=recorder)


@pytest.mark.parametrize(
    ("code", "status", "reason"),
    [(21610, MessageStatus.skipped, "opted_out: 21610"), (30006, MessageStatus.failed, "provider: 30006: ")],
)
def test_a_permanent_twilio_refusal_is_recorded_and_not_retried(
    engine, config, recorder, httpserver, code, status, reason
):
    with Session(engine) as session:
        store_order(session, OrderIn.model_validate(order_payload()), config)
    httpserver.expect_request("/2010-04-01/Accounts/AC123/Messages.json", method="POST").respond_with_json(
        {"code": code, "message": "refused", "more_info": "", "status": 400}, status=400
    )
    activities = MessageActivities(engine, twilio_channels(httpserver, recorder), config, TemplateRenderer())

    result = ActivityEnvironment().run(activities.send_message, request())
    again = ActivityEnvironment().run(activities.send_message, request())

    assert result.status == "skipped" and result.reason and result.reason.startswith(reason) and again == result
    assert len(httpserver.log) == 1  # refused once, never asked again
    [row] = outbox(engine)
    assert (row.status, row.provider) == (status, "twilio") and row.reason == result.reason
    with Session(engine) as session:
        sms = consent_status(session, "c_42", Channel.sms)
    assert sms == (ConsentStatus.revoked if code == 21610 else ConsentStatus.granted)


def test_channels_follow_the_settings():
    assert isinstance(channels_from_settings(Settings(_env_file=None)).sms, OutboxChannel)
    real = Settings(
        _env_file=None, TWILIO_ACCOUNT_SID="AC123", TWILIO_AUTH_TOKEN="token", TWILIO_FROM_NUMBER="+15005550006"
    )
    assert isinstance(channels_from_settings(real).sms, TwilioChannel)
    assert isinstance(channels_from_settings(real).email, OutboxChannel)
    both = real.model_copy(update={"sendgrid_api_key": "SG.key", "sendgrid_from_email": "shop@example.com"})
    assert isinstance(channels_from_settings(both).email, SendGridChannel)
