"""Tracked links (/r/{token}) and one-click email unsubscribe (/u/{token}), on SQLite and PostgreSQL, with real
journeys on the Temporal dev server where a signal is asserted."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from channels.base import Channels
from models.contracts import JourneyResult, JourneyState, PostPurchaseInput, Segment
from models.journeys import JourneysConfig
from models.links import new_token
from models.settings import Settings
from models.store import consent_status
from models.tables import (
    Channel,
    Click,
    Consent,
    ConsentStatus,
    Customer,
    Link,
    LinkKind,
    Message,
    MessageStatus,
    Order,
    utcnow,
)
from starter.journeys import post_purchase_id, start_post_purchase
from tests.conftest import RecordingChannel
from tests.test_api import running_worker, snapshot, unique
from workflows.post_purchase import PostPurchaseJourney

SHOP_URL = "https://northwind.example/p/jeans-32?color=indigo"
# Our UTM parameters first, the marketer's own kept as they were.
TRACKED_URL = (
    "https://northwind.example/p/jeans-32"
    "?utm_source=comeback&utm_medium=email&utm_campaign=post_purchase&utm_content=thank_you&color=indigo"
)


def app_client(engine: Engine, config: JourneysConfig, client: Any) -> httpx.AsyncClient:
    settings = Settings(COMEBACK_API_TOKEN="t0ken", TEMPORAL_TASK_QUEUE=unique("tq"))
    app = create_app(settings, engine=engine, client=cast(Client, client), config=config)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://comeback.test")


class Unreachable:
    """A Temporal client whose signals fail as when the frontend cannot be reached, or never answer."""

    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang
        self.attempts = 0
        self.told: list[str] = []  # the workflow ids signalled, one entry per attempt

    def get_workflow_handle(self, workflow_id: str) -> Any:
        unreachable = self

        class Handle:
            async def signal(self, *args: Any) -> None:
                unreachable.told.append(workflow_id)
                await unreachable.signal(*args)

        return Handle()

    async def signal(self, *args: Any) -> None:
        self.attempts += 1
        if self.hang:
            await asyncio.Event().wait()
        raise RPCError("failed to connect: connection refused", RPCStatusCode.UNAVAILABLE, b"")


class Journeys:
    """Post-purchase journeys on the dev server, each waiting hours for its first step; a worker answers `state`."""

    def __init__(self, client: Client, task_queue: str, config: JourneysConfig) -> None:
        self.client, self.task_queue, self.config = client, task_queue, config
        self.handles: list[WorkflowHandle[PostPurchaseJourney, JourneyResult]] = []

    async def start(self, customer_id: str, order_id: str) -> WorkflowHandle[PostPurchaseJourney, JourneyResult]:
        plan = self.config.journeys.post_purchase
        journey = PostPurchaseInput(customer_id=customer_id, order_id=order_id, segment=Segment.first_time, plan=plan)
        handle = await start_post_purchase(self.client, self.task_queue, journey)
        assert handle is not None
        self.handles.append(handle)
        return handle

    async def state(self, handle: WorkflowHandle[PostPurchaseJourney, JourneyResult]) -> JourneyState:
        return await handle.query(PostPurchaseJourney.state)


@asynccontextmanager
async def running_journeys(env: WorkflowEnvironment, engine: Engine, config: JourneysConfig) -> AsyncIterator[Journeys]:
    task_queue = unique("tq")
    channels = Channels(RecordingChannel(), RecordingChannel())
    async with running_worker(env.client, task_queue, engine, config, channels):
        journeys = Journeys(env.client, task_queue, config)
        try:
            yield journeys
        finally:
            for handle in journeys.handles:
                with contextlib.suppress(RPCError):  # already ended
                    await handle.terminate("test over")


def add_customer(engine: Engine, customer_id: str, *order_ids: str) -> None:
    """A customer with SMS and email consent and recent orders (the journeys a STOP or unsubscribe tells)."""
    with Session(engine) as session:
        session.add(Customer(id=customer_id, email="ada@example.com", phone="+14155550100"))
        session.commit()
        for channel in Channel:
            session.add(Consent(customer_id=customer_id, channel=channel, status=ConsentStatus.granted, source="test"))
        for order_id in order_ids:
            session.add(
                Order(id=order_id, customer_id=customer_id, placed_at=utcnow(), currency="USD", total=Decimal("10"))
            )
        session.commit()


def add_message(engine: Engine, customer_id: str, workflow_id: str, step: str = "thank_you") -> int:
    """An email a journey sent, with its two links: what the send policy stores when it renders one."""
    with Session(engine) as session:
        message = Message(
            idempotency_key=f"{workflow_id}/{step}",
            customer_id=customer_id,
            channel=Channel.email,
            journey="post_purchase",
            step=step,
            subject="Thanks",
            body="Thanks!",
            status=MessageStatus.sent,
        )
        session.add(message)
        session.commit()
        session.refresh(message)
        assert message.id is not None
        return message.id


def add_link(engine: Engine, message_id: int, kind: LinkKind, url: str | None = None) -> str:
    token = new_token()
    with Session(engine) as session:
        session.add(Link(token=token, message_id=message_id, kind=kind, url=url))
        session.commit()
    return token


def clicks(engine: Engine) -> list[Click]:
    with Session(engine) as session:
        return list(session.exec(select(Click).order_by(col(Click.id))).all())


def email_consent(engine: Engine, customer_id: str) -> tuple[ConsentStatus | None, list[str]]:
    with Session(engine) as session:
        rows = session.exec(
            select(Consent)
            .where(Consent.customer_id == customer_id, Consent.channel == Channel.email)
            .order_by(col(Consent.id))
        ).all()
        return consent_status(session, customer_id, Channel.email), [row.source for row in rows]


@pytest.fixture
def links(engine: Engine) -> dict[LinkKind, str]:
    """A click and an unsubscribe token of one email, whose journey is not running."""
    add_customer(engine, "c1")
    message_id = add_message(engine, "c1", post_purchase_id("gone"))
    return {
        LinkKind.click: add_link(engine, message_id, LinkKind.click, SHOP_URL),
        LinkKind.unsubscribe: add_link(engine, message_id, LinkKind.unsubscribe),
    }


# --- /r/{token} ----------------------------------------------------------------------------------------------


async def test_a_click_is_recorded_redirected_with_utm_and_told_to_the_journey(
    engine: Engine, config: JourneysConfig, dev_server: WorkflowEnvironment
):
    customer_id, order_id = unique("c"), unique("o")
    add_customer(engine, customer_id, order_id)
    message_id = add_message(engine, customer_id, post_purchase_id(order_id))
    token = add_link(engine, message_id, LinkKind.click, SHOP_URL)
    headers = {"X-Forwarded-For": "203.0.113.7, 10.0.0.2", "User-Agent": "Mozilla/5.0 " + "x" * 600}

    async with (
        running_journeys(dev_server, engine, config) as journeys,
        app_client(engine, config, dev_server.client) as http,
    ):
        handle = await journeys.start(customer_id, order_id)
        response = await http.get(f"/r/{token}", headers=headers)

        assert response.status_code == 302, response.text
        assert response.headers["location"] == TRACKED_URL
        assert response.headers["cache-control"] == "no-store"
        [click] = clicks(engine)
        assert (click.token, click.ip) == (token, "203.0.113.7")
        assert click.user_agent == ("Mozilla/5.0 " + "x" * 600)[:500]
        assert click.clicked_at.tzinfo is not None
        state = await journeys.state(handle)
        assert state.clicked == ["thank_you"]
        assert state.ended is None  # a click is news for the journey, not its end

        again = await http.get(f"/r/{token}")  # every visit is stored; the journey counts the step once
        assert again.status_code == 302
        assert [c.ip for c in clicks(engine)] == ["203.0.113.7", "127.0.0.1"]
        assert (await journeys.state(handle)).clicked == ["thank_you"]


async def test_a_click_on_an_ended_journey_is_redirected(
    engine: Engine, config: JourneysConfig, dev_server: WorkflowEnvironment
):
    customer_id, order_id = unique("c"), unique("o")
    add_customer(engine, customer_id, order_id)
    token = add_link(engine, add_message(engine, customer_id, post_purchase_id(order_id)), LinkKind.click, SHOP_URL)
    async with (
        running_journeys(dev_server, engine, config) as journeys,
        app_client(engine, config, dev_server.client) as http,
    ):
        await (await journeys.start(customer_id, order_id)).terminate("ended")
        response = await http.get(f"/r/{token}")
    assert response.status_code == 302
    assert response.headers["location"] == TRACKED_URL
    assert len(clicks(engine)) == 1


@pytest.mark.parametrize("hang", [False, True], ids=["unreachable", "not-answering"])
async def test_a_click_is_redirected_while_temporal_is_down(
    engine: Engine, config: JourneysConfig, links: dict[LinkKind, str], monkeypatch: pytest.MonkeyPatch, hang: bool
):
    monkeypatch.setattr("starter.journeys.BEST_EFFORT_SIGNAL_SECONDS", 0.2)
    temporal = Unreachable(hang=hang)
    async with app_client(engine, config, temporal) as http:
        # The test transport waits for the signal too: a hanging one would hang the test without the time limit.
        response = await asyncio.wait_for(http.get(f"/r/{links[LinkKind.click]}"), timeout=10)
    assert response.status_code == 302
    assert response.headers["location"] == TRACKED_URL
    assert len(clicks(engine)) == 1
    assert temporal.attempts == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/r/nosuchtoken"),
        ("GET", "/r/{unsubscribe}"),  # an unsubscribe token is no redirect
        ("GET", "/u/nosuchtoken"),
        ("POST", "/u/nosuchtoken"),
        ("GET", "/u/{click}"),  # nor is a click token an unsubscribe
        ("POST", "/u/{click}"),
        ("GET", "/r/" + "x" * 300),
    ],
)
async def test_an_unknown_token_is_404_and_stores_nothing(
    engine: Engine, config: JourneysConfig, links: dict[LinkKind, str], method: str, path: str
):
    temporal = Unreachable()
    path = path.format(click=links[LinkKind.click], unsubscribe=links[LinkKind.unsubscribe])
    before = snapshot(engine)
    async with app_client(engine, config, temporal) as http:
        body = {"List-Unsubscribe": "One-Click"} if method == "POST" else None
        response = await http.request(method, path, data=body)
    assert response.status_code == 404
    assert response.text == "Not found"
    assert snapshot(engine) == before
    assert temporal.attempts == 0


# --- /u/{token} ----------------------------------------------------------------------------------------------


async def test_the_unsubscribe_page_asks_and_changes_nothing(
    engine: Engine, config: JourneysConfig, links: dict[LinkKind, str]
):
    temporal = Unreachable()
    before = snapshot(engine)
    async with app_client(engine, config, temporal) as http:
        response = await http.get(f"/u/{links[LinkKind.unsubscribe]}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<form method="post">' in response.text
    assert '<button type="submit">Unsubscribe</button>' in response.text
    assert config.brand.name in response.text
    assert snapshot(engine) == before
    assert email_consent(engine, "c1")[0] == ConsentStatus.granted
    assert temporal.attempts == 0


async def test_one_click_unsubscribe_revokes_email_and_tells_the_running_journeys(
    engine: Engine, config: JourneysConfig, dev_server: WorkflowEnvironment
):
    customer_id, first_order, second_order = unique("c"), unique("o"), unique("o")
    add_customer(engine, customer_id, first_order, second_order)
    message_id = add_message(engine, customer_id, post_purchase_id(first_order))
    token = add_link(engine, message_id, LinkKind.unsubscribe)

    async with (
        running_journeys(dev_server, engine, config) as journeys,
        app_client(engine, config, dev_server.client) as http,
    ):
        handles = [await journeys.start(customer_id, first_order), await journeys.start(customer_id, second_order)]
        # What a mail client sends for RFC 8058: a form-encoded POST to the List-Unsubscribe URL.
        response = await http.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})

        assert response.status_code == 200, response.text
        assert "You are unsubscribed" in response.text
        assert email_consent(engine, customer_id) == (ConsentStatus.revoked, ["test", "list_unsubscribe"])
        with Session(engine) as session:
            assert consent_status(session, customer_id, Channel.sms) == ConsentStatus.granted
        for handle in handles:  # the journey that sent the email and the customer's other running one
            state = await journeys.state(handle)
            assert state.opted_out == [Channel.email]
            assert state.ended is None  # SMS steps remain

        before = snapshot(engine)
        for body in ({"List-Unsubscribe": "One-Click"}, {}):  # a repeat, and the page's button with any body
            again = await http.post(f"/u/{token}", data=body)
            assert again.status_code == 200
        assert snapshot(engine) == before
        assert (await journeys.state(handles[0])).opted_out == [Channel.email]


async def test_unsubscribe_is_stored_while_temporal_is_down(
    engine: Engine, config: JourneysConfig, links: dict[LinkKind, str]
):
    temporal = Unreachable()
    async with app_client(engine, config, temporal) as http:
        response = await http.post(f"/u/{links[LinkKind.unsubscribe]}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert email_consent(engine, "c1") == (ConsentStatus.revoked, ["test", "list_unsubscribe"])
    # Each of the customer's journeys that may run is tried once, the sender's among them; none is retried.
    assert len(temporal.told) == len(set(temporal.told)) and "post-purchase-gone" in temporal.told
