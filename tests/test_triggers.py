"""Behaviour triggers on the time-skipping server, with the real activities on SQLite: thanks for looking (a click,
no purchase), thanks for a review, thanks for a purchase with a personal code."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pydantic
import pytest
import pytest_asyncio
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from api.catalog import ProductIn, upsert_catalog
from api.intake import store_order
from api.schemas import OrderIn
from models.contracts import JourneyResult, OptOutSignal, PurchaseSignal, Trigger, TriggerInput
from models.journeys import JourneysConfig
from models.tables import Channel, Coupon, Message, MessageStatus, Review
from starter.triggers import (
    browsed_ids,
    running_triggers,
    start_trigger,
    thanks_for_looking_follows,
    trigger_id,
    trigger_input,
)
from tests.conftest import RecordingChannel
from tests.factories import order_payload
from tests.shop import Shop, decoded_history, running_shop
from tests.test_cross_sell import listed
from workflows.triggers import TriggerJourney

DAY = date(2026, 11, 20)  # the day of a click: in the id of its thanks for looking

# fmt: off
JEANS = ProductIn(sku="JEANS-SLIM", name="Slim jeans", category="jeans", line="Everyday", sizes=["30", "32"],
                  color="indigo", price=Decimal("59.95"), url="https://shop.example/p/slim-jeans")
WIDE = ProductIn(sku="JEANS-WIDE", name="Wide-leg jeans", category="jeans", line="Workwear", sizes=["32"],
                 price=Decimal("69"), url="https://shop.example/p/wide-jeans")
TEE = ProductIn(sku="TEE-EVERYDAY", name="Everyday tee", category="tops", line="Everyday", price=Decimal("24"),
                url="https://shop.example/p/everyday-tee")
SCARF = ProductIn(sku="SCARF-CSH", name="Cashmere scarf", category="scarves", url="https://shop.example/p/scarf")
# fmt: on


class Triggers:
    """What the shop's events start: stored first, as intake stores them, then the trigger is started."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop

    @property
    def config(self) -> JourneysConfig:
        return self.shop.config

    def order(self, order_id: str, customer_id: str, sku: str = JEANS.sku, order: Any = None, **customer: Any) -> None:
        """`order`: fields of the order itself (`coupon_code`, `placed_at`); the rest: the customer's."""
        item = {"sku": sku, "name": "Slim jeans", "quantity": 1, "unit_price": "59.95", "size": "32", "color": "indigo"}
        payload = order_payload(order_id, customer_id, **customer) | {"items": [item]} | (order or {})
        with Session(self.shop.engine) as session:
            store_order(session, OrderIn.model_validate(payload), self.config)

    def review(self, order_id: str, customer_id: str, rating: int, text: str | None) -> int:
        with Session(self.shop.engine) as session:
            # Ids of their own: the test server, and the ids of reviews' journeys on it, outlive each test's database.
            review = Review(
                id=uuid.uuid4().int % 10**9,
                customer_id=customer_id,
                order_id=order_id,
                sku=JEANS.sku,
                rating=rating,
                text=text,
                posted_at=datetime.now(UTC),
            )
            session.add(review)
            session.commit()
            assert review.id is not None
            return review.id

    async def start(self, trigger: Trigger, customer_id: str, *, on: date = DAY, **ids: Any) -> TriggerInput:
        journey = trigger_input(self.config, trigger, customer_id, **ids)
        assert await start_trigger(self.shop.env.client, self.shop.task_queue, journey, on=on)
        return journey

    def handle(self, journey: TriggerInput, on: date = DAY):
        return self.shop.env.client.get_workflow_handle_for(TriggerJourney.run, trigger_id(journey, on))

    async def finish(self, journey: TriggerInput, on: date = DAY) -> JourneyResult:
        """Let the journey run its course (virtual time), then read its result."""
        await self.shop.env.sleep(journey.step.after + timedelta(hours=1))
        return await self.handle(journey, on).result()

    def sent(self, journey: TriggerInput, on: date = DAY) -> list[Message]:
        return self.shop.messages(trigger_id(journey, on))

    def coupon_of(self, message: Message) -> Coupon:
        with Session(self.shop.engine) as session:
            return session.exec(select(Coupon).where(Coupon.message_id == message.id)).one()


