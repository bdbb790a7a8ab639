"""The cross-sell journey on the time-skipping server, with the real activities on SQLite: what goes with the order,
from the catalog as it is when each step is due; nothing at all when nothing fits."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api.catalog import ProductIn, upsert_catalog
from api.intake import store_order
from api.schemas import OrderIn
from models.contracts import JourneyResult, OptOutSignal, PurchaseSignal
from models.tables import Channel, Link, MessageStatus
from starter.cross_sell import cross_sell_id, cross_sell_input, start_cross_sell
from tests.conftest import RecordingChannel
from tests.factories import order_payload
from tests.shop import Shop, decoded_history, running_shop
from workflows.cross_sell import NOTHING_TO_RECOMMEND, CrossSellJourney

STEPS = ["recommend_soon", "recommend_season"]  # config/journeys.toml: 21 and 60 days after the order
SOON, SEASON = timedelta(days=21), timedelta(days=60)

# Seasonless, so that what is recommended does not depend on the day the test server's clock has reached.
# fmt: off
COAT = ProductIn(sku="COAT-ALP", name="Alpine wool coat", category="coats", line="Alpine", color="black",
                 sizes=["S", "M", "L"], price=Decimal("249"), url="https://shop.example/p/alpine-coat")
JACKET = ProductIn(sku="JACKET-ALP", name="Alpine field jacket", category="jackets", line="Alpine", color="black",
                   sizes=["M", "L"], price=Decimal("179"), url="https://shop.example/p/alpine-jacket",
                   image_url="https://cdn.shop.example/i/alpine-jacket.jpg")
SCARF = ProductIn(sku="SCARF-CSH", name="Cashmere scarf", category="scarves", price=Decimal("59"),
                  url="https://shop.example/p/cashmere-scarf")
SHIRT = ProductIn(sku="SHIRT-OXF", name="Oxford shirt", category="shirts", price=Decimal("69"),
                  url="https://shop.example/p/oxford-shirt")  # goes with jeans, not with a coat
# fmt: on


class CrossSells:
    """Orders as intake stores them, each with its cross-sell started as intake starts it."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop

    def stock(self, *products: ProductIn) -> None:
        with Session(self.shop.engine) as session:
            upsert_catalog(session, list(products))
            session.commit()

    async def order(
        self, order_id: str, customer_id: str = "c_ada", sku: str = COAT.sku, name: str = COAT.name, **customer: Any
    ) -> WorkflowHandle[CrossSellJourney, JourneyResult]:
        item = {"sku": sku, "name": name, "quantity": 1, "unit_price": "249.00", "size": "M",
                "color": "black"}  # fmt: skip
        payload = order_payload(order_id, customer_id, **customer) | {"items": [item]}
        with Session(self.shop.engine) as session:
            store_order(session, OrderIn.model_validate(payload), self.shop.config)
        journey = cross_sell_input(self.shop.config, customer_id, order_id)
        assert await start_cross_sell(self.shop.env.client, self.shop.task_queue, journey)
        return self.shop.env.client.get_workflow_handle_for(CrossSellJourney.run, cross_sell_id(order_id))

    async def finish(self, handle: WorkflowHandle[CrossSellJourney, JourneyResult]) -> JourneyResult:
        """Let the journey run its course (virtual time), then read its result."""
        await self.shop.env.sleep(SEASON + timedelta(hours=1))
        return await handle.result()


@pytest_asyncio.fixture
async def shop(time_skipping, sqlite_engine, config, channels) -> AsyncIterator[Shop]:
    async with running_shop(time_skipping, sqlite_engine, config, channels) as shop:
        yield shop


@pytest.fixture
def sales(shop: Shop) -> CrossSells:
    sales = CrossSells(shop)
    sales.stock(COAT, JACKET, SCARF, SHIRT)
    return sales


