"""POST /events against a real Temporal dev server and a real database (SQLite and PostgreSQL)."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from channels.base import Channels
from models import search
from models.contracts import CartInput, FollowThroughInput, JourneyResult
from models.journeys import JourneysConfig
from models.tables import Cart, CartItem, CartStatus, Event, Order, Review
from tests.factories import order_payload
from tests.test_api import (
    AUTH,
    FlakyTemporal,
    api_client,
    eventually,
    new_order,
    running_worker,
    snapshot,
    started_input,
    unique,
)

AT = "2026-11-24T10:00:00Z"


@pytest.fixture
async def http(engine: Engine, dev_server: WorkflowEnvironment, config: JourneysConfig):
    async with api_client(engine, dev_server.client, config) as http:
        yield http


def cart_event(customer_id: str, cart_id: str, items: int = 1, **fields: Any) -> dict[str, Any]:
    item = {"sku": "SCARF-1", "name": "Wool scarf", "category": "scarves", "quantity": 1, "unit_price": "29.00"}
    return {
        "type": "cart_updated",
        "customer_id": customer_id,
        "cart_id": cart_id,
        "occurred_at": AT,
        "currency": "USD",
        "items": [item | {"sku": f"SCARF-{n}"} for n in range(items)],
    } | fields


@pytest.fixture
async def customer_order(http: httpx.AsyncClient) -> tuple[str, str]:
    """A customer with an order, posted through the API."""
    payload = new_order()
    response = await http.post("/orders", json=payload, headers=AUTH)
    assert response.status_code == 202, response.text
    return payload["customer"]["id"], payload["order_id"]


async def test_a_cart_update_stores_the_cart_and_starts_its_journey(
    http: httpx.AsyncClient, engine: Engine, dev_server: WorkflowEnvironment, customer_order: tuple[str, str]
):
    customer_id, _ = customer_order
    cart_id = unique("cart")

    first = await http.post("/events", json=cart_event(customer_id, cart_id, items=2), headers=AUTH)
    assert first.status_code == 202, first.text
    assert first.json() == {"status": "accepted", "workflow_id": f"cart-{cart_id}"}
    later = cart_event(customer_id, cart_id, items=1, occurred_at="2026-11-24T10:05:00Z")
    second = await http.post("/events", json=later, headers=AUTH)
    assert second.status_code == 202, second.text

    with Session(engine) as session:
        cart = session.get(Cart, cart_id)
        assert cart is not None and (cart.customer_id, cart.status, cart.currency) == (customer_id, "open", "USD")
        items = session.exec(select(CartItem).where(CartItem.cart_id == cart_id)).all()
        assert [(i.sku, i.quantity, i.unit_price) for i in items] == [("SCARF-0", 1, Decimal("29.000"))]
        events = session.exec(select(Event).where(Event.customer_id == customer_id)).all()
        assert [(e.type, e.subject_id) for e in events] == [("cart_updated", cart_id)] * 2

    handle = dev_server.client.get_workflow_handle(f"cart-{cart_id}")
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    assert description.typed_search_attributes.get(search.CUSTOMER_ID) == customer_id
    assert description.typed_search_attributes.get(search.JOURNEY) == "cart"
    journey = CartInput.model_validate_json(await started_input(handle))
    assert (journey.cart_id, journey.customer_id) == (cart_id, customer_id)
    history = await handle.fetch_history()
    signals = [e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]
    assert [e.workflow_execution_signaled_event_attributes.signal_name for e in signals] == ["cart_updated"] * 2
    await handle.terminate("test done")


async def test_an_older_cart_update_arriving_late_keeps_the_newer_items(
    http: httpx.AsyncClient, engine: Engine, dev_server: WorkflowEnvironment, customer_order: tuple[str, str]
):
    customer_id, _ = customer_order
    cart_id = unique("cart")
    newer = cart_event(customer_id, cart_id, items=3, occurred_at="2026-11-24T10:05:00Z")
    assert (await http.post("/events", json=newer, headers=AUTH)).status_code == 202
    assert (await http.post("/events", json=cart_event(customer_id, cart_id, items=1), headers=AUTH)).status_code == 202
    with Session(engine) as session:
        assert len(session.exec(select(CartItem).where(CartItem.cart_id == cart_id)).all()) == 3
    await dev_server.client.get_workflow_handle(f"cart-{cart_id}").terminate("test done")


async def test_a_repeated_event_id_stores_nothing_again(
    http: httpx.AsyncClient, engine: Engine, dev_server: WorkflowEnvironment, customer_order: tuple[str, str]
):
    customer_id, _ = customer_order
    event = {"type": "site_visit", "customer_id": customer_id, "occurred_at": AT, "event_id": unique("ev")}

    first = await http.post("/events", json=event, headers=AUTH)
    before = snapshot(engine)
    again = await http.post("/events", json=event, headers=AUTH)
    reused = await http.post("/events", json=event | {"type": "checkout_started"}, headers=AUTH)

    assert first.status_code == 202 and first.json() == {"status": "accepted", "workflow_id": None}
    assert again.status_code == 200 and again.json()["status"] == "exists"
    assert reused.status_code == 422 and "already used" in reused.json()["detail"]
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "cart_bought"}, "type"),
        ({"occurred_at": "2026-11-24T10:00:00"}, "occurred_at"),
        ({"customer_id": "has space"}, "customer_id"),
        ({"items": [{"sku": "X", "name": "X", "quantity": 0, "unit_price": "1"}]}, "items.0.quantity"),
        ({"currency": "XYZ"}, "currency"),
        ({"coupon": "X"}, "coupon"),
    ],
)
async def test_a_bad_event_is_422_naming_the_field_and_stores_nothing(
    http: httpx.AsyncClient, engine: Engine, customer_order: tuple[str, str], change: dict[str, Any], field: str
):
    customer_id, _ = customer_order
    before = snapshot(engine)
    response = await http.post("/events", json=cart_event(customer_id, unique("cart")) | change, headers=AUTH)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "review_posted", "order_id": "o", "rating": 6}, "rating"),
        ({"type": "review_posted", "order_id": "o", "rating": 0}, "rating"),
        ({"type": "order_shipped", "order_id": "o", "carrier": "UPS", "tracking_url": "ups.com/1Z"}, "tracking_url"),
        ({"type": "order_shipped", "order_id": "o", "tracking_url": "https://ups.com/1Z"}, "carrier"),
        ({"type": "order_delivered"}, "order_id"),
    ],
)
async def test_each_event_type_is_validated(http: httpx.AsyncClient, event: dict[str, Any], field: str):
    response = await http.post("/events", json={"customer_id": "c", "occurred_at": AT} | event, headers=AUTH)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_no_token_is_401_before_the_body_is_read(http: httpx.AsyncClient):
    response = await http.post("/events", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "event",
    [
        {"type": "site_visit"},
        {"type": "order_delivered", "order_id": "o-unknown"},
        {"type": "checkout_started", "cart_id": "cart-unknown"},
    ],
)
async def test_unknown_customer_order_or_cart_is_404_and_stores_nothing(
    http: httpx.AsyncClient, engine: Engine, customer_order: tuple[str, str], event: dict[str, Any]
):
    customer_id, _ = customer_order
    known = event["type"] != "site_visit"
    body = {"customer_id": customer_id if known else "c-unknown", "occurred_at": AT} | event
    before = snapshot(engine)
    response = await http.post("/events", json=body, headers=AUTH)
    assert response.status_code == 404, response.text
    assert "no " in response.json()["detail"]
    assert snapshot(engine) == before


async def test_another_customers_order_is_404(http: httpx.AsyncClient, customer_order: tuple[str, str]):
    _, order_id = customer_order
    other = new_order()
    assert (await http.post("/orders", json=other, headers=AUTH)).status_code == 202
    event = {"type": "order_delivered", "customer_id": other["customer"]["id"], "order_id": order_id, "occurred_at": AT}
    response = await http.post("/events", json=event, headers=AUTH)
    assert response.status_code == 404


async def test_shipping_and_delivery_are_stored_and_start_the_follow_through(
    http: httpx.AsyncClient, engine: Engine, dev_server: WorkflowEnvironment, customer_order: tuple[str, str]
):
    customer_id, order_id = customer_order
    shipped = {
        "type": "order_shipped",
        "customer_id": customer_id,
        "order_id": order_id,
        "occurred_at": AT,
        "carrier": "UPS",
        "tracking_url": "https://www.ups.com/track?tracknum=1Z999",
    }
    delivered = {"type": "order_delivered", "customer_id": customer_id, "order_id": order_id}

    first = await http.post("/events", json=shipped, headers=AUTH)
    second = await http.post("/events", json=delivered | {"occurred_at": "2026-11-26T12:00:00Z"}, headers=AUTH)

    assert first.status_code == second.status_code == 202
    assert first.json()["workflow_id"] == second.json()["workflow_id"] == f"follow-through-{order_id}"
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        assert (order.carrier, order.tracking_url) == ("UPS", "https://www.ups.com/track?tracknum=1Z999")
        assert order.shipped_at == datetime(2026, 11, 24, 10, tzinfo=UTC)
        assert order.delivered_at == datetime(2026, 11, 26, 12, tzinfo=UTC)
    handle = dev_server.client.get_workflow_handle(f"follow-through-{order_id}")
    journey = FollowThroughInput.model_validate_json(await started_input(handle))
    assert (journey.order_id, journey.customer_id) == (order_id, customer_id)
    assert (await handle.describe()).typed_search_attributes.get(search.ORDER_ID) == order_id
    await handle.terminate("test done")


async def test_a_review_is_stored_and_thanked(
    http: httpx.AsyncClient, engine: Engine, dev_server: WorkflowEnvironment, customer_order: tuple[str, str]
):
    customer_id, order_id = customer_order
    review = {
        "type": "review_posted",
        "customer_id": customer_id,
        "order_id": order_id,
        "occurred_at": AT,
        "rating": 5,
        "text": "Fits perfectly",
        "sku": "JEANS-32",
    }
    wrong_item = await http.post("/events", json=review | {"sku": "SCARF-1"}, headers=AUTH)
    assert wrong_item.status_code == 422 and "sku" in wrong_item.json()["detail"]

    response = await http.post("/events", json=review, headers=AUTH)

    assert response.status_code == 202, response.text
    with Session(engine) as session:
        (stored,) = session.exec(select(Review).where(Review.customer_id == customer_id)).all()
        assert (stored.order_id, stored.sku, stored.rating, stored.text) == (order_id, "JEANS-32", 5, "Fits perfectly")
    workflow_id = response.json()["workflow_id"]
    assert workflow_id and str(stored.id) in workflow_id
    description = await dev_server.client.get_workflow_handle(workflow_id).describe()
    assert description.typed_search_attributes.get(search.CUSTOMER_ID) == customer_id


async def test_temporal_down_is_503_with_the_event_stored_and_a_retry_hands_it_on(
    engine: Engine, dev_server: WorkflowEnvironment, config: JourneysConfig
):
    temporal = FlakyTemporal(dev_server.client, failing=set())
    async with api_client(engine, cast(Client, temporal), config) as http:
        payload = new_order()
        assert (await http.post("/orders", json=payload, headers=AUTH)).status_code == 202
        cart_id = unique("cart")
        event = cart_event(payload["customer"]["id"], cart_id, event_id=unique("ev"))

        temporal.failing = {"start_workflow"}
        down = await http.post("/events", json=event, headers=AUTH)
        assert down.status_code == 503 and "retry" in down.json()["detail"]
        with Session(engine) as session:
            assert session.get(Cart, cart_id) is not None
        stored = snapshot(engine)

        temporal.failing = set()
        again = await http.post("/events", json=event, headers=AUTH)
        assert again.status_code == 200, again.text
        assert again.json() == {"status": "exists", "workflow_id": f"cart-{cart_id}"}
        assert snapshot(engine) == stored
        handle = dev_server.client.get_workflow_handle(f"cart-{cart_id}")
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        await handle.terminate("test done")


async def test_buying_the_cart_marks_it_ordered_and_ends_its_journey_at_once(
    sqlite_engine: Engine, dev_server: WorkflowEnvironment, config: JourneysConfig, channels: Channels
):
    task_queue = unique("tq")
    async with (
        api_client(sqlite_engine, dev_server.client, config, task_queue) as http,
        running_worker(dev_server.client, task_queue, sqlite_engine, config, channels),
    ):
        first = new_order()
        customer_id = first["customer"]["id"]
        assert (await http.post("/orders", json=first, headers=AUTH)).status_code == 202
        cart_id = unique("cart")
        assert (await http.post("/events", json=cart_event(customer_id, cart_id), headers=AUTH)).status_code == 202
        handle = dev_server.client.get_workflow_handle(f"cart-{cart_id}", result_type=JourneyResult)

        order = order_payload(unique("o"), customer_id) | {"cart_id": cart_id}
        assert (await http.post("/orders", json=order, headers=AUTH)).status_code == 202

        result = await eventually(lambda: handle.result(), "the cart journey ends")
        assert result.ended == "purchased"
        with Session(sqlite_engine) as session:
            cart = session.get(Cart, cart_id)
            assert cart is not None and (cart.status, cart.order_id) == (CartStatus.ordered, order["order_id"])
        # A bought cart starts nothing more.
        late = await http.post("/events", json=cart_event(customer_id, cart_id, occurred_at=AT), headers=AUTH)
        assert late.status_code == 202 and late.json()["workflow_id"] is None
