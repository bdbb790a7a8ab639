"""Twilio's webhooks, signed with Twilio's own algorithm, against SQLite and PostgreSQL."""

import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from twilio.request_validator import RequestValidator

from activities import build_activities
from api.app import create_app
from channels.base import Channels
from models.contracts import RepliedSignal
from models.journeys import JourneysConfig
from models.settings import Settings
from models.store import consent_status
from models.tables import Channel, Consent, ConsentStatus, Customer, Message, MessageStatus, Reply
from starter.journeys import conversation_id, post_purchase_id
from tests.conftest import NoJourneys, RecordingChannel
from tests.factories import order_payload
from tests.test_api import snapshot
from tests.test_links import running_journeys
from tests.test_sendgrid_events import signals
from worker import ACTIVITY_THREADS, create_worker
from workflows.post_purchase import PostPurchaseJourney

AUTH_TOKEN = "twilio-auth-token"
PUBLIC = "https://comeback.example.com"
INTERNAL = "http://testserver"
PHONE = "+14155550100"


@pytest.fixture
async def http(engine: Engine, config: JourneysConfig) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(COMEBACK_API_TOKEN="t0ken", TWILIO_AUTH_TOKEN=AUTH_TOKEN, COMEBACK_PUBLIC_URL=PUBLIC)
    app = create_app(settings, engine=engine, client=cast(Client, NoJourneys()), config=config)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=INTERNAL) as http:
        yield http


