"""SendGrid's signed Event Webhook, signed as SendGrid signs it (ECDSA P-256, SHA-256), on SQLite and PostgreSQL."""

import base64
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, cast

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from channels.sendgrid import MESSAGE_ID_ARG
from models.journeys import JourneysConfig
from models.settings import Settings
from models.store import consent_status
from models.tables import (
    Channel,
    Consent,
    ConsentStatus,
    Customer,
    Message,
    MessageStatus,
    Order,
    WebhookReceipt,
    utcnow,
)
from starter.journeys import post_purchase_id
from tests.test_api import snapshot, unique
from tests.test_links import Unreachable, running_journeys

PATH = "/webhooks/sendgrid/events"
EMAIL = "ada@example.com"
X_MESSAGE_ID = "14c5d75ce93.dfd.64b469"


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid shows it: base64 of the DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def sign(body: bytes, timestamp: str, key: ec.EllipticCurvePrivateKey = KEY) -> str:
    return base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


def app_client(
    engine: Engine, config: JourneysConfig, public_key: str | None, temporal: Any = None
) -> httpx.AsyncClient:
    """The API; Temporal is unreachable unless a client is given (the events are stored all the same)."""
    settings = Settings(COMEBACK_API_TOKEN="t0ken", SENDGRID_WEBHOOK_PUBLIC_KEY=public_key)
    app = create_app(settings, engine=engine, client=cast(Client, temporal or Unreachable()), config=config)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def http(engine: Engine, config: JourneysConfig) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(engine, config, public_key_b64(KEY)) as http:
        yield http


