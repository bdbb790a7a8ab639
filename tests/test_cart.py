"""The abandoned-cart journey on the time-skipping server, with the real send_message on SQLite: carts are written
to the database as POST /events stores them, then told to the journey through starter.carts."""

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import pytest_asyncio
from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from api.intake import upsert_customer
from api.schemas import CustomerIn
from models import search
from models.contracts import CartInput, CartUpdatedSignal, JourneyResult, OptOutSignal, PurchaseSignal
from models.journeys import JourneysConfig
from models.tables import (
    Cart,
    CartItem,
    CartStatus,
    Channel,
    Coupon,
    Customer,
    Link,
    MessageStatus,
    Order,
    Product,
    Review,
    utcnow,
)
from starter.carts import cart_activity, cart_id_of, open_cart_journeys
from tests.conftest import RecordingChannel
from tests.shop import Shop, decoded_history, running_shop
from workflows.cart import AbandonedCartJourney

QUIET = timedelta(minutes=15)  # config/journeys.toml: the text goes this long after the cart's last update
EMAIL_AFTER = timedelta(hours=24)
ALL_STEPS = ["reminder_sms", "reminder_email"]

PRODUCTS = {
    "COAT-M": Product(
        sku="COAT-M",
        name="Alpine wool coat",
        category="coats",
        url="https://shop.example/p/alpine-coat",
        image_url="https://cdn.shop.example/i/alpine-coat.jpg",
        price=Decimal("249.00"),
    ),
    "SCARF-1": Product(
        sku="SCARF-1",
        name="Cashmere scarf",
        category="scarves",
        url="https://shop.example/p/cashmere-scarf",
        image_url="https://cdn.shop.example/i/cashmere-scarf.jpg",
        price=Decimal("59.00"),
    ),
}
CUSTOMER = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "ada@example.com",
    "phone": "+14155550123",
    "timezone": "America/Los_Angeles",
    "sms_consent": True,
    "email_consent": True,
}


def unique(prefix: str) -> str:
    """The time-skipping server lives for the session, and a cart's workflow id is never reused."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Carts:
    """A shop's cart events as POST /events handles them: the cart is stored, then the journey is told."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self.told: set[str] = set()

    async def update(
        self, cart_id: str, items: dict[str, int], customer_id: str = "c_ada", event: str = "cart_updated", **customer
    ) -> bool:
        store_cart(self.shop.engine, self.shop.config, cart_id, customer_id, items, **customer)
        journey = CartInput(cart_id=cart_id, customer_id=customer_id, plan=self.shop.config.journeys.cart)
        signal = CartUpdatedSignal.model_validate({"event": event, "items": sum(items.values())})
        self.told.add(cart_id)
        return await cart_activity(self.shop.env.client, self.shop.task_queue, journey, signal)

    def handle(self, cart_id: str) -> WorkflowHandle[AbandonedCartJourney, JourneyResult]:
        return self.shop.env.client.get_workflow_handle_for(AbandonedCartJourney.run, cart_id_of(cart_id))

    async def finish(self, cart_id: str) -> JourneyResult:
        """Let the journey run its course (virtual time), then read its result."""
        await self.shop.env.sleep(EMAIL_AFTER + timedelta(hours=1))
        return await self.handle(cart_id).result()


def store_cart(
    engine: Engine, config: JourneysConfig, cart_id: str, customer_id: str, items: dict[str, int], **customer
) -> None:
    with Session(engine) as session:
        upsert_customer(session, CustomerIn(id=customer_id, **(CUSTOMER | customer)), config, source="checkout")
        for product in PRODUCTS.values():
            session.merge(product)
        cart = session.get(Cart, cart_id) or Cart(id=cart_id, customer_id=customer_id, currency="USD")
        cart.updated_at = utcnow()
        session.add(cart)
        session.flush()
        session.exec(delete(CartItem).where(col(CartItem.cart_id) == cart_id))  # type: ignore[call-overload]
        session.add_all(
            CartItem(cart_id=cart_id, sku=sku, name=PRODUCTS[sku].name, quantity=n, unit_price=PRODUCTS[sku].price)
            for sku, n in items.items()
        )
        session.commit()


def store_reviews(engine: Engine) -> None:
    """Other shoppers' reviews of the coat: what the email quotes."""
    with Session(engine) as session:
        session.merge(Customer(id="c_reviewer"))
        session.merge(Product(sku="COAT-M", name="Alpine wool coat"))
        session.merge(
            Order(id="o-rev", customer_id="c_reviewer", placed_at=utcnow(), currency="USD", total=Decimal("249"))
        )
        at = datetime(2026, 11, 1, tzinfo=UTC)
        session.add_all(
            [
                Review(customer_id="c_reviewer", order_id="o-rev", sku="COAT-M", rating=5, text="Warmest coat I own.",
                       posted_at=at),
                Review(customer_id="c_reviewer", order_id="o-rev", sku="COAT-M", rating=4, text=None,
                       posted_at=at + timedelta(days=1)),
            ]
        )  # fmt: skip
        session.commit()