@pytest_asyncio.fixture
async def shop(time_skipping, sqlite_engine, config, channels) -> AsyncIterator[Shop]:
    async with running_shop(time_skipping, sqlite_engine, config, channels) as shop:
        with Session(sqlite_engine) as session:
            upsert_catalog(session, [JEANS, WIDE, TEE, SCARF])
            session.commit()
        yield shop


@pytest.fixture
def triggers(shop: Shop) -> Triggers:
    return Triggers(shop)


# --- browsed: a click and no purchase ------------------------------------------------------------------------


async def test_thanks_for_looking_comes_a_day_after_the_click_with_a_code(
    triggers: Triggers, recorder: RecordingChannel
):
    triggers.order("o-looker", "c_looker")
    journey = await triggers.start("browsed", "c_looker")
    started = (await triggers.handle(journey).describe()).start_time
    result = await triggers.finish(journey)

    assert result.ended == "completed"
    assert [(s.step, s.outcome) for s in result.steps_done] == [("thanks_for_looking", "sent by email")]
    assert timedelta(days=1) <= result.steps_done[0].at - started < timedelta(days=1, minutes=1)
    [message] = triggers.sent(journey)
    assert (message.journey, message.template) == ("triggers", "triggers/thanks_for_looking")
    coupon = triggers.coupon_of(message)
    assert (coupon.percent_off, coupon.customer_id, coupon.journey) == (10, "c_looker", "triggers")
    assert coupon.code in recorder.sent[0].body and "10%" in recorder.sent[0].body


async def test_a_purchase_before_the_thanks_for_looking_ends_it_unsent(shop: Shop, triggers: Triggers):
    triggers.order("o-buyer", "c_buyer")
    journey = await triggers.start("browsed", "c_buyer")
    handle = triggers.handle(journey)
    await shop.env.sleep(timedelta(hours=5))
    await handle.signal(TriggerJourney.purchase, PurchaseSignal(order_id="o-bought"))
    result = await handle.result()

    assert result.ended == "purchased" and result.steps_done == []
    assert triggers.sent(journey) == []
    description = await handle.describe()
    assert description.close_time is not None
    assert description.close_time - description.start_time < timedelta(hours=5, minutes=1)
    assert description.search_attributes["JourneyStep"] == ["purchased"]


async def test_at_most_one_thanks_for_looking_a_day_and_never_two_at_once(shop: Shop, triggers: Triggers):
    triggers.order("o-clicker", "c_clicker")
    first = await triggers.start("browsed", "c_clicker", on=DAY)
    again = trigger_input(shop.config, "browsed", "c_clicker")
    client, queue = shop.env.client, shop.task_queue

    assert await start_trigger(client, queue, again, on=DAY) is False  # the same day
    assert await start_trigger(client, queue, again, on=DAY + timedelta(days=1)) is False  # the first still waits
    await triggers.finish(first)
    assert await start_trigger(client, queue, again, on=DAY) is False  # the day's one has been sent
    assert await start_trigger(client, queue, again, on=DAY + timedelta(days=1)) is True
    await triggers.finish(again, on=DAY + timedelta(days=1))
    assert [m.step for m in triggers.sent(first)] == ["thanks_for_looking"]
    assert [m.step for m in triggers.sent(again, DAY + timedelta(days=1))] == ["thanks_for_looking"]


def test_a_purchase_tells_the_thanks_for_looking_that_may_still_run(config: JourneysConfig):
    assert browsed_ids("c_1", config.journeys.triggers.browsed, DAY) == [
        "browsed-c_1-20261120",
        "browsed-c_1-20261119",
        "browsed-c_1-20261118",  # one deferred by quiet hours or the cap may still wait
    ]


# --- reviewed ------------------------------------------------------------------------------------------------


async def test_thanks_for_a_review_with_a_discount_code(triggers: Triggers, recorder: RecordingChannel):
    triggers.order("o-reviewed", "c_reviewer")
    review_id = triggers.review("o-reviewed", "c_reviewer", 5, "Fits like a glove.")
    journey = await triggers.start("reviewed", "c_reviewer", order_id="o-reviewed", review_id=review_id)
    result = await triggers.finish(journey)

    assert result.ended == "completed"
    [message] = triggers.sent(journey)
    assert (message.step, message.status, message.channel) == ("thanks_for_review", MessageStatus.sent, "email")
    coupon = triggers.coupon_of(message)
    assert coupon.percent_off == 15 and coupon.redeemed_order_id is None
    body = recorder.sent[0].body
    assert coupon.code in body and "15% off" in body
    assert '"Fits like a glove."' in body and "sorry" not in body