async def test_each_step_sends_what_goes_with_the_order(shop: Shop, sales: CrossSells, recorder: RecordingChannel):
    handle = await sales.order("o-cs-full")
    started = (await handle.describe()).start_time
    result = await sales.finish(handle)

    assert result.ended == "completed"
    assert [(s.step, s.outcome) for s in result.steps_done] == [(step, "sent by email") for step in STEPS]
    assert SOON <= result.steps_done[0].at - started < SOON + timedelta(minutes=1)
    assert SEASON <= result.steps_done[1].at - started < SEASON + timedelta(minutes=1)
    messages = shop.messages(handle.id)
    assert [(m.step, m.status, m.template) for m in messages] == [
        (step, MessageStatus.sent, "cross_sell/recommendations") for step in STEPS
    ]
    body = recorder.sent[0].body
    # The jacket of the coat's line, size and colour first; the scarf; never the coat bought, nor the shirt.
    assert "Alpine field jacket" in body and "Cashmere scarf" in body
    assert body.index("Alpine field jacket") < body.index("Cashmere scarf")
    assert "Oxford shirt" not in body and "Alpine wool coat" not in body
    assert "https://cdn.shop.example/i/alpine-jacket.jpg" in body
    assert recorder.sent[0].subject == "John, picked to go with your alpine wool coat"
    with Session(shop.engine) as session:
        links = session.exec(select(Link.url).where(col(Link.message_id) == messages[0].id)).all()
    assert {"https://shop.example/p/alpine-jacket", "https://shop.example/p/cashmere-scarf"} <= set(links)


async def test_a_text_names_the_best_pick_and_links_to_it(shop: Shop, sales: CrossSells, recorder: RecordingChannel):
    handle = await sales.order("o-cs-sms", customer_id="c_sms_only", email_consent=False)
    await sales.finish(handle)

    assert [m.channel for m in shop.messages(handle.id)] == [Channel.sms, Channel.sms]
    text = recorder.sent[0].body
    assert "our Alpine field jacket and 1 more" in text and "/r/" in text
    with Session(shop.engine) as session:
        links = session.exec(select(Link.url).where(col(Link.message_id) == shop.messages(handle.id)[0].id)).all()
    assert "https://shop.example/p/alpine-jacket" in links


async def test_nothing_to_recommend_sends_nothing(shop: Shop, sales: CrossSells, recorder: RecordingChannel):
    handle = await sales.order("o-cs-shirtless", customer_id="c_jeans", sku="JEANS-1", name="Jeans")  # no category
    result = await sales.finish(handle)

    assert result.ended == "completed"
    assert [(s.step, s.outcome) for s in result.steps_done] == [(step, NOTHING_TO_RECOMMEND) for step in STEPS]
    assert shop.messages(handle.id) == []
    assert recorder.sent == []
    state = await handle.query(CrossSellJourney.state)
    assert [s.outcome for s in state.steps_done] == ["skipped (nothing to recommend)"] * 2


async def test_each_step_reads_the_catalog_as_it_is_that_day(shop: Shop, sales: CrossSells, recorder: RecordingChannel):
    handle = await sales.order("o-cs-catalog", customer_id="c_catalog")
    await shop.env.sleep(SOON + timedelta(days=1))
    gloves = ProductIn(sku="GLOVES-1", name="Leather gloves", category="gloves", url="https://shop.example/p/gloves")
    retired = JACKET.model_copy(update={"active": False})
    sales.stock(gloves, retired)
    await sales.finish(handle)

    first, second = (m.body or "" for m in shop.messages(handle.id))
    assert "Alpine field jacket" in first and "Leather gloves" not in first
    assert "Alpine field jacket" not in second and "Leather gloves" in second and "Cashmere scarf" in second


@pytest.mark.parametrize(("after", "sent"), [(timedelta(days=3), []), (timedelta(days=30), STEPS[:1])])
async def test_a_purchase_ends_it_at_once(shop: Shop, sales: CrossSells, after: timedelta, sent: list[str]):
    handle = await sales.order(f"o-cs-bought-{after.days}", customer_id=f"c_bought_{after.days}")
    await shop.env.sleep(after)
    await handle.signal(CrossSellJourney.purchase, PurchaseSignal(order_id="o-next"))
    result = await handle.result()

    assert result.ended == "purchased"
    assert [m.step for m in shop.messages(handle.id)] == sent
    description = await handle.describe()
    assert description.close_time is not None
    assert description.close_time - description.start_time < after + timedelta(minutes=1)
    assert description.search_attributes["JourneyStep"] == ["purchased"]


