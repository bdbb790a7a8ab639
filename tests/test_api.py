"""The HTTP API against a real Temporal dev server and a real database (SQLite and PostgreSQL)."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import Engine, MetaData, select
from sqlmodel import Session
from sqlmodel import select as sql_select
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities import build_activities
from api.app import create_app
from channels.base import Channels
from models import search
from models.contracts import JourneyResult, PostPurchaseInput, Segment
from models.journeys import JourneysConfig
from models.settings import Settings
from models.tables import Consent, Customer, Order, OrderItem, Product
from tests.conftest import RecordingChannel
from tests.factories import order_payload
from worker import ACTIVITY_THREADS, create_worker

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}
POLL_SECONDS = 10


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def new_order(**customer: Any) -> dict:
    """A sample order with ids of its own: the dev server is shared by every test of the session."""
    return order_payload(unique("o"), unique("c"), **customer)


@asynccontextmanager
async def api_client(
    engine: Engine, client: Client, config: JourneysConfig, task_queue: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(COMEBACK_API_TOKEN=TOKEN, TEMPORAL_TASK_QUEUE=task_queue or unique("tq"))
    app = create_app(settings, engine=engine, client=client, config=config)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://comeback.test") as http:
        yield http


@pytest.fixture
def task_queue() -> str:
    return unique("tq")


@pytest.fixture
async def http(engine: Engine, dev_server: WorkflowEnvironment, config: JourneysConfig, task_queue: str):
    async with api_client(engine, dev_server.client, config, task_queue) as http:
        yield http


@asynccontextmanager
async def running_worker(
    client: Client, task_queue: str, engine: Engine, config: JourneysConfig, channels: Channels
) -> AsyncIterator[None]:
    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        async with create_worker(client, task_queue, build_activities(engine, config, channels), executor):
            yield


def snapshot(engine: Engine) -> dict[str, list[tuple]]:
    """Every row of every table (as the migrations made them), to compare before and after a request."""
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.connect() as conn:
        return {
            table.name: sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
            for table in metadata.sorted_tables
            if table.name != "alembic_version"
        }


def stored_rows(engine: Engine) -> dict[str, int]:
    return {name: len(rows) for name, rows in snapshot(engine).items() if rows}


async def eventually(check: Callable[[], Awaitable[Any]], what: str, seconds: float = POLL_SECONDS) -> Any:
    """Poll (visibility, the outbox) until `check` returns something truthy; bounded."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {seconds}s: {what}")
        await asyncio.sleep(0.1)


async def started_input(handle: WorkflowHandle) -> bytes:
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    (payload,) = started.input.payloads
    return payload.data


# --- POST /orders: a new order -------------------------------------------------------------------------


