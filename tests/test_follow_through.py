"""The order follow-through on the time-skipping server, with the real send_message on SQLite: shipments and
deliveries are written to the order as POST /events stores them, then told to the journey through
starter.follow_through."""

import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
import pytest_asyncio
from sqlmodel import Session
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from api.intake import store_order
from api.schemas import OrderIn
from models import search
from models.contracts import (
    FollowThroughInput,
    FollowThroughPlan,
    JourneyResult,
    MessageKind,
    OptOutSignal,
    OrderEventSignal,
    PurchaseSignal,
)
from models.journeys import JourneysConfig
from models.tables import Channel, Link, MessageStatus, Order, utcnow
from starter.follow_through import follow_through_id, order_event
from tests.conftest import RecordingChannel
from tests.factories import order_payload
from tests.shop import Shop, decoded_history, running_shop
from workflows.follow_through import FollowThroughJourney

TRACKING_URL = "https://www.ups.com/track?tracknum=1Z999AA10123456784"
DELIVERED_STEPS = ["care", "review_request", "help_offer"]


def unique(prefix: str) -> str:
    """The time-skipping server lives for the session, and an order's follow-through id is never reused."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Orders:
    """A shop's order events as POST /events handles them: the order is updated, then the journey is told."""

    def __init__(self, shop: Shop, plan: FollowThroughPlan | None = None) -> None:
        self.shop = shop
        self.plan = plan or shop.config.journeys.follow_through
        self.told: set[str] = set()

    def place(self, customer_id: str = "c_42", **customer) -> str:
        order_id = unique("o")
        with Session(self.shop.engine) as session:
            store_order(
                session, OrderIn.model_validate(order_payload(order_id, customer_id, **customer)), self.shop.config
            )
        return order_id

    async def tell(self, order_id: str, event: str) -> None:
        with Session(self.shop.engine) as session:
            order = session.get(Order, order_id)
            assert order is not None
            if event == "shipped":
                order.carrier, order.tracking_url, order.shipped_at = "UPS", TRACKING_URL, utcnow()
            elif event == "delivered":
                order.delivered_at = utcnow()
            session.add(order)
            session.commit()
            customer_id = order.customer_id
        journey = FollowThroughInput(order_id=order_id, customer_id=customer_id, plan=self.plan)
        signal = OrderEventSignal.model_validate({"event": event})
        await order_event(self.shop.env.client, self.shop.task_queue, journey, signal)
        self.told.add(order_id)

    def handle(self, order_id: str) -> WorkflowHandle[FollowThroughJourney, JourneyResult]:
        return self.shop.env.client.get_workflow_handle_for(FollowThroughJourney.run, follow_through_id(order_id))

    async def finish(self, order_id: str) -> JourneyResult:
        """Let the journey run its course (virtual time), then read its result."""
        await self.shop.env.sleep(self.plan.wait_for_delivery + self.plan.delivered[-1].after + timedelta(days=1))
        return await self.handle(order_id).result()


@pytest_asyncio.fixture
async def shop(time_skipping, sqlite_engine, config, channels) -> AsyncIterator[Shop]:
    async with running_shop(time_skipping, sqlite_engine, config, channels) as shop:
        yield shop


@pytest_asyncio.fixture
async def orders(shop: Shop) -> AsyncIterator[Orders]:
    orders = Orders(shop)
    yield orders
    await end_journeys(orders)


async def end_journeys(orders: Orders) -> None:
    """A journey a failed test left running would hold the next tests' virtual time at its timers."""
    for order_id in orders.told:
        with contextlib.suppress(RPCError):
            await orders.handle(order_id).terminate("test over")


def within_a_minute_after(at: datetime, expected: datetime) -> bool:
    return expected <= at < expected + timedelta(minutes=1)


async def test_shipped_then_delivered_sends_every_step_at_its_time(
    shop: Shop, orders: Orders, recorder: RecordingChannel
):
    order_id = orders.place()
    shipped = await shop.env.get_current_time()
    await orders.tell(order_id, "shipped")
    await shop.env.sleep(timedelta(days=3))
    delivered = await shop.env.get_current_time()
    await orders.tell(order_id, "delivered")
    result = await orders.finish(order_id)

    assert result.ended == "completed"
    sent = {s.step: s.at for s in result.steps_done}
    assert list(sent) == ["tracking", *DELIVERED_STEPS]
    assert within_a_minute_after(sent["tracking"], shipped)  # at once
    for step in orders.plan.delivered:  # each measured from the delivery
        assert within_a_minute_after(sent[step.name], delivered + step.after), step.name
    messages = shop.messages(follow_through_id(order_id))
    assert [(m.step, m.status, m.channel, m.kind) for m in messages] == [
        ("tracking", MessageStatus.sent, "sms", MessageKind.transactional),
        ("care", MessageStatus.sent, "email", MessageKind.transactional),
        ("review_request", MessageStatus.sent, "email", MessageKind.marketing),
        ("help_offer", MessageStatus.sent, "email", MessageKind.transactional),
    ]
    tracking, care, review, help_offer = recorder.sent
    assert "UPS" in tracking.body and order_id in tracking.body
    assert "Slim jeans" in care.body and "care guide" in care.body
    assert f"/reviews?order={order_id}" not in review.body  # a tracked link, not the destination
    assert "Unsubscribe" in review.body and "Unsubscribe" not in help_offer.body  # marketing vs transactional
    assert review.unsubscribe_url is not None and care.unsubscribe_url is None