async def test_an_unhappy_review_gets_an_apology_with_its_discount(triggers: Triggers, recorder: RecordingChannel):
    triggers.order("o-unhappy", "c_unhappy", email_consent=False)
    review_id = triggers.review("o-unhappy", "c_unhappy", 2, "Too small.")
    journey = await triggers.start("reviewed", "c_unhappy", order_id="o-unhappy", review_id=review_id)
    await triggers.finish(journey)

    [message] = triggers.sent(journey)
    assert message.channel == Channel.sms
    assert "Sorry it fell short" in recorder.sent[0].body
    assert triggers.coupon_of(message).code in recorder.sent[0].body


async def test_a_purchase_does_not_cancel_the_thanks_for_a_review(shop: Shop, triggers: Triggers):
    triggers.order("o-rev-buy", "c_rev_buy")
    review_id = triggers.review("o-rev-buy", "c_rev_buy", 4, None)
    journey = await triggers.start("reviewed", "c_rev_buy", order_id="o-rev-buy", review_id=review_id)
    await triggers.handle(journey).signal(TriggerJourney.purchase, PurchaseSignal(order_id="o-more"))
    result = await triggers.finish(journey)

    assert result.ended == "completed"
    assert [m.step for m in triggers.sent(journey)] == ["thanks_for_review"]


# --- code_purchase -------------------------------------------------------------------------------------------


async def test_thanks_for_a_code_purchase_lists_similar_items(
    shop: Shop, triggers: Triggers, recorder: RecordingChannel
):
    triggers.order("o-code", "c_code")
    journey = await triggers.start("code_purchase", "c_code", order_id="o-code")
    result = await triggers.finish(journey)

    assert result.ended == "completed"
    [message] = triggers.sent(journey)
    assert (message.step, message.template) == ("thanks_for_using_code", "triggers/thanks_for_code")
    body = recorder.sent[0].body
    # Other jeans first (the same category), then the tee of the same line; never the jeans bought, nor the scarf.
    assert "Wide-leg jeans" in body and "Everyday tee" in body
    assert body.index("Wide-leg jeans") < body.index("Everyday tee")
    assert "Slim jeans" not in body and "Cashmere scarf" not in body
    history = decoded_history((await triggers.handle(journey).fetch_history()).to_json())
    assert "recommend_products" in history and "JEANS-WIDE" in history


async def test_thanks_for_a_code_purchase_without_similar_items_is_a_plain_thanks(
    triggers: Triggers, recorder: RecordingChannel
):
    triggers.order("o-code-scarf", "c_code_scarf", sku=SCARF.sku)  # nothing like a scarf in the catalog
    journey = await triggers.start("code_purchase", "c_code_scarf", order_id="o-code-scarf")
    await triggers.finish(journey)

    [message] = triggers.sent(journey)
    assert message.status == MessageStatus.sent
    assert "thanks" in recorder.sent[0].subject.lower() and "you might like" not in recorder.sent[0].body


# --- every trigger -------------------------------------------------------------------------------------------


async def test_opting_out_of_every_channel_ends_a_trigger(shop: Shop, triggers: Triggers):
    triggers.order("o-stop", "c_stop")
    journey = await triggers.start("browsed", "c_stop")
    handle = triggers.handle(journey)
    for channel in (Channel.email, Channel.sms):
        await handle.signal(TriggerJourney.opted_out, OptOutSignal(channel=channel))
    result = await handle.result()

    assert result.ended == "opted_out"
    assert triggers.sent(journey) == []


async def test_state_and_search_attributes_name_the_trigger(shop: Shop, triggers: Triggers):
    triggers.order("o-attrs", "c_attrs")
    journey = await triggers.start("code_purchase", "c_attrs", order_id="o-attrs")
    handle = triggers.handle(journey)
    await shop.env.sleep(timedelta(hours=2))
    state = await handle.query(TriggerJourney.state)
    description = await handle.describe()

    assert (state.journey, state.stage, state.next_step) == ("triggers", "code_purchase", "thanks_for_using_code")
    assert state.next_wake_up == description.start_time + journey.step.after
    attributes = description.search_attributes
    assert attributes["CustomerId"] == ["c_attrs"] and attributes["Journey"] == ["triggers"]
    assert attributes["JourneyStep"] == ["code_purchase"] and attributes["OrderId"] == ["o-attrs"]
    await triggers.finish(journey)


