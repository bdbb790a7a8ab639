"""A STOP that arrives while a send is in flight: no message is sent after the STOP is recorded.

The send holds the customer's lock from its last consent check to the commit that marks it sent; a STOP takes the
same lock before it records the revoked consent. Against SQLite and PostgreSQL.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.testing import ActivityEnvironment

from activities.messages import MessageActivities
from activities.rendering import TemplateRenderer
from api.intake import store_order
from api.schemas import OrderIn
from api.webhooks import handle_inbound
from channels.base import Channels, OutgoingMessage
from models.contracts import SendRequest
from models.journeys import JourneysConfig
from models.store import consent_status
from models.tables import Channel, Consent, ConsentStatus, Message, MessageStatus
from tests.conftest import RecordingChannel
from tests.factories import order_payload
from tests.test_send_message import FailingChannel

PHONE = "+14155550100"  # the factory customer's number
WAIT = 10.0


class BlockingChannel(RecordingChannel):
    """A provider that holds the send until the test lets it go."""

    def __init__(self) -> None:
        super().__init__(name="blocking")
        self.entered = threading.Event()
        self.release = threading.Event()

    def send(self, message: OutgoingMessage, *, maybe_sent: bool = False) -> str:
        self.entered.set()
        assert self.release.wait(WAIT), "the test never released the provider"
        return super().send(message, maybe_sent=maybe_sent)


@pytest.fixture(autouse=True)
def customer(engine: Engine, config: JourneysConfig) -> None:
    with Session(engine) as session:
        store_order(session, OrderIn.model_validate(order_payload()), config)


def request() -> SendRequest:
    return SendRequest(
        customer_id="c_42",
        journey="post_purchase",
        step="thank_you",
        template="post_purchase/thank_you",
        channels=["sms"],
        order_id="1001",
    )


def activities(engine: Engine, config: JourneysConfig, provider: object) -> MessageActivities:
    return MessageActivities(engine, Channels(provider, provider), config, TemplateRenderer())  # type: ignore[arg-type]


def stop(engine: Engine, config: JourneysConfig) -> None:
    handle_inbound(engine, config, PHONE, "STOP", "key1")


def messages(engine: Engine) -> list[Message]:
    with Session(engine) as session:
        return list(session.exec(select(Message)).all())


def test_a_stop_during_the_provider_call_waits_for_it(engine: Engine, config: JourneysConfig):
    provider = BlockingChannel()
    sender = activities(engine, config, provider)
    with ThreadPoolExecutor(max_workers=2) as pool:
        try:
            sending = pool.submit(ActivityEnvironment().run, sender.send_message, request())
            assert provider.entered.wait(WAIT), "the provider was never called"
            stopping = pool.submit(stop, engine, config)
            time.sleep(0.5)
            assert not stopping.done(), "the STOP was recorded while the send was in flight"
        finally:
            provider.release.set()
        result = sending.result(timeout=WAIT)
        stopping.result(timeout=40)

    assert result.status == "sent" and len(provider.sent) == 1
    [message] = messages(engine)
    with Session(engine) as session:
        assert consent_status(session, "c_42", Channel.sms) == ConsentStatus.revoked
        revoked = session.exec(
            select(Consent).where(Consent.customer_id == "c_42", Consent.status == ConsentStatus.revoked)
        ).one()
    assert message.status == MessageStatus.sent and message.sent_at is not None
    assert revoked.recorded_at >= message.sent_at  # the STOP is recorded after the send, never before it


def test_a_send_after_the_stop_calls_no_provider(engine: Engine, config: JourneysConfig):
    stop(engine, config)
    provider = RecordingChannel()
    result = ActivityEnvironment().run(activities(engine, config, provider).send_message, request())

    assert result.status == "skipped" and result.reason in ("opted_out", "no_consent")
    assert provider.sent == []
    [message] = messages(engine)
    assert message.status == MessageStatus.skipped


def test_a_pending_message_is_skipped_when_the_stop_lands_before_the_retry(engine: Engine, config: JourneysConfig):
    env = ActivityEnvironment()
    with pytest.raises(ConnectionError):
        env.run(activities(engine, config, FailingChannel()).send_message, request())
    [pending] = messages(engine)
    assert pending.status == MessageStatus.pending  # consent was granted when the row was written

    stop(engine, config)
    provider = RecordingChannel()
    result = env.run(activities(engine, config, provider).send_message, request())

    assert (result.status, result.reason, result.message_id) == ("skipped", "opted_out", pending.id)
    assert provider.sent == []
    [message] = messages(engine)
    assert (message.status, message.reason, message.sent_at) == (MessageStatus.skipped, "opted_out", None)
    again = env.run(activities(engine, config, provider).send_message, request())
    assert again == result and provider.sent == []


def test_a_start_during_the_provider_call_waits_too(engine: Engine, config: JourneysConfig):
    provider = BlockingChannel()
    sender = activities(engine, config, provider)
    with ThreadPoolExecutor(max_workers=2) as pool:
        try:
            sending = pool.submit(ActivityEnvironment().run, sender.send_message, request())
            assert provider.entered.wait(WAIT), "the provider was never called"
            starting = pool.submit(handle_inbound, engine, config, PHONE, "START", "key2")
            time.sleep(0.3)
            assert not starting.done()
        finally:
            provider.release.set()
        assert sending.result(timeout=WAIT).status == "sent"
        starting.result(timeout=40)
    with Session(engine) as session:
        latest = session.exec(
            select(Consent).where(Consent.customer_id == "c_42").order_by(col(Consent.id).desc())
        ).first()
    assert latest is not None and latest.source == "sms_keyword"