@pytest_asyncio.fixture
async def shop(time_skipping, sqlite_engine, config, channels) -> AsyncIterator[Shop]:
    async with running_shop(time_skipping, sqlite_engine, config, channels) as shop:
        yield shop


@pytest_asyncio.fixture
async def carts(shop: Shop) -> AsyncIterator[Carts]:
    carts = Carts(shop)
    yield carts
    for cart_id in carts.told:  # a journey a failed test left running would hold the next tests' virtual time
        with contextlib.suppress(RPCError):
            await carts.handle(cart_id).terminate("test over")


async def test_the_text_goes_the_quiet_period_after_the_last_of_several_updates(shop: Shop, carts: Carts):
    cart_id = unique("cart-burst")
    first = await shop.env.get_current_time()
    assert await carts.update(cart_id, {"COAT-M": 1})
    await shop.env.sleep(timedelta(minutes=5))
    assert await carts.update(cart_id, {"COAT-M": 1, "SCARF-1": 1})
    await shop.env.sleep(timedelta(minutes=5))
    last = await shop.env.get_current_time()
    assert await carts.update(cart_id, {"COAT-M": 2, "SCARF-1": 1})
    result = await carts.finish(cart_id)

    assert result.ended == "completed"
    sent = {s.step: s.at for s in result.steps_done}
    assert list(sent) == ALL_STEPS
    assert sent["reminder_sms"] - first >= timedelta(minutes=10) + QUIET  # not 15 minutes after the first update
    assert last + QUIET <= sent["reminder_sms"] < last + QUIET + timedelta(minutes=1)
    assert last + EMAIL_AFTER <= sent["reminder_email"] < last + EMAIL_AFTER + timedelta(minutes=1)
    assert [(m.step, m.status, m.channel) for m in shop.messages(cart_id_of(cart_id))] == [
        ("reminder_sms", MessageStatus.sent, "sms"),
        ("reminder_email", MessageStatus.sent, "email"),
    ]


async def test_checkout_started_pushes_the_steps_back_too(shop: Shop, carts: Carts):
    cart_id = unique("cart-checkout")
    await carts.update(cart_id, {"COAT-M": 1})
    await shop.env.sleep(timedelta(minutes=10))
    checkout = await shop.env.get_current_time()
    assert await carts.update(cart_id, {"COAT-M": 1}, event="checkout_started")
    result = await carts.finish(cart_id)

    assert checkout + QUIET <= result.steps_done[0].at < checkout + QUIET + timedelta(minutes=1)


async def test_the_text_has_a_small_discount_and_the_email_the_items_images_ratings_and_a_quote(
    shop: Shop, carts: Carts, recorder: RecordingChannel
):
    cart_id = unique("cart-full")
    store_reviews(shop.engine)
    await carts.update(cart_id, {"COAT-M": 1, "SCARF-1": 2})
    await carts.finish(cart_id)

    text, email = recorder.sent
    assert (text.channel, text.to, email.channel, email.to) == ("sms", "+14155550123", "email", "ada@example.com")
    assert "Ada" in text.body and "Alpine wool coat" in text.body and "10% off" in text.body
    with Session(shop.engine) as session:
        coupon = session.exec(select(Coupon).where(Coupon.message_id == text.message_id)).one()
        links = session.exec(select(Link).where(Link.message_id == email.message_id)).all()
    assert coupon.percent_off == 10 and coupon.code in text.body and coupon.journey == "cart"
    assert email.subject is not None and "Ada" in email.subject
    for expected in (
        "Alpine wool coat",
        "Cashmere scarf",
        "https://cdn.shop.example/i/alpine-coat.jpg",
        "https://cdn.shop.example/i/cashmere-scarf.jpg",
        "Rated 4.5/5 by 2 shoppers",  # the coat's two reviews; the scarf has none
        '"Warmest coat I own."',
        "2 \N{MULTIPLICATION SIGN} 59.00 USD",
        "Total: 367.00 USD",
    ):
        assert expected in email.body
    assert {link.url for link in links} >= {
        "https://shop.example/p/alpine-coat",
        "https://shop.example/p/cashmere-scarf",
        "https://northwind.example/cart",
    }