async def post(
    http: httpx.AsyncClient,
    events: list[dict[str, Any]],
    *,
    key: ec.EllipticCurvePrivateKey = KEY,
    age: float = 0,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = json.dumps(events).encode()
    timestamp = str(int(time.time() - age))
    if headers is None:
        headers = {
            "X-Twilio-Email-Event-Webhook-Signature": sign(body, timestamp, key),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }
    return await http.post(PATH, content=body, headers={"Content-Type": "application/json", **headers})


def event(kind: str, message_id: int | None, event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "event": kind,
        "email": EMAIL,
        "timestamp": int(time.time()),
        "sg_event_id": event_id or f"ev-{kind}-{message_id}",
        "sg_message_id": f"{X_MESSAGE_ID}.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
        **extra,
    }
    if message_id is not None:
        raw[MESSAGE_ID_ARG] = str(message_id)
    return raw


@pytest.fixture
def sent(engine: Engine) -> Message:
    """A customer with email consent and one email SendGrid accepted."""
    with Session(engine) as session:
        session.add(Customer(id="c1", email=EMAIL))
        session.commit()
        session.add(Consent(customer_id="c1", channel=Channel.email, status=ConsentStatus.granted, source="checkout"))
        message = Message(
            idempotency_key="post-purchase-1/thanks",
            customer_id="c1",
            channel=Channel.email,
            journey="post_purchase",
            step="thanks",
            subject="Thanks",
            body="Thanks!",
            status=MessageStatus.sent,
            provider="sendgrid",
            provider_id=X_MESSAGE_ID,
        )
        session.add(message)
        session.commit()
        session.refresh(message)
        return message


def delivery_status(engine: Engine, message_id: int | None) -> str | None:
    with Session(engine) as session:
        message = session.get(Message, message_id)
        assert message is not None
        return message.delivery_status


def email_consent(engine: Engine) -> tuple[ConsentStatus | None, list[str]]:
    with Session(engine) as session:
        rows = session.exec(select(Consent).where(Consent.channel == Channel.email).order_by(col(Consent.id))).all()
        return consent_status(session, "c1", Channel.email), [row.source for row in rows]


async def test_status_moves_forward_only(http: httpx.AsyncClient, engine: Engine, sent: Message) -> None:
    for kind, expected in [
        ("processed", "processed"),
        ("delivered", "delivered"),
        ("processed", "delivered"),  # late: changes nothing
        ("deferred", "delivered"),
        ("open", "open"),
        ("delivered", "open"),
        ("click", "click"),
        ("open", "click"),
    ]:
        response = await post(http, [event(kind, sent.id, event_id=f"{kind}-{expected}")])
        assert response.status_code == 204, response.text
        assert delivery_status(engine, sent.id) == expected, kind
    assert email_consent(engine) == (ConsentStatus.granted, ["checkout"])


async def test_batch_out_of_order(http: httpx.AsyncClient, engine: Engine, sent: Message) -> None:
    batch = [event("delivered", sent.id), event("processed", sent.id), event("open", sent.id)]
    assert (await post(http, batch)).status_code == 204
    assert delivery_status(engine, sent.id) == "open"
    with Session(engine) as session:
        assert len(session.exec(select(WebhookReceipt)).all()) == 3


async def test_found_by_sg_message_id_without_custom_arg(
    http: httpx.AsyncClient, engine: Engine, sent: Message
) -> None:
    assert (await post(http, [event("delivered", None)])).status_code == 204  # an older, dotted X-Message-Id
    assert delivery_status(engine, sent.id) == "delivered"
    with Session(engine) as session:  # today's ids have no dot
        message = session.get(Message, sent.id)
        assert message is not None
        message.provider_id = "W0JXSZ0VRuS9aOmV9dg-rA"
        session.add(message)
        session.commit()
    sg_message_id = "W0JXSZ0VRuS9aOmV9dg-rA.recvd-5f8c7b4f9-2xq7k-1-64B1C5A2-3.0"
    assert (await post(http, [event("open", None, sg_message_id=sg_message_id)])).status_code == 204
    assert delivery_status(engine, sent.id) == "open"


async def test_bounce_is_terminal_and_revokes(http: httpx.AsyncClient, engine: Engine, sent: Message) -> None:
    await post(http, [event("delivered", sent.id)])
    response = await post(http, [event("bounce", sent.id, reason="550 5.1.1 unknown user", type="bounce")])
    assert response.status_code == 204
    assert delivery_status(engine, sent.id) == "bounce"  # an asynchronous bounce after "delivered"
    await post(http, [event("open", sent.id), event("delivered", sent.id, event_id="late")])
    assert delivery_status(engine, sent.id) == "bounce"
    assert email_consent(engine) == (ConsentStatus.revoked, ["checkout", "provider:sendgrid:bounce"])


@pytest.mark.parametrize("kind", ["spamreport", "unsubscribe", "group_unsubscribe"])
async def test_recipient_events_revoke_once(http: httpx.AsyncClient, engine: Engine, sent: Message, kind: str) -> None:
    await post(http, [event("delivered", sent.id)])
    assert (await post(http, [event(kind, sent.id)])).status_code == 204
    assert delivery_status(engine, sent.id) == "delivered"  # about the recipient, not the delivery
    assert email_consent(engine) == (ConsentStatus.revoked, ["checkout", f"provider:sendgrid:{kind}"])
    await post(http, [event("spamreport", sent.id, event_id="another")])  # already revoked: nothing appended
    assert email_consent(engine) == (ConsentStatus.revoked, ["checkout", f"provider:sendgrid:{kind}"])


async def test_dropped(http: httpx.AsyncClient, engine: Engine, sent: Message) -> None:
    await post(http, [event("dropped", sent.id, event_id="d1", reason="Invalid SMTPAPI header")])
    assert delivery_status(engine, sent.id) == "dropped"
    assert email_consent(engine)[0] == ConsentStatus.granted  # ours to fix, not the address's
    await post(http, [event("dropped", sent.id, event_id="d2", reason="Bounced Address")])
    assert email_consent(engine) == (ConsentStatus.revoked, ["checkout", "provider:sendgrid:dropped"])


async def test_blocked_bounce_keeps_consent(http: httpx.AsyncClient, engine: Engine, sent: Message) -> None:
    await post(http, [event("bounce", sent.id, type="blocked", reason="IP reputation")])
    assert delivery_status(engine, sent.id) == "blocked"
    assert email_consent(engine)[0] == ConsentStatus.granted


async def test_changed_address_keeps_consent(http: httpx.AsyncClient, engine: Engine, sent: Message) -> None:
    with Session(engine) as session:
        customer = session.get(Customer, "c1")
        assert customer is not None
        customer.email = "ada@new.example.com"
        session.add(customer)
        session.commit()
    await post(http, [event("bounce", sent.id)])
    assert delivery_status(engine, sent.id) == "bounce"
    assert email_consent(engine)[0] == ConsentStatus.granted


async def test_duplicate_event_changes_nothing(http: httpx.AsyncClient, engine: Engine, sent: Message) -> None:
    first = [event("unsubscribe", sent.id, event_id="ev1")]
    assert (await post(http, first)).status_code == 204
    with Session(engine) as session:  # the customer opts in again afterwards
        session.add(Consent(customer_id="c1", channel=Channel.email, status=ConsentStatus.granted, source="api"))
        session.commit()
    before = snapshot(engine)
    assert (await post(http, first)).status_code == 204  # SendGrid redelivers the batch
    assert snapshot(engine) == before
    assert email_consent(engine)[0] == ConsentStatus.granted


async def test_unknown_message_skipped_receipt_kept(http: httpx.AsyncClient, engine: Engine, sent: Message) -> None:
    other = event("bounce", 9999, event_id="ev-x", sg_message_id="someoneelse.filter")
    wrong_env = event("bounce", sent.id, event_id="ev-y", sg_message_id="otherenv.filter")  # same id, not ours
    assert (await post(http, [other, wrong_env])).status_code == 204
    assert delivery_status(engine, sent.id) is None
    assert email_consent(engine)[0] == ConsentStatus.granted
    with Session(engine) as session:
        assert sorted(r.key for r in session.exec(select(WebhookReceipt)).all()) == ["ev-x", "ev-y"]


async def refused(http: httpx.AsyncClient, engine: Engine, **kwargs: Any) -> httpx.Response:
    before = snapshot(engine)
    response = await post(http, [event("bounce", 1)], **kwargs)
    assert response.status_code == 403, response.text
    assert "detail" in response.json()
    assert snapshot(engine) == before
    return response


async def test_forged_signature(http: httpx.AsyncClient, engine: Engine, sent: Message) -> None:
    timestamp = str(int(time.time()))
    forged = base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()
    for signature in [forged, "not base64!", sign(b"[]", timestamp)]:
        headers = {
            "X-Twilio-Email-Event-Webhook-Signature": signature,
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }
        await refused(http, engine, headers=headers)


async def test_wrong_key(http: httpx.AsyncClient, engine: Engine, sent: Message) -> None:
    await refused(http, engine, key=OTHER_KEY)


async def test_missing_headers(http: httpx.AsyncClient, engine: Engine, sent: Message) -> None:
    timestamp = str(int(time.time()))
    signature = sign(json.dumps([event("bounce", 1)]).encode(), timestamp)
    await refused(http, engine, headers={})
    await refused(http, engine, headers={"X-Twilio-Email-Event-Webhook-Signature": signature})
    await refused(http, engine, headers={"X-Twilio-Email-Event-Webhook-Timestamp": timestamp})


@pytest.mark.parametrize("age", [600, -600])
async def test_stale_timestamp(http: httpx.AsyncClient, engine: Engine, sent: Message, age: int) -> None:
    response = await refused(http, engine, age=age)  # correctly signed, ten minutes off
    assert response.json() == {"detail": "stale timestamp"}


async def test_tampered_body(http: httpx.AsyncClient, engine: Engine, sent: Message) -> None:
    body = json.dumps([event("delivered", sent.id)]).encode()
    timestamp = str(int(time.time()))
    signature = sign(body, timestamp)
    tampered = body.replace(b"delivered", b"bounce")
    before = snapshot(engine)
    response = await http.post(
        PATH,
        content=tampered,
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": signature,
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        },
    )
    assert response.status_code == 403
    assert snapshot(engine) == before
    # And the timestamp is signed too: the same signature under another timestamp is refused.
    response = await http.post(
        PATH,
        content=body,
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": signature,
            "X-Twilio-Email-Event-Webhook-Timestamp": str(int(timestamp) - 1),
        },
    )
    assert response.status_code == 403
    assert snapshot(engine) == before


