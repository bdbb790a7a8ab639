"""Record workflow histories for the replay test: `python -m tests.record_histories`.

Run it after a workflow change that is guarded with workflow.patched(...), then keep the older files
(`git checkout` them back): every file in tests/histories/ must keep replaying against today's code.
"""

import argparse
import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlmodel import Session
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.catalog import ProductIn, upsert_catalog
from api.intake import store_order
from api.schemas import OrderIn
from bench.reengage import insert_inactive_customers
from channels.base import Channels
from channels.outbox import OutboxChannel
from models.contracts import (
    CartInput,
    CartUpdatedSignal,
    ClickedSignal,
    CrossSellInput,
    FollowThroughInput,
    MessageEventSignal,
    OptOutSignal,
    OrderEventSignal,
    PurchaseSignal,
    ReengageInput,
)
from models.db import make_engine, migrate
from models.journeys import load_journeys
from models.settings import ROOT
from models.tables import Cart, CartItem, Channel, Order, Review, utcnow
from starter.binaries import temporal_test_server
from starter.campaigns import reengage_id, start_reengage
from starter.carts import cart_activity, cart_id_of
from starter.cross_sell import cross_sell_id, start_cross_sell
from starter.follow_through import follow_through_id, order_event
from starter.triggers import start_trigger, trigger_id, trigger_input
from tests.conftest import register_search_attributes
from tests.factories import order_payload
from tests.shop import Shop, running_shop

HISTORIES = Path(__file__).parent / "histories"


async def record() -> None:
    config = load_journeys(ROOT / "config" / "journeys.toml")
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server(), data_converter=pydantic_data_converter
    )
    await register_search_attributes(env.client)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/record.db")
        migrate(engine)
        outbox = OutboxChannel()
        async with running_shop(env, engine, config, Channels(outbox, outbox)) as shop:
            full = await shop.order("h-full", customer_id="c_h1")
            await full.result()
            early = await shop.order("h-early", customer_id="c_h2")
            await env.sleep(timedelta(days=10))  # after thank-you and loyalty, waiting for the soft win-back
            await early.signal("purchase", PurchaseSignal(order_id="h-next"))
            await early.result()
            no_consent = await shop.order("h-none", customer_id="c_h3", sms_consent=False, email_consent=False)
            await no_consent.result()
            leaving = await shop.order("h-leaving", customer_id="c_h4")
            await env.sleep(timedelta(days=3))
            for channel in (Channel.sms, Channel.email):
                await leaving.signal("opted_out", OptOutSignal(channel=channel))
            await leaving.result()
            # Due at night in the customer's zone: deferred to 09:00; then a click and a delivery report arrive.
            due = await env.get_current_time() + config.journeys.post_purchase.steps[0].after
            offset = (3 - due.hour) % 24
            offset = offset - 24 if offset > 14 else offset
            night = await shop.order("h-night", customer_id="c_h5", timezone=f"Etc/GMT{-offset:+d}")
            await env.sleep(timedelta(days=8))
            await night.signal("clicked", ClickedSignal(step="thank_you", message_id=1))
            await night.signal("message_event", MessageEventSignal(step="loyalty_review", message_id=2, event="open"))
            await night.result()
            recorded = [
                ("full", full),
                ("purchased_early", early),
                ("no_consent", no_consent),
                ("opted_out", leaving),
                ("deferred_clicked", night),
            ]
            for name, handle in recorded:
                path = HISTORIES / f"post_purchase_{name}.json"
                path.write_text((await handle.fetch_history()).to_json())
                print(f"recorded {path.relative_to(ROOT)}")
    await env.shutdown()


@asynccontextmanager
async def recording_shop() -> AsyncIterator[Shop]:
    """A shop on a fresh time-skipping server and database, with the shipped journeys and the outbox channel."""
    config = load_journeys(ROOT / "config" / "journeys.toml")
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server(), data_converter=pydantic_data_converter
    )
    await register_search_attributes(env.client)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(f"sqlite:///{tmp}/record.db")
            migrate(engine)
            outbox = OutboxChannel()
            async with running_shop(env, engine, config, Channels(outbox, outbox)) as shop:
                yield shop
    finally:
        await env.shutdown()


