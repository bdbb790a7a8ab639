"""Customers: upsert with consent evidence, export, erasure and the suppression list (SQLite and PostgreSQL)."""

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.messages import MessageActivities
from activities.rendering import TemplateRenderer
from api.app import create_app
from api.intake import store_order
from api.schemas import OrderIn
from channels.base import Channels
from models.contracts import SendRequest
from models.journeys import JourneysConfig
from models.settings import Settings
from models.store import is_suppressed, suppress
from models.tables import (
    Cart,
    CartItem,
    Consent,
    Customer,
    Event,
    Message,
    MessageStatus,
    Order,
    OrderItem,
    Review,
    Suppression,
)
from tests.conftest import NoJourneys, RecordingChannel
from tests.factories import order_payload

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PHONE, EMAIL = "+14155550100", "john@example.com"
EVIDENCE = {
    "source": "signup_form",
    "wording": "Yes, text me offers. Msg & data rates may apply. Reply STOP to opt out.",
    "wording_version": "2026-11",
    "ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
    "recorded_at": "2026-11-20T15:04:05Z",
}


@pytest.fixture
async def http(engine: Engine, config: JourneysConfig) -> AsyncIterator[httpx.AsyncClient]:
    # No journey runs here (and the lifespan does not run).
    client = cast(Client, NoJourneys())
    app = create_app(Settings(COMEBACK_API_TOKEN=TOKEN), engine=engine, client=client, config=config)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://comeback.test") as http:
        yield http


def customer(customer_id: str = "c_42", **fields: Any) -> dict[str, Any]:
    return {
        "id": customer_id,
        "first_name": "John",
        "last_name": "Doe",
        "phone": PHONE,
        "email": EMAIL,
        "timezone": "America/Los_Angeles",
        "birthday": "1990-05-17",
        "sms_consent": True,
        "email_consent": True,
        "consent": EVIDENCE,
    } | fields


def consents(engine: Engine, customer_id: str) -> list[Consent]:
    with Session(engine) as session:
        return list(
            session.exec(select(Consent).where(Consent.customer_id == customer_id).order_by(col(Consent.channel))).all()
        )


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def send(engine: Engine, config: JourneysConfig, recorder: RecordingChannel, customer_id: str = "c_42", **request: Any):
    """send_message for one step (`step`, default thank_you) of the customer's journey, by SMS or email."""
    activities = MessageActivities(engine, Channels(recorder, recorder), config, TemplateRenderer())
    fields: dict[str, Any] = {
        "customer_id": customer_id,
        "journey": "post_purchase",
        "step": "thank_you",
        "template": "post_purchase/thank_you",
        "channels": ["sms", "email"],
        "order_id": "1001",
    }
    return ActivityEnvironment().run(activities.send_message, SendRequest.model_validate(fields | request))


# --- POST /customers ---------------------------------------------------------------------------------------


async def test_one_customer_is_upserted_with_its_consent_evidence(http, engine):
    answer = await http.post("/customers", json=customer(), headers=AUTH)
    assert answer.status_code == 200 and answer.json() == {"upserted": 1}

    with Session(engine) as session:
        stored = session.get(Customer, "c_42")
        assert stored is not None and (stored.first_name, stored.phone, stored.email) == ("John", PHONE, EMAIL)
    rows = consents(engine, "c_42")
    assert [(c.channel, c.status) for c in rows] == [("email", "granted"), ("sms", "granted")]
    for row in rows:
        assert (row.source, row.wording, row.wording_version) == ("signup_form", EVIDENCE["wording"], "2026-11")
        assert (row.ip, row.user_agent) == ("203.0.113.7", EVIDENCE["user_agent"])
        assert row.recorded_at.isoformat() == "2026-11-20T15:04:05+00:00"


async def test_a_batch_is_upserted_in_one_go_and_updates_keep_what_they_do_not_mention(http, engine, config):
    batch = [
        customer("c_1", phone="(415) 555-0101", email="ONE@example.com", consent=EVIDENCE | {"ip": "2001:db8::1"}),
        customer("c_2", phone=None, email="two@example.com", sms_consent=None, consent=None),
    ]
    answer = await http.post("/customers", json=batch, headers=AUTH)
    assert answer.status_code == 200 and answer.json() == {"upserted": 2}
    answer = await http.post("/customers", json=[{"id": "c_2", "first_name": "Tina"}], headers=AUTH)
    assert answer.json() == {"upserted": 1}

    with Session(engine) as session:
        one, two = session.get(Customer, "c_1"), session.get(Customer, "c_2")
        assert one is not None and one.phone == "+14155550101"
        assert two is not None and (two.first_name, two.email, two.phone) == ("Tina", "two@example.com", None)
    assert {c.ip for c in consents(engine, "c_1")} == {"2001:db8::1"}
    # Without evidence: the brand's wording, source "api".
    [email] = consents(engine, "c_2")
    assert (email.channel, email.source, email.wording) == ("email", "api", config.brand.email_consent_wording)
    assert email.ip is None and email.user_agent is None