async def test_new_order_is_stored_and_its_journey_started(
    http: httpx.AsyncClient, engine: Engine, dev_server: WorkflowEnvironment, config: JourneysConfig, task_queue: str
):
    payload = new_order(first_name="Zebulon", last_name="Quincey")
    order_id, customer_id = payload["order_id"], payload["customer"]["id"]

    response = await http.post("/orders", json=payload, headers=AUTH)

    assert response.status_code == 202, response.text
    assert response.json() == {"workflow_id": f"post-purchase-{order_id}", "status": "started"}

    with Session(engine) as session:
        customer = session.get(Customer, customer_id)
        assert customer is not None
        assert (customer.first_name, customer.last_name) == ("Zebulon", "Quincey")
        assert (customer.phone, customer.email) == ("+14155550100", "john@example.com")
        assert customer.timezone == "America/Los_Angeles"

        consents = session.exec(sql_select(Consent).where(Consent.customer_id == customer_id)).all()
        brand = config.brand
        assert sorted((c.channel, c.status, c.source, c.wording, c.wording_version) for c in consents) == [
            ("email", "granted", "checkout", brand.email_consent_wording, brand.consent_wording_version),
            ("sms", "granted", "checkout", brand.sms_consent_wording, brand.consent_wording_version),
        ]
        assert all(c.recorded_at.tzinfo is not None for c in consents)

        product = session.get(Product, "JEANS-32")
        assert product is not None
        assert (product.name, product.category, product.url, product.price) == (
            "Slim jeans",
            "jeans",
            "https://shop.example/p/jeans-32",
            Decimal("59.95"),
        )

        order = session.get(Order, order_id)
        assert order is not None
        assert order.customer_id == customer_id
        assert order.placed_at == datetime(2026, 11, 20, 15, 4, 5, tzinfo=UTC)
        assert (order.currency, order.total, order.coupon_code) == ("USD", Decimal("129.90"), None)

        items = session.exec(sql_select(OrderItem).where(OrderItem.order_id == order_id)).all()
        assert [(i.sku, i.name, i.quantity, i.unit_price, i.size, i.color) for i in items] == [
            ("JEANS-32", "Slim jeans", 1, Decimal("59.95"), "32", "indigo")
        ]
    assert stored_rows(engine) == {"customer": 1, "consent": 2, "product": 1, "order": 1, "orderitem": 1}

    handle = dev_server.client.get_workflow_handle(f"post-purchase-{order_id}")
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    assert description.workflow_type == "PostPurchaseJourney"
    assert description.task_queue == task_queue
    attributes = description.typed_search_attributes
    assert attributes.get(search.CUSTOMER_ID) == customer_id
    assert attributes.get(search.ORDER_ID) == order_id
    assert attributes.get(search.JOURNEY) == "post_purchase"
    assert attributes.get(search.JOURNEY_STEP) == "nurture"

    data = await started_input(handle)
    journey = PostPurchaseInput.model_validate_json(data)
    assert (journey.customer_id, journey.order_id, journey.segment) == (customer_id, order_id, Segment.first_time)
    assert journey.plan == config.journeys.post_purchase
    for personal in ("+14155550100", "4155550100", "john@example.com", "Zebulon", "Quincey", "Slim jeans"):
        assert personal.encode() not in data


async def test_same_order_again_answers_exists_and_changes_nothing(
    http: httpx.AsyncClient, engine: Engine, dev_server: WorkflowEnvironment
):
    payload = new_order()
    first = await http.post("/orders", json=payload, headers=AUTH)
    assert first.status_code == 202, first.text
    workflow_id = first.json()["workflow_id"]
    run_id = (await dev_server.client.get_workflow_handle(workflow_id).describe()).run_id
    before = snapshot(engine)

    # The shop's backend retries with the very same body, and with a changed one: the order is known.
    again = await http.post("/orders", json=payload, headers=AUTH)
    changed = payload | {"total": "1.00", "customer": payload["customer"] | {"first_name": "Jane"}}
    changed_again = await http.post("/orders", json=changed, headers=AUTH)

    for response in (again, changed_again):
        assert response.status_code == 200, response.text
        assert response.json() == {"workflow_id": workflow_id, "status": "exists"}
    assert snapshot(engine) == before
    description = await dev_server.client.get_workflow_handle(workflow_id).describe()
    assert description.run_id == run_id
    assert description.status == WorkflowExecutionStatus.RUNNING