@pytest.mark.parametrize("setting", [None, "not-a-key"])
async def test_no_key_configured(engine: Engine, config: JourneysConfig, sent: Message, setting: str | None) -> None:
    async with app_client(engine, config, setting) as http:
        response = await refused(http, engine)
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY" in response.json()["detail"]


async def test_pem_key_accepted(engine: Engine, config: JourneysConfig, sent: Message) -> None:
    pem = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    async with app_client(engine, config, pem.decode()) as http:
        assert (await post(http, [event("delivered", sent.id)])).status_code == 204
    assert delivery_status(engine, sent.id) == "delivered"


# --- journeys are told ---------------------------------------------------------------------------------------


def sent_by(engine: Engine, message: Message, workflow_id: str) -> None:
    """Make the message one that the given journey sent (the dev server outlives each test's ids)."""
    with Session(engine) as session:
        row = session.get(Message, message.id)
        assert row is not None
        row.idempotency_key = f"{workflow_id}/{row.step}"
        session.add(row)
        session.commit()


async def signals(handle: WorkflowHandle) -> list[str]:
    """The signals the journey's history holds: each one the API sent, however the journey took it."""
    history = await handle.fetch_history()
    return [
        event.workflow_execution_signaled_event_attributes.signal_name
        for event in history.events
        if event.HasField("workflow_execution_signaled_event_attributes")
    ]