async def test_a_bad_item_in_a_batch_is_named_by_its_index_and_nothing_is_stored(http, engine):
    batch = [customer("c_1"), customer("c_2", email="not-an-email", consent=EVIDENCE | {"ip": "nope"})]
    answer = await http.post("/customers", json=batch, headers=AUTH)
    assert answer.status_code == 422
    fields = {e["field"] for e in answer.json()["errors"]}
    assert fields == {"1.email", "1.consent.ip"}
    with Session(engine) as session:
        assert session.exec(select(Customer)).all() == []
        assert session.exec(select(Consent)).all() == []


async def test_a_single_bad_customer_and_oversized_or_empty_batches_are_rejected(http, engine):
    answer = await http.post("/customers", json=customer(phone="12", extra="x"), headers=AUTH)
    assert answer.status_code == 422
    assert {e["field"] for e in answer.json()["errors"]} == {"phone", "extra"}
    too_many = [{"id": f"c_{n}"} for n in range(1001)]
    assert (await http.post("/customers", json=too_many, headers=AUTH)).status_code == 422
    assert (await http.post("/customers", json=[], headers=AUTH)).status_code == 422
    with Session(engine) as session:
        assert session.exec(select(Customer)).all() == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/customers"), ("GET", "/customers/c_42/export"), ("DELETE", "/customers/c_42")],
)
async def test_every_endpoint_needs_the_token(http, engine, config, method, path):
    with Session(engine) as session:
        store_order(session, OrderIn.model_validate(order_payload()), config)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        kwargs: dict[str, Any] = {"json": customer()} if method == "POST" else {}
        answer = await http.request(method, path, headers=headers, **kwargs)
        assert answer.status_code == 401
    # Nor does an invalid body tell a caller without the token anything more.
    answer = await http.post("/customers", json=[{"id": "c_1", "email": "bad"}])
    assert answer.status_code == 401
    with Session(engine) as session:
        stored = session.get(Customer, "c_42")
        assert stored is not None and stored.phone == PHONE
        assert len(session.exec(select(Consent)).all()) == 2


# --- GET /customers/{id}/export, DELETE /customers/{id} -----------------------------------------------------


def shop_history(engine: Engine, config: JourneysConfig, recorder: RecordingChannel) -> None:
    """An order, a message sent, and a consent given with evidence."""
    with Session(engine) as session:
        store_order(session, OrderIn.model_validate(order_payload()), config)
        at = datetime(2026, 11, 24, tzinfo=UTC)
        session.add(Cart(id="cart-9", customer_id="c_42", currency="USD"))
        session.flush()
        session.add(CartItem(cart_id="cart-9", sku="JEANS-32", name="Slim jeans", quantity=2, unit_price=Decimal(59)))
        session.add(Review(customer_id="c_42", order_id="1001", rating=5, text="Love these jeans", posted_at=at))
        session.add(Event(customer_id="c_42", type="site_visit", occurred_at=at))
        session.commit()
    assert send(engine, config, recorder).status == "sent"


async def test_the_export_holds_everything_stored_about_the_customer(http, engine, config, recorder):
    shop_history(engine, config, recorder)
    assert (await http.post("/customers", json=customer(first_name="Johnny"), headers=AUTH)).status_code == 200

    answer = await http.get("/customers/c_42/export", headers=AUTH)
    assert answer.status_code == 200
    export = answer.json()
    assert set(export) == {"profile", "consents", "orders", "messages", "carts", "reviews", "events"}
    profile = export["profile"]
    assert (profile["id"], profile["first_name"], profile["phone"], profile["email"]) == (
        "c_42",
        "Johnny",
        PHONE,
        EMAIL,
    )
    assert profile["birthday"] == "1990-05-17"
    # The checkout's consents; the signup form's re-grant changed nothing (consent was already granted).
    assert [(c["channel"], c["source"]) for c in export["consents"]] == [("sms", "checkout"), ("email", "checkout")]
    [order] = export["orders"]
    assert (order["id"], order["total"], order["currency"]) == ("1001", "129.900", "USD")
    assert [(i["sku"], i["quantity"], i["unit_price"]) for i in order["items"]] == [("JEANS-32", 1, "59.950")]
    [message] = export["messages"]
    assert message["status"] == "sent" and "John" in message["body"]
    [cart] = export["carts"]
    assert (cart["id"], [(i["sku"], i["quantity"]) for i in cart["items"]]) == ("cart-9", [("JEANS-32", 2)])
    assert [(r["order_id"], r["rating"], r["text"]) for r in export["reviews"]] == [("1001", 5, "Love these jeans")]
    assert [e["type"] for e in export["events"]] == ["site_visit"]

    assert (await http.get("/customers/nobody/export", headers=AUTH)).status_code == 404