# Seasonless, so that the recorded recommendations do not depend on the day they are recorded.
RECORDED_CATALOG = [
    ProductIn(sku="H-COAT", name="Alpine wool coat", category="coats", line="Alpine", sizes=["M"], color="black"),
    ProductIn(sku="H-JACKET", name="Alpine field jacket", category="jackets", line="Alpine", sizes=["M"],
              url="https://shop.example/p/alpine-jacket"),
    ProductIn(sku="H-SCARF", name="Cashmere scarf", category="scarves", url="https://shop.example/p/scarf"),
    ProductIn(sku="H-COAT-2", name="Harbour coat", category="coats", url="https://shop.example/p/harbour-coat"),
    ProductIn(sku="H-SOCKS", name="Merino socks", category="socks"),  # nothing goes with socks
]  # fmt: skip


def stock_and_order(shop: Shop, order_id: str, customer_id: str, sku: str = "H-COAT", **order: object) -> None:
    item = {"sku": sku, "name": sku, "quantity": 1, "unit_price": "100.00", "size": "M", "color": "black"}
    with Session(shop.engine) as session:
        upsert_catalog(session, RECORDED_CATALOG)
        store_order(session, OrderIn.model_validate(order_payload(order_id, customer_id) | {"items": [item]} | order),
                    shop.config)  # fmt: skip


async def record_cross_sell() -> None:
    async with recording_shop() as shop:
        client, queue, plan = shop.env.client, shop.task_queue, shop.config.journeys.cross_sell
        runs = {
            "full": ("h-cs-full", "H-COAT"),
            "nothing": ("h-cs-none", "H-SOCKS"),
            "purchased": ("h-cs-buy", "H-COAT"),
        }
        for order_id, sku in runs.values():
            stock_and_order(shop, order_id, f"c_{order_id}", sku)
            await start_cross_sell(
                client, queue, CrossSellInput(customer_id=f"c_{order_id}", order_id=order_id, plan=plan)
            )
        await shop.env.sleep(plan.steps[0].after + timedelta(days=1))  # the first step is done
        await client.get_workflow_handle(cross_sell_id("h-cs-buy")).signal(
            "purchase", PurchaseSignal(order_id="h-next")
        )
        await shop.env.sleep(plan.steps[-1].after)
        for name, (order_id, _) in runs.items():
            await write_history(shop, cross_sell_id(order_id), f"cross_sell_{name}")


async def record_triggers() -> None:
    async with recording_shop() as shop:
        client, queue, config, on = shop.env.client, shop.task_queue, shop.config, date(2026, 11, 20)
        stock_and_order(shop, "h-tr-code", "c_h_code", coupon_code="WELCOME10")
        stock_and_order(shop, "h-tr-review", "c_h_review")
        with Session(shop.engine) as session:
            session.add(Review(id=9001, customer_id="c_h_review", order_id="h-tr-review", sku="H-COAT", rating=5,
                               text="Warm", posted_at=datetime(2026, 11, 21, tzinfo=UTC)))  # fmt: skip
            session.commit()
        journeys = {
            "browsed": trigger_input(config, "browsed", "c_h_code"),
            "browsed_purchased": trigger_input(config, "browsed", "c_h_review"),
            "reviewed": trigger_input(config, "reviewed", "c_h_review", order_id="h-tr-review", review_id=9001),
            "code_purchase": trigger_input(config, "code_purchase", "c_h_code", order_id="h-tr-code"),
        }
        for journey in journeys.values():
            await start_trigger(client, queue, journey, on=on)
        await shop.env.sleep(timedelta(minutes=30))
        await client.get_workflow_handle(trigger_id(journeys["browsed_purchased"], on)).signal(
            "purchase", PurchaseSignal(order_id="h-next")
        )
        await shop.env.sleep(timedelta(days=2))
        for name, journey in journeys.items():
            await write_history(shop, trigger_id(journey, on), f"trigger_{name}")


async def write_history(shop: Shop, workflow_id: str, name: str) -> None:
    handle = shop.env.client.get_workflow_handle(workflow_id)
    await handle.result()  # it has ended: a history that replays to its end
    path = HISTORIES / f"{name}.json"
    path.write_text((await handle.fetch_history()).to_json())
    print(f"recorded {path.relative_to(ROOT)}")