@pytest.mark.parametrize(
    ("purchase_after", "steps_sent"),
    [(timedelta(minutes=5), []), (timedelta(hours=3), ALL_STEPS[:1])],
    ids=["before-text", "before-email"],
)
async def test_buying_the_cart_during_any_wait_ends_the_journey_at_once(
    shop: Shop, carts: Carts, purchase_after: timedelta, steps_sent: list[str]
):
    cart_id = unique("cart-bought")
    await carts.update(cart_id, {"COAT-M": 1})
    handle = carts.handle(cart_id)
    await shop.env.sleep(purchase_after)
    await handle.signal(AbandonedCartJourney.purchase, PurchaseSignal(order_id="o-cart"))
    result = await handle.result()

    assert result.ended == "purchased"
    assert [m.step for m in shop.messages(handle.id)] == steps_sent
    description = await handle.describe()
    assert description.close_time is not None  # ended by the signal, not at the next wake-up
    assert description.close_time - description.start_time < purchase_after + timedelta(minutes=1)
    assert description.search_attributes["JourneyStep"] == ["purchased"]


async def test_an_emptied_cart_ends_its_journey_and_an_empty_one_starts_none(shop: Shop, carts: Carts):
    emptied, never_filled = unique("cart-emptied"), unique("cart-never-filled")
    await carts.update(emptied, {"COAT-M": 1})
    await shop.env.sleep(timedelta(minutes=5))
    assert await carts.update(emptied, {})  # told
    result = await carts.handle(emptied).result()

    assert result.ended == "emptied" and result.steps_done == []
    assert shop.messages(cart_id_of(emptied)) == []

    assert not await carts.update(never_filled, {})
    with pytest.raises(RPCError, match="not found"):
        await carts.handle(never_filled).describe()


async def test_an_update_after_the_text_pushes_the_email_back_and_never_resends_the_text(
    shop: Shop, carts: Carts, recorder: RecordingChannel
):
    cart_id = unique("cart-later")
    await carts.update(cart_id, {"COAT-M": 1})
    await shop.env.sleep(timedelta(hours=2))  # the text went out at 15 minutes
    later = await shop.env.get_current_time()
    assert await carts.update(cart_id, {"COAT-M": 1, "SCARF-1": 1})
    result = await carts.finish(cart_id)

    assert [s.step for s in result.steps_done] == ALL_STEPS
    assert later + EMAIL_AFTER <= result.steps_done[1].at < later + EMAIL_AFTER + timedelta(minutes=1)
    assert [m.channel for m in recorder.sent] == ["sms", "email"]
    assert "Cashmere scarf" in recorder.sent[1].body  # the email shows the cart as it is now


@pytest.mark.parametrize("how", ["completed", "purchased"])
async def test_a_cart_gets_one_reminder_series(shop: Shop, carts: Carts, recorder: RecordingChannel, how: str):
    cart_id = unique(f"cart-once-{how}")
    await carts.update(cart_id, {"COAT-M": 1})
    handle = carts.handle(cart_id)
    if how == "purchased":
        await handle.signal(AbandonedCartJourney.purchase, PurchaseSignal(order_id="o-once"))
        await handle.result()
    else:
        await carts.finish(cart_id)
    first_run = (await handle.describe()).run_id
    sent = len(recorder.sent)

    assert not await carts.update(cart_id, {"COAT-M": 1, "SCARF-1": 1})
    await shop.env.sleep(EMAIL_AFTER * 2)
    description = await handle.describe()
    assert description.run_id == first_run and description.status == WorkflowExecutionStatus.COMPLETED
    assert len(recorder.sent) == sent


async def test_no_sms_consent_skips_the_text_and_records_it(shop: Shop, carts: Carts, recorder: RecordingChannel):
    cart_id = unique("cart-no-sms")
    await carts.update(cart_id, {"COAT-M": 1}, customer_id="c_no_sms", sms_consent=False)
    result = await carts.finish(cart_id)

    assert [s.outcome for s in result.steps_done] == ["skipped (no_consent)", "sent by email"]
    assert [(m.step, m.status, m.reason, m.channel) for m in shop.messages(cart_id_of(cart_id))] == [
        ("reminder_sms", MessageStatus.skipped, "no_consent", None),  # the step's only channel is sms
        ("reminder_email", MessageStatus.sent, None, "email"),
    ]
    assert [m.channel for m in recorder.sent] == ["email"]


async def test_opting_out_of_every_channel_ends_the_journey_at_once(shop: Shop, carts: Carts):
    cart_id = unique("cart-stop")
    await carts.update(cart_id, {"COAT-M": 1})
    handle = carts.handle(cart_id)
    await shop.env.sleep(timedelta(hours=1))
    await handle.signal(AbandonedCartJourney.opted_out, OptOutSignal(channel=Channel.sms))
    assert (await handle.query(AbandonedCartJourney.state)).ended is None  # email is left
    await handle.signal(AbandonedCartJourney.opted_out, OptOutSignal(channel=Channel.email))
    result = await handle.result()

    assert result.ended == "opted_out"
    assert [m.step for m in shop.messages(handle.id)] == ["reminder_sms"]