async def test_history_carries_no_personal_data(triggers: Triggers):
    triggers.order("o-pii-t", "c_pii_t", first_name="Zebulon", last_name="Quincey")
    review_id = triggers.review("o-pii-t", "c_pii_t", 5, "Secret words")
    journeys = [
        await triggers.start("browsed", "c_pii_t"),
        await triggers.start("reviewed", "c_pii_t", order_id="o-pii-t", review_id=review_id),
        await triggers.start("code_purchase", "c_pii_t", order_id="o-pii-t"),
    ]
    for journey in journeys:
        await triggers.finish(journey)
        history = decoded_history((await triggers.handle(journey).fetch_history()).to_json())
        for secret in ("+14155550100", "john@example.com", "Zebulon", "Quincey", "Secret words", "Wide-leg jeans"):
            assert secret not in history
        assert "c_pii_t" in history


def test_a_trigger_names_what_it_is_about(config: JourneysConfig):
    with pytest.raises(pydantic.ValidationError, match="order_id"):
        trigger_input(config, "code_purchase", "c_1")
    with pytest.raises(pydantic.ValidationError, match="review_id"):
        trigger_input(config, "reviewed", "c_1", order_id="o-1")
    with pytest.raises(pydantic.ValidationError, match="order_id"):
        trigger_input(config, "reviewed", "c_1", review_id=1)


def test_an_opt_out_tells_the_triggers_that_may_still_run(shop: Shop, triggers: Triggers):
    now = datetime.now(UTC).isoformat()
    triggers.order("o-old", "c_many", order={"placed_at": now})
    triggers.order("o-coded", "c_many", order={"placed_at": now, "coupon_code": "WELCOME10"})
    triggers.order("o-coded-long-ago", "c_many", order={"coupon_code": "WELCOME10"})  # placed 2026-11-20
    review_id = triggers.review("o-old", "c_many", 5, None)
    with Session(shop.engine) as session:
        ids = running_triggers(session, ["c_many"], shop.config)

    today = datetime.now(UTC).date()
    assert ids[:3] == browsed_ids("c_many", shop.config.journeys.triggers.browsed, today)
    assert ids[3:] == [f"reviewed-o-old-{review_id}", "code-purchase-o-coded"]


@pytest.mark.parametrize("trigger", ["browsed", "reviewed", "code_purchase"])
async def test_an_operator_finds_each_trigger_by_customer_journey_and_stage(
    dev_server: WorkflowEnvironment, config: JourneysConfig, trigger: Trigger
):
    client, customer_id = dev_server.client, f"c_{uuid.uuid4().hex[:10]}"
    journey = trigger_input(
        config, trigger, customer_id, order_id=f"o-{customer_id}", review_id=uuid.uuid4().int % 10**9
    )
    assert await start_trigger(client, "tq-no-worker", journey, on=DAY)
    handle = client.get_workflow_handle(trigger_id(journey, DAY))
    try:
        query = f'CustomerId = "{customer_id}" AND Journey = "triggers" AND JourneyStep = "{journey.step.stage}"'
        assert await listed(client, f'{query} AND OrderId = "o-{customer_id}"') == {handle.id}
        summary = await (await handle.describe()).static_summary()
        assert summary is not None and summary.startswith(f"Thanks ({trigger}) to customer {customer_id} for ")
    finally:
        await handle.terminate()


@pytest.mark.parametrize(
    ("journey", "kind", "follows"),
    [
        ("cross_sell", "marketing", True),
        ("post_purchase", "marketing", True),
        ("follow_through", "transactional", False),  # a tracking link is no browsing
        ("triggers", "marketing", False),  # else a click on a thanks for looking earns a code every day
        ("cart", "marketing", False),  # the abandoned cart follows its clicks up itself
    ],
)
def test_which_clicks_earn_a_thanks_for_looking(journey: str, kind: str, follows: bool):
    assert thanks_for_looking_follows(journey, kind) is follows