# --- authentication ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}],
    ids=["missing", "wrong", "not-bearer", "no-scheme"],
)
async def test_orders_without_the_right_token_are_refused(
    http: httpx.AsyncClient, engine: Engine, dev_server: WorkflowEnvironment, headers: dict
):
    payload = new_order()
    response = await http.post("/orders", json=payload, headers=headers)

    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert stored_rows(engine) == {}
    with pytest.raises(RPCError) as not_found:
        await dev_server.client.get_workflow_handle(f"post-purchase-{payload['order_id']}").describe()
    assert not_found.value.status == RPCStatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "body",
    [
        {"order_id": "x"},
        {"customer": {"phone": "not a phone"}},
        [],
    ],
    ids=["incomplete", "bad-fields", "not-an-object"],
)
async def test_unauthorized_comes_before_validation(http: httpx.AsyncClient, engine: Engine, body: Any):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = await http.post("/orders", json=body, headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert stored_rows(engine) == {}


async def test_unauthorized_comes_before_json_parsing(http: httpx.AsyncClient, engine: Engine):
    """A caller without the token learns nothing about the endpoint, not even that its JSON is broken."""
    response = await http.post("/orders", content=b'{"order_id": "1001", ', headers=JSON)
    assert stored_rows(engine) == {}
    assert response.status_code == 401, response.text


# --- validation ----------------------------------------------------------------------------------------


def with_customer(**fields: Any) -> Callable[[dict], None]:
    def change(payload: dict) -> None:
        payload["customer"].update(fields)

    return change


def with_order(**fields: Any) -> Callable[[dict], None]:
    def change(payload: dict) -> None:
        payload.update(fields)

    return change


def with_item(**fields: Any) -> Callable[[dict], None]:
    def change(payload: dict) -> None:
        payload["items"][0].update(fields)

    return change


INVALID = {
    "bad-phone": (with_customer(phone="call me maybe"), "customer.phone"),
    "short-phone": (with_customer(phone="555-01"), "customer.phone"),
    "bad-email": (with_customer(email="john@"), "customer.email"),
    "unknown-currency": (with_order(currency="XYZ"), "currency"),
    "negative-total": (with_order(total="-1.00"), "total"),
    "too-many-decimals": (with_order(total="129.9001"), "total"),
    "not-a-number-total": (with_order(total="NaN"), "total"),
    "no-items": (with_order(items=[]), "items"),
    "bad-timezone": (with_customer(timezone="Mars/Base"), "customer.timezone"),
    "naive-placed-at": (with_order(placed_at="2026-11-20T15:04:05"), "placed_at"),
    "unknown-field": (with_order(gift_wrap=True), "gift_wrap"),
    "unknown-customer-field": (with_customer(nickname="JD"), "customer.nickname"),
    "quote-in-customer-id": (with_customer(id="c_42' OR CustomerId != '"), "customer.id"),
    "space-in-order-id": (with_order(order_id="10 01"), "order_id"),
    "zero-quantity": (with_item(quantity=0), "items.0.quantity"),
    "negative-price": (with_item(unit_price="-5"), "items.0.unit_price"),
    "not-a-url": (with_item(url="javascript:alert(1)"), "items.0.url"),
}


@pytest.mark.parametrize(("change", "field"), INVALID.values(), ids=INVALID.keys())
async def test_an_invalid_order_is_refused_naming_the_field(
    http: httpx.AsyncClient, engine: Engine, change: Callable[[dict], None], field: str
):
    payload = new_order()
    change(payload)

    response = await http.post("/orders", json=payload, headers=AUTH)

    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    assert all(isinstance(e["message"], str) and e["message"] for e in errors)
    assert stored_rows(engine) == {}


async def test_every_bad_field_is_named_at_once(http: httpx.AsyncClient, engine: Engine):
    payload = new_order(phone="12", email="not-an-email", timezone="Mars/Base")
    payload |= {"currency": "XYZ", "total": "-3", "placed_at": "2026-11-20T15:04:05", "items": []}

    response = await http.post("/orders", json=payload, headers=AUTH)

    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "invalid request"
    fields = [e["field"] for e in response.json()["errors"]]
    assert sorted(fields) == sorted(
        ["customer.phone", "customer.email", "customer.timezone", "currency", "total", "placed_at", "items"]
    )
    assert stored_rows(engine) == {}


async def test_missing_fields_are_each_named(http: httpx.AsyncClient, engine: Engine):
    response = await http.post("/orders", json={"order_id": "1001"}, headers=AUTH)

    assert response.status_code == 422, response.text
    fields = sorted(e["field"] for e in response.json()["errors"])
    assert fields == ["currency", "customer", "items", "placed_at", "total"]
    assert stored_rows(engine) == {}


async def test_broken_json_is_422(http: httpx.AsyncClient, engine: Engine):
    response = await http.post("/orders", content=b'{"order_id": "1001", ', headers=AUTH | JSON)

    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{"field": "body", "message": "JSON decode error at character 21"}]
    assert stored_rows(engine) == {}


async def test_phone_and_email_are_normalized(http: httpx.AsyncClient, engine: Engine):
    payload = new_order(phone="(415) 555-0100", email="John.Doe@EXAMPLE.com")

    response = await http.post("/orders", json=payload, headers=AUTH)

    assert response.status_code == 202, response.text
    with Session(engine) as session:
        customer = session.get(Customer, payload["customer"]["id"])
        assert customer is not None
        assert customer.phone == "+14155550100"
        assert customer.email == "John.Doe@example.com"