async def test_the_tracking_link_is_tracked_and_leads_to_the_carrier(
    shop: Shop, orders: Orders, recorder: RecordingChannel
):
    order_id = orders.place()
    await orders.tell(order_id, "shipped")
    await shop.env.sleep(timedelta(minutes=5))

    tracking = recorder.sent[0]
    match = re.search(r"/r/([\w-]+)", tracking.body)
    assert match is not None and TRACKING_URL not in tracking.body
    with Session(shop.engine) as session:
        link = session.get(Link, match.group(1))
    assert link is not None and (link.url, link.message_id) == (TRACKING_URL, tracking.message_id)
    state = await orders.handle(order_id).query(FollowThroughJourney.state)
    assert (state.stage, state.next_step) == ("shipped", "delivery")
    await orders.tell(order_id, "delivered")
    await orders.finish(order_id)


async def test_no_delivery_ends_the_journey_after_the_wait(shop: Shop, orders: Orders):
    order_id = orders.place()
    await orders.tell(order_id, "shipped")
    handle = orders.handle(order_id)
    await shop.env.sleep(timedelta(days=10))
    state = await handle.query(FollowThroughJourney.state)
    started = (await handle.describe()).start_time
    assert (state.stage, state.next_step) == ("shipped", "delivery")
    assert state.next_wake_up is not None
    assert within_a_minute_after(state.next_wake_up, started + orders.plan.wait_for_delivery)
    result = await orders.finish(order_id)

    assert result.ended == "not_delivered"
    assert [s.step for s in result.steps_done] == ["tracking"]
    description = await handle.describe()
    assert description.close_time is not None
    assert within_a_minute_after(description.close_time, started + orders.plan.wait_for_delivery)
    assert description.search_attributes["JourneyStep"] == ["not_delivered"]

    await orders.tell(order_id, "delivered")  # too late: the order's one follow-through has ended
    assert (await handle.describe()).run_id == description.run_id


async def test_delivered_without_shipped_skips_the_tracking(shop: Shop, orders: Orders, recorder: RecordingChannel):
    order_id = orders.place()
    delivered = await shop.env.get_current_time()
    await orders.tell(order_id, "delivered")
    handle = orders.handle(order_id)
    assert (await handle.describe()).typed_search_attributes.get(search.JOURNEY_STEP) == "delivered"
    await orders.tell(order_id, "shipped")  # reported late: no tracking for a parcel already here
    result = await orders.finish(order_id)

    assert [s.step for s in result.steps_done] == DELIVERED_STEPS
    assert within_a_minute_after(result.steps_done[0].at, delivered + timedelta(days=1))
    assert len(recorder.sent) == 3


async def test_delivered_before_the_tracking_went_out_skips_it(shop: Shop, orders: Orders):
    plan = orders.plan  # a shop that sends the tracking two hours after shipping
    orders.plan = plan.model_copy(
        update={"shipped": [plan.shipped[0].model_copy(update={"after": timedelta(hours=2)})]}
    )
    order_id = orders.place()
    await orders.tell(order_id, "shipped")
    await shop.env.sleep(timedelta(hours=1))
    await orders.tell(order_id, "delivered")
    result = await orders.finish(order_id)

    assert [s.step for s in result.steps_done] == DELIVERED_STEPS
    assert "tracking" not in [m.step for m in shop.messages(follow_through_id(order_id))]


async def test_repeated_events_change_nothing(shop: Shop, orders: Orders, recorder: RecordingChannel):
    order_id = orders.place()
    await orders.tell(order_id, "shipped")
    await shop.env.sleep(timedelta(hours=1))
    await orders.tell(order_id, "shipped")
    delivered = await shop.env.get_current_time()
    await orders.tell(order_id, "delivered")
    await shop.env.sleep(timedelta(hours=5))
    await orders.tell(order_id, "delivered")  # the shop posted it twice: the steps keep the first time
    result = await orders.finish(order_id)

    assert [s.step for s in result.steps_done] == ["tracking", *DELIVERED_STEPS]
    assert within_a_minute_after(result.steps_done[1].at, delivered + timedelta(days=1))
    assert len(recorder.sent) == 4