async def record_cart() -> None:
    async with recording_shop() as shop:
        client, queue, plan = shop.env.client, shop.task_queue, shop.config.journeys.cart
        runs = {"full": "h-cart-full", "purchased": "h-cart-buy", "emptied": "h-cart-empty"}

        async def update(cart_id: str, items: int) -> None:
            journey = CartInput(cart_id=cart_id, customer_id=f"c_{cart_id}", plan=plan)
            await cart_activity(client, queue, journey, CartUpdatedSignal(items=items))

        for cart_id in runs.values():
            stock_and_order(shop, f"o-{cart_id}", f"c_{cart_id}")
            with Session(shop.engine) as session:
                session.add(Cart(id=cart_id, customer_id=f"c_{cart_id}", currency="USD"))
                session.add(CartItem(cart_id=cart_id, sku="H-SCARF", name="Cashmere scarf", quantity=1,
                                     unit_price=Decimal("59.00")))  # fmt: skip
                session.commit()
            await update(cart_id, 1)
        await shop.env.sleep(timedelta(minutes=5))
        await update("h-cart-full", 2)  # pushes the text back
        await update("h-cart-empty", 0)
        await shop.env.sleep(timedelta(hours=1))  # the texts went out
        await update("h-cart-full", 3)  # pushes the email back
        await client.get_workflow_handle(cart_id_of("h-cart-buy")).signal("purchase", PurchaseSignal(order_id="h-o"))
        await shop.env.sleep(plan.steps[-1].after + timedelta(days=1))
        for name, cart_id in runs.items():
            await write_history(shop, cart_id_of(cart_id), f"cart_{name}")


async def record_follow_through() -> None:
    async with recording_shop() as shop:
        client, queue, plan = shop.env.client, shop.task_queue, shop.config.journeys.follow_through
        runs = {
            "full": "h-ft-full",
            "reviewed": "h-ft-reviewed",
            "not_delivered": "h-ft-lost",
            "delivered_only": "h-ft-delivered",
        }

        async def tell(order_id: str, event: str) -> None:
            journey = FollowThroughInput(order_id=order_id, customer_id=f"c_{order_id}", plan=plan)
            await order_event(client, queue, journey, OrderEventSignal.model_validate({"event": event}))

        for order_id in runs.values():
            stock_and_order(shop, order_id, f"c_{order_id}")
            with Session(shop.engine) as session:
                order = session.get(Order, order_id)
                assert order is not None
                order.carrier, order.tracking_url = "UPS", "https://www.ups.com/track?tracknum=1Z999AA10123456784"
                order.shipped_at = utcnow()
                session.add(order)
                session.commit()
        for order_id in ("h-ft-full", "h-ft-reviewed", "h-ft-lost"):
            await tell(order_id, "shipped")
        await tell("h-ft-delivered", "delivered")
        await shop.env.sleep(timedelta(days=2))
        for order_id in ("h-ft-full", "h-ft-reviewed"):
            await tell(order_id, "delivered")
        await shop.env.sleep(timedelta(days=3))
        await tell("h-ft-reviewed", "reviewed")  # before its review request: skipped
        await shop.env.sleep(plan.wait_for_delivery + plan.delivered[-1].after)
        for name, order_id in runs.items():
            await write_history(shop, follow_through_id(order_id), f"follow_through_{name}")


async def record_reengage() -> None:
    """Sunset (no open, no click), opened the survey (no contest, no coupon), clicked the contest, purchased."""
    async with recording_shop() as shop:
        client, plan = shop.env.client, shop.config.journeys.reengage
        names = ["sunset", "opened", "clicked", "purchased"]
        ids = dict(zip(names, insert_inactive_customers(shop.engine, len(names), prefix="c-h-reengage"), strict=True))
        for customer_id in ids.values():
            await start_reengage(client, shop.task_queue, ReengageInput(customer_id=customer_id, plan=plan))
        handles = {name: client.get_workflow_handle(reengage_id(customer_id)) for name, customer_id in ids.items()}
        await shop.env.sleep(plan.steps[0].after + timedelta(days=1))  # the survey is sent
        survey = (await handles["opened"].query("state"))["steps_done"][0]["step"]
        await handles["opened"].signal("message_event", MessageEventSignal(step=survey, message_id=1, event="open"))
        await shop.env.sleep(plan.steps[1].after - plan.steps[0].after)  # the contest is sent
        contest = (await handles["clicked"].query("state"))["steps_done"][1]["step"]
        await handles["clicked"].signal("clicked", ClickedSignal(step=contest, message_id=2))
        await handles["purchased"].signal("purchase", PurchaseSignal(order_id="h-back"))
        await shop.env.sleep(plan.sunset_after)
        for name, customer_id in ids.items():
            await write_history(shop, reengage_id(customer_id), f"reengage_{name}")