async def test_opting_out_of_every_channel_ends_it(shop: Shop, sales: CrossSells):
    handle = await sales.order("o-cs-leaving", customer_id="c_leaving")
    await shop.env.sleep(timedelta(days=2))
    await handle.signal(CrossSellJourney.opted_out, OptOutSignal(channel=Channel.email))
    assert (await handle.query(CrossSellJourney.state)).ended is None  # SMS is left
    await handle.signal(CrossSellJourney.opted_out, OptOutSignal(channel=Channel.sms))
    result = await handle.result()

    assert result.ended == "opted_out"
    assert shop.messages(handle.id) == []


async def test_state_and_search_attributes_tell_the_operator_what_it_waits_for(shop: Shop, sales: CrossSells):
    handle = await sales.order("o-cs-state", customer_id="c_state")
    await shop.env.sleep(SOON + timedelta(days=2))
    state = await handle.query(CrossSellJourney.state)
    description = await handle.describe()

    assert (state.journey, state.stage, state.next_step) == ("cross_sell", "cross_sell", "recommend_season")
    assert state.next_wake_up == description.start_time + SEASON
    assert [s.step for s in state.steps_done] == ["recommend_soon"]
    attributes = description.search_attributes
    assert (attributes["CustomerId"], attributes["Journey"], attributes["OrderId"]) == (
        ["c_state"],
        ["cross_sell"],
        ["o-cs-state"],
    )
    assert attributes["JourneyStep"] == ["cross_sell"]
    await handle.signal(CrossSellJourney.purchase, PurchaseSignal(order_id="x"))
    await handle.result()


async def test_an_order_has_one_cross_sell(shop: Shop, sales: CrossSells):
    handle = await sales.order("o-cs-once", customer_id="c_once")
    again = cross_sell_input(shop.config, "c_once", "o-cs-once")
    assert await start_cross_sell(shop.env.client, shop.task_queue, again) is False
    await handle.signal(CrossSellJourney.purchase, PurchaseSignal(order_id="x"))
    await handle.result()


async def test_history_carries_no_personal_data(shop: Shop, sales: CrossSells):
    handle = await sales.order("o-cs-pii", customer_id="c_pii", first_name="Zebulon", last_name="Quincey")
    await sales.finish(handle)
    history = decoded_history((await handle.fetch_history()).to_json())

    for secret in ("+14155550100", "john@example.com", "Zebulon", "Quincey", "Alpine field jacket"):
        assert secret not in history
    assert "c_pii" in history and "JACKET-ALP" in history  # ids only: the products by sku


async def test_an_operator_finds_it_by_customer_journey_order_and_stage(dev_server: WorkflowEnvironment, config):
    client, order_id = dev_server.client, f"o-{uuid.uuid4().hex[:10]}"
    assert await start_cross_sell(client, "tq-no-worker", cross_sell_input(config, "c_visible", order_id))
    handle = client.get_workflow_handle(cross_sell_id(order_id))
    try:
        query = f'CustomerId = "c_visible" AND Journey = "cross_sell" AND OrderId = "{order_id}"'
        assert await listed(client, query + ' AND JourneyStep = "cross_sell"') == {handle.id}
        summary = await (await handle.describe()).static_summary()
        assert summary == f"Cross-sell journey of customer c_visible for order {order_id}"
    finally:
        await handle.terminate()


async def listed(client: Client, query: str, polls: int = 100) -> set[str]:
    """The ids a visibility query lists, polled until there are some (visibility is eventually consistent)."""
    for _ in range(polls):
        found = {wf.id async for wf in client.list_workflows(query)}
        if found:
            return found
        await asyncio.sleep(0.1)
    return set()