async def test_erasure_removes_personal_data_and_suppresses_the_addresses(http, engine, config, recorder):
    shop_history(engine, config, recorder)

    answer = await http.delete("/customers/c_42", headers=AUTH)
    assert answer.status_code == 204 and answer.content == b""

    export = (await http.get("/customers/c_42/export", headers=AUTH)).json()
    text = answer.text + repr(export)
    for personal in (PHONE, "4155550100", EMAIL, "John", "Doe", "America/Los_Angeles", "Love these jeans"):
        assert personal not in text
    assert [r["rating"] for r in export["reviews"]] == [5]  # the rating stays, without the words
    profile = export["profile"]
    assert all(profile[f] is None for f in ("first_name", "last_name", "phone", "email", "birthday", "timezone"))
    assert export["consents"] == []
    [message] = export["messages"]  # kept, to be counted, without its text
    assert message["status"] == "sent" and message["body"] is None and message["subject"] is None
    assert [o["id"] for o in export["orders"]] == ["1001"] and export["orders"][0]["items"]

    with Session(engine) as session:
        rows = session.exec(select(Suppression).order_by(col(Suppression.channel))).all()
        assert [(r.channel, r.key_hash, r.reason) for r in rows] == [
            ("email", sha256(EMAIL), "erasure"),
            ("sms", sha256(PHONE), "erasure"),
        ]
        assert is_suppressed(session, phone="(415) 555-0100") and is_suppressed(session, email="John@Example.com")
        assert not is_suppressed(session, phone="+14155550199", email="other@example.com")
        assert not is_suppressed(session)
    # Erasing again is harmless; an unknown customer is a 404.
    assert (await http.delete("/customers/c_42", headers=AUTH)).status_code == 204
    assert (await http.delete("/customers/nobody", headers=AUTH)).status_code == 404
    with Session(engine) as session:
        assert len(session.exec(select(Suppression)).all()) == 2
        assert session.get(Order, "1001") is not None and session.exec(select(OrderItem)).all()


async def test_an_erased_address_given_again_is_stored_but_never_sent_to(http, engine, config, recorder):
    shop_history(engine, config, recorder)
    assert (await http.delete("/customers/c_42", headers=AUTH)).status_code == 204
    # A send to the erased customer: no address, no consent.
    result = send(engine, config, recorder, step="after_erasure")
    assert (result.status, result.reason) == ("skipped", "no_consent")

    for customer_id in ("c_42", "c_new"):  # the same customer again, or a new id with the same phone and email
        answer = await http.post("/customers", json=customer(customer_id), headers=AUTH)
        assert answer.status_code == 200
        with Session(engine) as session:
            stored = session.get(Customer, customer_id)
            assert stored is not None and stored.phone == PHONE
        assert {c.status for c in consents(engine, customer_id)} == {"granted"}
        result = send(engine, config, recorder, customer_id, step=f"after_{customer_id}")
        assert (result.status, result.reason) == ("skipped", "no_consent")
    assert len(recorder.sent) == 1  # the message before the erasure


def test_a_suppressed_address_is_skipped_by_send_message_and_the_other_channel_used(engine, config, recorder):
    with Session(engine) as session:
        store_order(session, OrderIn.model_validate(order_payload()), config)
        suppress(session, phone=PHONE, reason="test")
        session.commit()

    result = send(engine, config, recorder)
    assert (result.status, result.channel) == ("sent", "email")
    [sent] = recorder.sent
    assert sent.to == EMAIL

    with Session(engine) as session:
        suppress(session, email=EMAIL.upper(), reason="test")
        session.commit()
    result = send(engine, config, recorder, step="next", channels=["sms", "email"])
    assert (result.status, result.reason) == ("skipped", "no_consent")
    assert len(recorder.sent) == 1
    with Session(engine) as session:
        skipped = session.exec(select(Message).where(Message.step == "next")).one()
        assert skipped.status == MessageStatus.skipped and skipped.body is None