def sign(path: str, params: dict[str, str], base: str = PUBLIC, token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(base + path, params)


async def post(
    http: httpx.AsyncClient, path: str, params: dict[str, str], signature: str | None = "sign", **headers: str
) -> httpx.Response:
    if signature == "sign":
        signature = sign(path, params)
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return await http.post(path, data=params, headers=headers)


@pytest.fixture
def sent(engine: Engine) -> Message:
    """A customer with SMS consent and one text Twilio accepted."""
    with Session(engine) as session:
        session.add(Customer(id="c1", phone=PHONE))
        session.commit()
        session.add(Consent(customer_id="c1", channel=Channel.sms, status=ConsentStatus.granted, source="checkout"))
        session.commit()
        message = Message(
            idempotency_key="post-purchase-1/thanks",
            customer_id="c1",
            channel=Channel.sms,
            journey="post_purchase",
            step="thanks",
            body="Thanks!",
            status=MessageStatus.sent,
            provider="twilio",
            provider_id="SM123",
        )
        session.add(message)
        session.commit()
        session.refresh(message)
        return message


def delivery(engine: Engine) -> str | None:
    with Session(engine) as session:
        return session.exec(select(Message.delivery_status).where(Message.provider_id == "SM123")).one()


def consents(engine: Engine, customer_id: str = "c1") -> list[Consent]:
    with Session(engine) as session:
        return list(
            session.exec(select(Consent).where(Consent.customer_id == customer_id).order_by(col(Consent.id))).all()
        )


def sms_consent(engine: Engine, customer_id: str = "c1") -> ConsentStatus | None:
    with Session(engine) as session:
        return consent_status(session, customer_id, Channel.sms)


# --- status callbacks ------------------------------------------------------------------------------------


async def test_status_moves_forward_only(http: httpx.AsyncClient, engine: Engine, sent: Message):
    for reported, expected in [
        ("queued", "queued"),
        ("delivered", "delivered"),
        ("sent", "delivered"),  # late: changes nothing
        ("queued", "delivered"),
        ("undelivered", "delivered"),  # an outcome already stands
        ("read", "read"),
        ("delivered", "read"),
        ("sending", "read"),  # not one we track
    ]:
        response = await post(http, "/webhooks/twilio/status", {"MessageSid": "SM123", "MessageStatus": reported})
        assert response.status_code == 204, response.text
        assert response.content == b""
        assert delivery(engine) == expected, reported
    with Session(engine) as session:
        message = session.exec(select(Message).where(Message.provider_id == "SM123")).one()
        assert message.status == MessageStatus.sent
        assert message.delivery_updated_at is not None and message.delivery_updated_at.utcoffset() is not None


async def test_error_21610_revokes_sms_consent(http: httpx.AsyncClient, engine: Engine, sent: Message):
    assert sms_consent(engine) == ConsentStatus.granted
    params = {"MessageSid": "SM123", "MessageStatus": "failed", "ErrorCode": "21610"}
    assert (await post(http, "/webhooks/twilio/status", params)).status_code == 204
    assert delivery(engine) == "failed"
    assert sms_consent(engine) == ConsentStatus.revoked
    [_, revoked] = consents(engine)
    assert revoked.source == "provider:twilio"
    # Twilio retries a callback: the consent log is not padded with the same revocation.
    assert (await post(http, "/webhooks/twilio/status", params)).status_code == 204
    assert len(consents(engine)) == 2


async def test_other_error_codes_leave_consent_alone(http: httpx.AsyncClient, engine: Engine, sent: Message):
    params = {"MessageSid": "SM123", "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert (await post(http, "/webhooks/twilio/status", params)).status_code == 204
    assert delivery(engine) == "undelivered"
    assert sms_consent(engine) == ConsentStatus.granted


async def test_unknown_sid_is_answered_and_changes_nothing(http: httpx.AsyncClient, engine: Engine, sent: Message):
    before = snapshot(engine)
    params = {"MessageSid": "SMunknown", "MessageStatus": "failed", "ErrorCode": "21610"}
    response = await post(http, "/webhooks/twilio/status", params)
    assert response.status_code in (200, 204)
    assert snapshot(engine) == before


# --- signatures --------------------------------------------------------------------------------------------

STATUS = {"MessageSid": "SM123", "MessageStatus": "delivered", "ErrorCode": "21610"}
STOP = {"From": PHONE, "Body": "STOP", "MessageSid": "SMin1"}

FORGED: list[tuple[str, dict[str, str], Any]] = [
    ("/webhooks/twilio/status", STATUS, None),  # missing
    ("/webhooks/twilio/status", STATUS, ""),
    ("/webhooks/twilio/status", STATUS, "bm90IGEgc2lnbmF0dXJl"),  # forged
    ("/webhooks/twilio/status", STATUS, sign("/webhooks/twilio/status", STATUS, base=INTERNAL)),  # internal URL
    ("/webhooks/twilio/status", STATUS, sign("/webhooks/twilio/status", STATUS, token="another-account")),
    ("/webhooks/twilio/status", STATUS, sign("/webhooks/twilio/status", STATUS | {"ErrorCode": "30003"})),
    ("/webhooks/twilio/status", STATUS, sign("/webhooks/twilio/sms", STATUS)),  # signed for another endpoint
    ("/webhooks/twilio/sms", STOP, None),
    ("/webhooks/twilio/sms", STOP, "bm90IGEgc2lnbmF0dXJl"),
    ("/webhooks/twilio/sms", STOP, sign("/webhooks/twilio/sms", STOP, base=INTERNAL)),
    ("/webhooks/twilio/sms", STOP, sign("/webhooks/twilio/sms", STOP | {"Body": "hello"})),  # body tampered
]


@pytest.mark.parametrize(("path", "params", "signature"), FORGED)
async def test_a_bad_signature_is_refused_and_changes_nothing(
    http: httpx.AsyncClient, engine: Engine, sent: Message, path: str, params: dict[str, str], signature: str | None
):
    before = snapshot(engine)
    response = await post(http, path, params, signature)
    assert response.status_code == 403
    assert response.json() == {"detail": "invalid signature"}
    assert snapshot(engine) == before


async def test_signature_covers_the_query_string(http: httpx.AsyncClient, engine: Engine, sent: Message):
    path = "/webhooks/twilio/status?account=main"
    assert (await post(http, path, STATUS, sign("/webhooks/twilio/status", STATUS))).status_code == 403
    assert (await post(http, path, {"MessageSid": "SM123", "MessageStatus": "sent"})).status_code == 204
    assert delivery(engine) == "sent"


async def test_without_an_auth_token_every_webhook_is_refused(engine: Engine, config: JourneysConfig, sent: Message):
    settings = Settings(COMEBACK_API_TOKEN="t0ken", COMEBACK_PUBLIC_URL=PUBLIC)
    app = create_app(settings, engine=engine, client=cast(Client, NoJourneys()), config=config)
    before = snapshot(engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=INTERNAL) as http:
        for path, params in [("/webhooks/twilio/status", STATUS), ("/webhooks/twilio/sms", STOP)]:
            response = await post(http, path, params)
            assert response.status_code == 403
            assert "TWILIO_AUTH_TOKEN" in response.json()["detail"]
    assert snapshot(engine) == before


# --- inbound texts -----------------------------------------------------------------------------------------


def inbound(body: str, sid: str = "SMin1", sender: str = PHONE) -> dict[str, str]:
    return {"From": sender, "To": "+15005550006", "Body": body, "MessageSid": sid, "AccountSid": "AC1"}


@pytest.mark.parametrize("body", ["STOP", "stop", " Stop. ", "UNSUBSCRIBE", "quit", "please stop texting me"])
async def test_stop_revokes_sms_consent_and_confirms(
    http: httpx.AsyncClient, engine: Engine, config: JourneysConfig, sent: Message, body: str
):
    response = await post(http, "/webhooks/twilio/sms", inbound(body))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert "<Message>" in response.text
    assert f"{config.brand.name}: you are unsubscribed and will receive no more messages." in response.text
    assert "Reply START to resubscribe." in response.text
    assert sms_consent(engine) == ConsentStatus.revoked
    latest = consents(engine)[-1]
    assert (latest.source, latest.wording) == ("sms_keyword", body)


async def test_stop_revokes_every_customer_on_the_number(http: httpx.AsyncClient, engine: Engine, sent: Message):
    with Session(engine) as session:
        session.add(Customer(id="c2", phone=PHONE))
        session.add(Customer(id="c3", phone="+14155550199"))
        session.commit()
    assert (await post(http, "/webhooks/twilio/sms", inbound("STOP"))).status_code == 200
    assert sms_consent(engine, "c1") == sms_consent(engine, "c2") == ConsentStatus.revoked
    assert consents(engine, "c3") == []


async def test_stop_from_an_unknown_number_is_confirmed_and_stores_nothing(
    http: httpx.AsyncClient, engine: Engine, config: JourneysConfig, sent: Message
):
    before = snapshot(engine)
    response = await post(http, "/webhooks/twilio/sms", inbound("STOP", sender="+14155550111"))
    assert response.status_code == 200
    assert "you are unsubscribed" in response.text
    assert snapshot(engine) == before


async def test_start_grants_sms_consent_with_the_ctia_confirmation(
    http: httpx.AsyncClient, engine: Engine, config: JourneysConfig, sent: Message
):
    await post(http, "/webhooks/twilio/sms", inbound("STOP", sid="SMin1"))
    response = await post(http, "/webhooks/twilio/sms", inbound("start", sid="SMin2"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    for text in [config.brand.name, config.brand.sms_frequency, "Msg &amp; data rates may apply", "HELP", "STOP"]:
        assert text in response.text
    assert config.brand.sms_frequency == "Up to 4 msgs/week"
    assert sms_consent(engine) == ConsentStatus.granted
    latest = consents(engine)[-1]
    assert (latest.source, latest.wording) == ("sms_keyword", config.brand.sms_consent_wording)
    assert latest.wording_version == config.brand.consent_wording_version


async def test_help_replies_the_help_text(
    http: httpx.AsyncClient, engine: Engine, config: JourneysConfig, sent: Message
):
    before = snapshot(engine)
    for body in ["HELP", "info"]:
        response = await post(http, "/webhooks/twilio/sms", inbound(body))
        assert response.status_code == 200
        assert "<Message>" in response.text and "northwind.example/help" in response.text
    assert config.brand.help_text.startswith(config.brand.name)
    assert snapshot(engine) == before


async def test_other_texts_are_kept_as_replies_with_an_empty_answer(
    http: httpx.AsyncClient, engine: Engine, sent: Message
):
    before = snapshot(engine)
    texts = ["Do you have this in blue?", "don't stop, I love these deals", ""]
    for i, body in enumerate(texts):
        response = await post(http, "/webhooks/twilio/sms", inbound(body, sid=f"SMq{i}"))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/xml")
        assert "<Message" not in response.text and "<Response" in response.text
    await post(http, "/webhooks/twilio/sms", inbound("Who is this?", sid="SMq9", sender="+14155550999"))
    await post(http, "/webhooks/twilio/sms", inbound("Do you have this in blue?", sid="SMq0"))  # redelivered

    assert [(r.customer_id, r.sender, r.body) for r in replies(engine)] == [
        *(("c1", PHONE, body) for body in texts),
        (None, "+14155550999", "Who is this?"),  # a number we do not know: kept all the same
    ]
    after = snapshot(engine)
    assert {name: rows for name, rows in after.items() if name != "reply"} == {
        name: rows for name, rows in before.items() if name != "reply"
    }


def replies(engine: Engine) -> list[Reply]:
    with Session(engine) as session:
        return list(session.exec(select(Reply).order_by(col(Reply.id))).all())


UNSANDBOXED = UnsandboxedWorkflowRunner()  # the stand-in lives in a test module the sandbox cannot import


@workflow.defn(name="Conversation")
class Conversation:
    """Stands in for the conversational journey (a later issue): it only collects what it is told."""

    def __init__(self) -> None:
        self.replies: list[int] = []

    @workflow.run
    async def run(self) -> list[int]:
        await workflow.wait_condition(lambda: bool(self.replies))
        return self.replies

    @workflow.signal
    def replied(self, signal: RepliedSignal) -> None:
        self.replies.append(signal.reply_id)


async def test_a_reply_is_told_to_the_customers_conversation(
    engine: Engine, config: JourneysConfig, dev_server: WorkflowEnvironment, sent: Message
):
    settings = Settings(COMEBACK_API_TOKEN="t0ken", TWILIO_AUTH_TOKEN=AUTH_TOKEN, COMEBACK_PUBLIC_URL=PUBLIC)
    app = create_app(settings, engine=engine, client=dev_server.client, config=config)
    task_queue = f"tq-{uuid.uuid4()}"
    async with (
        Worker(
            dev_server.client,
            task_queue=task_queue,
            workflows=[Conversation],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=INTERNAL) as http,
    ):
        handle = await dev_server.client.start_workflow(
            Conversation.run,
            id=conversation_id("c1"),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
        )
        response = await post(http, "/webhooks/twilio/sms", inbound("Yes, the blue one please", sid="SMconv"))
        assert response.status_code == 200
        [reply] = replies(engine)
        assert await handle.result() == [reply.id]


async def test_a_twilio_outcome_is_told_to_the_journey_once(
    engine: Engine, config: JourneysConfig, dev_server: WorkflowEnvironment, sent: Message
):
    order_id = f"o_{uuid.uuid4().hex[:8]}"
    with Session(engine) as session:
        row = session.get(Message, sent.id)
        assert row is not None
        row.idempotency_key = f"{post_purchase_id(order_id)}/{row.step}"
        session.add(row)
        session.commit()
    settings = Settings(COMEBACK_API_TOKEN="t0ken", TWILIO_AUTH_TOKEN=AUTH_TOKEN, COMEBACK_PUBLIC_URL=PUBLIC)
    app = create_app(settings, engine=engine, client=dev_server.client, config=config)
    async with (
        running_journeys(dev_server, engine, config) as journeys,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=INTERNAL) as http,
    ):
        handle = await journeys.start("c1", order_id)
        for reported in ["queued", "sent", "undelivered", "undelivered", "delivered", "read"]:
            response = await post(http, "/webhooks/twilio/status", {"MessageSid": "SM123", "MessageStatus": reported})
            assert response.status_code == 204
        assert (await journeys.state(handle)).events == ["thanks: undelivered"]  # the first outcome stands
        assert await signals(handle) == ["message_event"]


async def test_a_duplicate_delivery_changes_nothing(http: httpx.AsyncClient, engine: Engine, sent: Message):
    token = {"I-Twilio-Idempotency-Token": "idem-1"}
    first = await post(http, "/webhooks/twilio/sms", inbound("STOP", sid="SMin1"), **token)
    assert sms_consent(engine) == ConsentStatus.revoked
    count = len(consents(engine))
    second = await post(http, "/webhooks/twilio/sms", inbound("STOP", sid="SMin1"), **token)
    assert second.status_code == first.status_code == 200
    assert second.text == first.text
    assert len(consents(engine)) == count


async def test_without_a_token_the_message_sid_dedupes(http: httpx.AsyncClient, engine: Engine, sent: Message):
    await post(http, "/webhooks/twilio/sms", inbound("STOP", sid="SMdup"))
    count = len(consents(engine))
    before = snapshot(engine)
    response = await post(http, "/webhooks/twilio/sms", inbound("STOP", sid="SMdup"))
    assert response.status_code == 200 and "you are unsubscribed" in response.text
    assert len(consents(engine)) == count
    assert snapshot(engine) == before


async def test_stop_tells_the_customers_running_journeys_at_once(
    engine: Engine, config: JourneysConfig, dev_server: WorkflowEnvironment
):
    """A journey waiting days for its next step hears of the STOP now, not at its next send."""
    task_queue = f"tq-{uuid.uuid4()}"
    settings = Settings(
        COMEBACK_API_TOKEN="t0ken",
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        COMEBACK_PUBLIC_URL=PUBLIC,
        TEMPORAL_TASK_QUEUE=task_queue,
    )
    app = create_app(settings, engine=engine, client=dev_server.client, config=config)
    customer = f"c_{uuid.uuid4().hex[:8]}"
    order = order_payload(f"o_{uuid.uuid4().hex[:8]}", customer, phone="+14155550177")
    with ThreadPoolExecutor(ACTIVITY_THREADS) as executor:
        activities = build_activities(engine, config, Channels(RecordingChannel(), RecordingChannel()))
        async with (
            create_worker(dev_server.client, task_queue, activities, executor),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=INTERNAL) as http,
        ):
            response = await http.post("/orders", json=order, headers={"Authorization": "Bearer t0ken"})
            assert response.status_code == 202, response.text
            response = await post(http, "/webhooks/twilio/sms", inbound("Stop", sender="+14155550177"))
            assert response.status_code == 200 and "unsubscribed" in response.text

            handle = dev_server.client.get_workflow_handle_for(
                PostPurchaseJourney.run, post_purchase_id(order["order_id"])
            )
            state = await handle.query(PostPurchaseJourney.state)
            assert state.opted_out == [Channel.sms]
            assert state.ended is None  # email steps remain, each still checked for consent when it is due
            await handle.terminate("test over")