@pytest.mark.parametrize("reviewed_after_delivery", [timedelta(0), timedelta(days=3)], ids=["before", "while-waiting"])
async def test_a_review_skips_the_review_request(
    shop: Shop, orders: Orders, recorder: RecordingChannel, reviewed_after_delivery: timedelta
):
    order_id = orders.place()
    await orders.tell(order_id, "shipped")
    await shop.env.sleep(timedelta(hours=1))  # the tracking went out
    if not reviewed_after_delivery:
        await orders.tell(order_id, "reviewed")  # reviewed before the parcel was even reported delivered
    await orders.tell(order_id, "delivered")
    await shop.env.sleep(reviewed_after_delivery)
    await orders.tell(order_id, "reviewed")  # a repeated review changes nothing either
    result = await orders.finish(order_id)

    assert [(s.step, s.outcome) for s in result.steps_done] == [
        ("tracking", "sent by sms"),
        ("care", "sent by email"),
        ("review_request", "skipped (reviewed)"),
        ("help_offer", "sent by email"),
    ]
    assert [m.step for m in shop.messages(follow_through_id(order_id))] == ["tracking", "care", "help_offer"]
    assert len(recorder.sent) == 3


async def test_a_review_alone_starts_nothing(shop: Shop, orders: Orders):
    order_id = orders.place()
    await orders.tell(order_id, "reviewed")
    with pytest.raises(RPCError, match="not found"):
        await orders.handle(order_id).describe()


async def test_another_purchase_does_not_end_it(shop: Shop, orders: Orders):
    order_id = orders.place()
    await orders.tell(order_id, "delivered")
    await orders.handle(order_id).signal(FollowThroughJourney.purchase, PurchaseSignal(order_id="o-next"))
    result = await orders.finish(order_id)
    assert (result.ended, [s.step for s in result.steps_done]) == ("completed", DELIVERED_STEPS)


@pytest.mark.parametrize("delivered", [False, True], ids=["awaiting-delivery", "after-delivery"])
async def test_opting_out_of_every_channel_ends_it_at_once(shop: Shop, orders: Orders, delivered: bool):
    order_id = orders.place()
    await orders.tell(order_id, "shipped")
    if delivered:
        await shop.env.sleep(timedelta(hours=1))  # the tracking went out
        await orders.tell(order_id, "delivered")
    handle = orders.handle(order_id)
    await shop.env.sleep(timedelta(days=2))
    opted_out = await shop.env.get_current_time()
    for channel in (Channel.sms, Channel.email):
        await handle.signal(FollowThroughJourney.opted_out, OptOutSignal(channel=channel))
    result = await handle.result()

    assert result.ended == "opted_out"
    assert [s.step for s in result.steps_done] == (["tracking", "care"] if delivered else ["tracking"])
    description = await handle.describe()
    assert description.close_time is not None
    assert within_a_minute_after(description.close_time, opted_out)  # at once, not at the next wake-up


async def test_search_attributes_and_history_carry_ids_not_personal_data(shop: Shop, orders: Orders):
    order_id = orders.place(customer_id="c_ft_pii", first_name="Zebulon", last_name="Quincey")
    await orders.tell(order_id, "shipped")
    handle = orders.handle(order_id)
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(search.CUSTOMER_ID) == "c_ft_pii"
    assert attributes.get(search.JOURNEY) == "follow_through"
    assert attributes.get(search.JOURNEY_STEP) == "shipped"
    assert attributes.get(search.ORDER_ID) == order_id
    await orders.tell(order_id, "delivered")
    await orders.finish(order_id)

    history = decoded_history((await handle.fetch_history()).to_json())
    for secret in ("+14155550100", "john@example.com", "Zebulon", "Quincey", "Slim jeans", "ups.com"):
        assert secret not in history
    assert "c_ft_pii" in history and order_id in history


async def test_on_a_real_server_the_journey_is_summarised_and_an_ended_one_is_not_restarted(
    dev_server: WorkflowEnvironment, config: JourneysConfig
):
    """The dev server keeps the summary (the time-skipping one drops it) and answers signal-with-start on a closed id
    as a real cluster does. No worker: only what the starter asks of the server."""
    order_id, task_queue = unique("o-real"), unique("tq")
    journey = FollowThroughInput(order_id=order_id, customer_id="c_real", plan=config.journeys.follow_through)
    await order_event(dev_server.client, task_queue, journey, OrderEventSignal(event="shipped"))
    handle = dev_server.client.get_workflow_handle(follow_through_id(order_id))
    description = await handle.describe()
    summary = f"Order follow-through of customer c_real for order {order_id}"
    assert await description.static_summary() == summary
    assert description.typed_search_attributes.get(search.ORDER_ID) == order_id

    await handle.terminate("test: the journey ended")
    await order_event(dev_server.client, task_queue, journey, OrderEventSignal(event="delivered"))
    after = await handle.describe()
    assert (after.run_id, after.status) == (description.run_id, WorkflowExecutionStatus.TERMINATED)