# --- a second purchase ends the first journey ------------------------------------------------------------


async def test_second_order_ends_the_first_journey_as_purchased(
    http: httpx.AsyncClient,
    engine: Engine,
    dev_server: WorkflowEnvironment,
    config: JourneysConfig,
    channels: Channels,
    recorder: RecordingChannel,
    task_queue: str,
):
    client = dev_server.client
    first = new_order()
    customer_id = first["customer"]["id"]
    second = order_payload(unique("o"), customer_id)

    async with running_worker(client, task_queue, engine, config, channels):
        response = await http.post("/orders", json=first, headers=AUTH)
        assert response.status_code == 202, response.text
        first_id = response.json()["workflow_id"]
        # At once, not after visibility has caught up: the journeys to tell are found in the database.
        response = await http.post("/orders", json=second, headers=AUTH)
        assert response.status_code == 202, response.text
        second_id = response.json()["workflow_id"]

        first_handle = client.get_workflow_handle(first_id, result_type=JourneyResult)
        result = await asyncio.wait_for(first_handle.result(), timeout=POLL_SECONDS)
        assert result.ended == "purchased"
        assert result.steps_done == []
        second_handle = client.get_workflow_handle(second_id)
        assert (await second_handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert PostPurchaseInput.model_validate_json(await started_input(second_handle)).segment == Segment.repeat
    assert recorder.sent == []


# --- GET /customers/{id}/messages ----------------------------------------------------------------------


async def test_messages_need_the_token(http: httpx.AsyncClient):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = await http.get("/customers/c_42/messages", headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_messages_of_an_unknown_customer_are_404(http: httpx.AsyncClient):
    response = await http.get(f"/customers/{unique('c')}/messages", headers=AUTH)
    assert response.status_code == 404, response.text


async def test_a_sent_step_is_listed_in_the_customers_messages(
    engine: Engine,
    dev_server: WorkflowEnvironment,
    config: JourneysConfig,
    channels: Channels,
    recorder: RecordingChannel,
    task_queue: str,
):
    at_once = config.model_copy(deep=True)
    at_once.journeys.post_purchase.steps[0].after = timedelta(0)
    payload = new_order()
    customer_id = payload["customer"]["id"]

    async with (
        api_client(engine, dev_server.client, at_once, task_queue) as http,
        running_worker(dev_server.client, task_queue, engine, at_once, channels),
    ):
        response = await http.get(f"/customers/{customer_id}/messages", headers=AUTH)
        assert response.status_code == 404
        response = await http.post("/orders", json=payload, headers=AUTH)
        assert response.status_code == 202, response.text

        async def sent() -> list[dict]:
            response = await http.get(f"/customers/{customer_id}/messages", headers=AUTH)
            assert response.status_code == 200, response.text
            return [m for m in response.json() if m["status"] == "sent"]

        (message,) = await eventually(sent, "the thank-you in the customer's messages")

    assert message["journey"] == "post_purchase"
    assert message["step"] == "thank_you"
    assert message["channel"] == "sms"
    assert message["template"] == "post_purchase/thank_you"
    assert message["provider"] == "recording"
    assert message["provider_id"] == "rec-1"
    assert "John" in message["body"]
    assert message["sent_at"] is not None
    assert (message["kind"], message["reason"], message["not_before"]) == ("marketing", None, None)
    assert message["delivery_status"] is None  # no provider report yet
    assert [m.to for m in recorder.sent] == ["+14155550100"]


async def test_a_customer_without_messages_has_an_empty_list(http: httpx.AsyncClient):
    payload = new_order()
    assert (await http.post("/orders", json=payload, headers=AUTH)).status_code == 202
    response = await http.get(f"/customers/{payload['customer']['id']}/messages", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json() == []


# --- health --------------------------------------------------------------------------------------------


async def test_healthz(http: httpx.AsyncClient):
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# --- Temporal unreachable --------------------------------------------------------------------------------


class FlakyTemporal:
    """The real client, except that the calls named in `failing` fail as when the frontend cannot be reached."""

    def __init__(self, client: Client, failing: set[str]) -> None:
        self._client = client
        self.failing = failing

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _check(self, call: str) -> None:
        if call in self.failing:
            raise RPCError("failed to connect: connection refused", RPCStatusCode.UNAVAILABLE, b"")

    async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
        self._check("start_workflow")
        return await self._client.start_workflow(*args, **kwargs)

    def get_workflow_handle(self, *args: Any, **kwargs: Any) -> Any:
        handle = self._client.get_workflow_handle(*args, **kwargs)
        flaky = self

        class FlakyHandle:
            def __getattr__(self, name: str) -> Any:
                return getattr(handle, name)

            async def signal(self, *args: Any, **kwargs: Any) -> None:
                flaky._check("signal")
                await handle.signal(*args, **kwargs)

        return FlakyHandle()


async def test_temporal_down_is_503_with_the_order_stored_and_a_retry_starts_the_journey(
    engine: Engine, dev_server: WorkflowEnvironment, config: JourneysConfig
):
    temporal = FlakyTemporal(dev_server.client, failing={"start_workflow", "signal"})
    payload = new_order()
    order_id = payload["order_id"]
    workflow_id = f"post-purchase-{order_id}"

    async with api_client(engine, cast(Client, temporal), config) as http:
        response = await http.post("/orders", json=payload, headers=AUTH)

        assert response.status_code == 503, response.text
        assert "retry" in response.json()["detail"]
        with Session(engine) as session:
            assert session.get(Order, order_id) is not None
        assert stored_rows(engine) == {"customer": 1, "consent": 2, "product": 1, "order": 1, "orderitem": 1}
        with pytest.raises(RPCError):
            await dev_server.client.get_workflow_handle(workflow_id).describe()
        stored = snapshot(engine)

        temporal.failing = set()
        response = await http.post("/orders", json=payload, headers=AUTH)

        assert response.status_code == 202, response.text
        assert response.json() == {"workflow_id": workflow_id, "status": "started"}
        assert snapshot(engine) == stored
        description = await dev_server.client.get_workflow_handle(workflow_id).describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
        assert description.typed_search_attributes.get(search.ORDER_ID) == order_id

        response = await http.post("/orders", json=payload, headers=AUTH)
        assert response.status_code == 200
        assert response.json()["status"] == "exists"


async def test_temporal_down_through_the_starter_is_503(
    http: httpx.AsyncClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
):
    async def unreachable(*args: Any, **kwargs: Any) -> None:
        raise RPCError("deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED, b"")

    monkeypatch.setattr("starter.customer_journeys.start_post_purchase", unreachable)
    payload = new_order()

    response = await http.post("/orders", json=payload, headers=AUTH)

    assert response.status_code == 503, response.text
    with Session(engine) as session:
        assert session.get(Order, payload["order_id"]) is not None
    monkeypatch.undo()
    response = await http.post("/orders", json=payload, headers=AUTH)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "started"


async def test_a_purchase_signal_lost_to_an_outage_is_delivered_once_temporal_is_back(
    sqlite_engine: Engine, dev_server: WorkflowEnvironment, config: JourneysConfig, channels: Channels, task_queue: str
):
    temporal = FlakyTemporal(dev_server.client, failing=set())
    first = new_order()
    customer_id = first["customer"]["id"]
    second = order_payload(unique("o"), customer_id)

    async with (
        api_client(sqlite_engine, cast(Client, temporal), config, task_queue) as http,
        running_worker(dev_server.client, task_queue, sqlite_engine, config, channels),
    ):
        response = await http.post("/orders", json=first, headers=AUTH)
        assert response.status_code == 202, response.text
        first_handle = dev_server.client.get_workflow_handle(response.json()["workflow_id"], result_type=JourneyResult)

        temporal.failing = {"signal"}  # the second journey starts; signalling the first one fails
        response = await http.post("/orders", json=second, headers=AUTH)
        assert response.status_code == 503, response.text
        assert (await first_handle.describe()).status == WorkflowExecutionStatus.RUNNING
        temporal.failing = set()
        response = await http.post("/orders", json=second, headers=AUTH)  # the shop's backend retries
        assert response.status_code == 200, response.text

        result = await asyncio.wait_for(first_handle.result(), timeout=3)
        assert result.ended == "purchased"