async def test_state_and_search_attributes_tell_the_operator_what_it_waits_for(shop: Shop, carts: Carts):
    cart_id = unique("cart-state")
    await carts.update(cart_id, {"COAT-M": 1}, customer_id="c_state")
    handle = carts.handle(cart_id)
    description = await handle.describe()
    assert description.typed_search_attributes.get(search.CUSTOMER_ID) == "c_state"
    assert description.typed_search_attributes.get(search.JOURNEY) == "cart"
    assert description.typed_search_attributes.get(search.JOURNEY_STEP) == "reminder"

    await shop.env.sleep(timedelta(minutes=10))
    updated = await shop.env.get_current_time()
    await carts.update(cart_id, {"COAT-M": 3}, customer_id="c_state")
    state = await handle.query(AbandonedCartJourney.state)
    assert (state.journey, state.stage, state.next_step, state.steps_done) == ("cart", "reminder", "reminder_sms", [])
    assert state.next_wake_up is not None  # moved to the quiet period after this update, not the first
    assert updated + QUIET <= state.next_wake_up < updated + QUIET + timedelta(minutes=1)

    await shop.env.sleep(timedelta(hours=1))
    state = await handle.query(AbandonedCartJourney.state)
    assert (state.next_step, [s.step for s in state.steps_done]) == ("reminder_email", ["reminder_sms"])
    await handle.signal(AbandonedCartJourney.purchase, PurchaseSignal(order_id="o-state"))
    state = await handle.query(AbandonedCartJourney.state)
    assert (state.ended, state.next_step) == ("purchased", None)


async def test_history_carries_no_personal_data(shop: Shop, carts: Carts):
    cart_id = unique("cart-pii")
    store_reviews(shop.engine)
    await carts.update(cart_id, {"COAT-M": 1}, customer_id="c_pii", first_name="Zebulon", last_name="Quincey")
    await carts.finish(cart_id)
    history = decoded_history((await carts.handle(cart_id).fetch_history()).to_json())
    for secret in ("+14155550123", "ada@example.com", "Zebulon", "Quincey", "Alpine wool coat", "Warmest coat"):
        assert secret not in history
    assert "c_pii" in history and cart_id in history


async def test_on_a_real_server_the_journey_is_summarised_and_a_closed_cart_is_not_restarted(
    dev_server: WorkflowEnvironment, config: JourneysConfig
):
    """The dev server keeps what the time-skipping one drops (the summary), and answers signal-with-start on a closed
    id as a real cluster does. No worker: only what the starter asks of the server."""
    cart_id, task_queue = unique("cart-real"), unique("tq")
    journey = CartInput(cart_id=cart_id, customer_id="c_real", plan=config.journeys.cart)
    assert await cart_activity(dev_server.client, task_queue, journey, CartUpdatedSignal(items=1))
    assert await cart_activity(dev_server.client, task_queue, journey, CartUpdatedSignal(items=2))
    handle = dev_server.client.get_workflow_handle(cart_id_of(cart_id))
    description = await handle.describe()
    assert await description.static_summary() == f"Abandoned-cart journey of customer c_real for cart {cart_id}"
    assert description.typed_search_attributes.get(search.JOURNEY_STEP) == "reminder"
    signals = [
        e for e in (await handle.fetch_history()).events if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert len(signals) == 2

    await handle.terminate("test: the journey ended")
    assert not await cart_activity(dev_server.client, task_queue, journey, CartUpdatedSignal(items=3))
    assert (await handle.describe()).run_id == description.run_id


def test_open_carts_are_the_journeys_an_opt_out_tells(engine: Engine, config: JourneysConfig):
    store_cart(engine, config, "cart-open", "c_open", {"COAT-M": 1})
    store_cart(engine, config, "cart-bought", "c_open", {"COAT-M": 1})
    store_cart(engine, config, "cart-old", "c_open", {"COAT-M": 1})
    store_cart(engine, config, "cart-other", "c_other", {"COAT-M": 1})
    with Session(engine) as session:
        bought, old = session.get(Cart, "cart-bought"), session.get(Cart, "cart-old")
        assert bought is not None and old is not None
        bought.status = CartStatus.ordered
        old.updated_at = utcnow() - timedelta(days=5)  # its journey ended days ago
        session.add_all([bought, old])
        session.commit()

        assert open_cart_journeys(session, ["c_open"], config.journeys.cart) == ["cart-cart-open"]