async def record_dates() -> None:
    """A year that continues as new (a birthday and a told date on one day: the cap defers one; a date moves; a
    purchase changes nothing), a customer whose dates are all removed, one who opts out of every channel."""
    from zoneinfo import ZoneInfo

    from api.intake import upsert_customer
    from api.schemas import CustomerIn
    from models.contracts import DatesInput
    from starter.dates import dates_changed, dates_id

    async with recording_shop() as shop:
        client, queue, plan = shop.env.client, shop.task_queue, shop.config.journeys.dates
        day = (await shop.env.get_current_time()).astimezone(ZoneInfo("America/Chicago")).date() + timedelta(days=30)

        def told(kind: str, on: date) -> dict[str, object]:
            return {"kind": kind, "label": f"Recorded {kind}", "month": on.month, "day": on.day}

        async def tell(customer_id: str, **profile: object) -> None:
            fields = {"id": customer_id, "phone": "+14155550111", "email": "dates@example.com",
                      "timezone": "America/Chicago", "sms_consent": True, "email_consent": True}  # fmt: skip
            with Session(shop.engine) as session:
                upsert_customer(session, CustomerIn.model_validate(fields | profile), shop.config, source="test")
                session.commit()
            start = bool(profile.get("birthday") or profile.get("dates"))
            await dates_changed(client, queue, DatesInput(customer_id=customer_id, plan=plan), start=start)

        await tell("c_h_dates_year", birthday=f"1992-{day:%m-%d}",
                   dates=[told("partner_birthday", day), told("anniversary", day + timedelta(days=60))])  # fmt: skip
        await tell("c_h_dates_removed", dates=[told("other", day)])
        await tell("c_h_dates_leaving", birthday=f"1992-{day:%m-%d}")
        year, leaving = (client.get_workflow_handle(dates_id(c)) for c in ("c_h_dates_year", "c_h_dates_leaving"))
        first_run = (await year.describe()).run_id
        await shop.env.sleep(timedelta(days=2))
        await tell("c_h_dates_removed", dates=[])
        for channel in (Channel.sms, Channel.email):
            await leaving.signal("opted_out", OptOutSignal(channel=channel))
        await shop.env.sleep(timedelta(days=38))  # the birthday, the reminder and the day are done
        await year.signal("purchase", PurchaseSignal(order_id="h-dates"))
        moved = day + timedelta(days=90)
        await tell("c_h_dates_year", dates=[told("partner_birthday", day), told("anniversary", moved)])
        await shop.env.sleep(timedelta(days=366))  # the year is over: the first run continued as new
        await write_history(shop, dates_id("c_h_dates_removed"), "dates_no_dates")
        await write_history(shop, dates_id("c_h_dates_leaving"), "dates_opted_out")
        path = HISTORIES / "dates_year.json"
        path.write_text((await client.get_workflow_handle(year.id, run_id=first_run).fetch_history()).to_json())
        print(f"recorded {path.relative_to(ROOT)}")
        await year.terminate("recorded")  # the next year's run would outlive the worker


# `--only cross_sell` records one journey's histories and leaves every other file as it is.
RECORDERS = {
    "post_purchase": record,
    "cross_sell": record_cross_sell,
    "triggers": record_triggers,
    "cart": record_cart,
    "follow_through": record_follow_through,
    "reengage": record_reengage,
    "dates": record_dates,
}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Record workflow histories into tests/histories/.")
    parser.add_argument("--only", choices=sorted(RECORDERS), action="append", help="these journeys only")
    journeys = parser.parse_args().only or list(RECORDERS)

    async def record_journeys() -> None:
        for journey in journeys:
            await RECORDERS[journey]()

    asyncio.run(record_journeys())