async def test_new_events_are_told_to_the_journey_once(
    engine: Engine, config: JourneysConfig, dev_server: WorkflowEnvironment, sent: Message
):
    order_id = unique("o")
    sent_by(engine, sent, post_purchase_id(order_id))
    batch = [event("processed", sent.id), event("delivered", sent.id), event("open", sent.id)]
    async with (
        running_journeys(dev_server, engine, config) as journeys,
        app_client(engine, config, public_key_b64(KEY), dev_server.client) as http,
    ):
        handle = await journeys.start("c1", order_id)

        assert (await post(http, batch)).status_code == 204
        state = await journeys.state(handle)
        assert sorted(state.events) == ["thanks: delivered", "thanks: open"]  # "processed" is no news to a journey
        assert await signals(handle) == ["message_event"] * 2

        assert (await post(http, batch)).status_code == 204  # SendGrid delivers the batch again
        assert await signals(handle) == ["message_event"] * 2

        await post(http, [event("open", sent.id, event_id="open-2"), event("bounce", sent.id, type="blocked")])
        state = await journeys.state(handle)
        assert sorted(state.events) == ["thanks: blocked", "thanks: delivered", "thanks: open"]
        assert await signals(handle) == ["message_event"] * 4  # each new event is told; the journey counts once


async def test_an_unsubscribe_is_told_to_every_running_journey_of_the_customer(
    engine: Engine, config: JourneysConfig, dev_server: WorkflowEnvironment, sent: Message
):
    sending, other = unique("o"), unique("o")
    sent_by(engine, sent, post_purchase_id(sending))
    with Session(engine) as session:  # a later order of the same customer, whose journey also runs
        session.add(Order(id=other, customer_id="c1", placed_at=utcnow(), currency="USD", total=Decimal("10")))
        session.commit()
    async with (
        running_journeys(dev_server, engine, config) as journeys,
        app_client(engine, config, public_key_b64(KEY), dev_server.client) as http,
    ):
        handles = [await journeys.start("c1", sending), await journeys.start("c1", other)]

        assert (await post(http, [event("unsubscribe", sent.id)])).status_code == 204
        for handle in handles:
            assert (await journeys.state(handle)).opted_out == [Channel.email]
        assert await signals(handles[1]) == ["opted_out"]

        await post(http, [event("spamreport", sent.id)])  # consent is already revoked: nothing more to tell
        assert await signals(handles[1]) == ["opted_out"]


async def test_events_are_stored_while_temporal_is_down(engine: Engine, config: JourneysConfig, sent: Message):
    temporal = Unreachable()
    async with app_client(engine, config, public_key_b64(KEY), temporal) as http:
        batch = [event("delivered", sent.id), event("bounce", sent.id, reason="550 5.1.1 unknown user")]
        response = await post(http, batch)
    assert response.status_code == 204
    assert delivery_status(engine, sent.id) == "bounce"
    assert email_consent(engine) == (ConsentStatus.revoked, ["checkout", "provider:sendgrid:bounce"])
    # Delivered and bounce to the journey, and the bounce's opt-out to it and to every journey of the customer's
    # that may run; each tried once.
    sender = temporal.told[0]
    assert temporal.told.count(sender) == 3
    assert len(set(temporal.told)) == len(temporal.told) - 2
