"""A customer's journeys: what an order starts and ends, and which may be running (whom an opt-out tells).

An order starts the order's post-purchase and cross-sell journeys, a thank-you when it was paid with the customer's
personal code, and the customer's dates journey when the checkout told us dates. It ends the journeys a
purchase has done the job of: the customer's earlier post-purchase and cross-sell journeys, their carts'
reminders, their re-engagement and a pending "thanks for looking".
"""

from datetime import UTC, date, datetime

from sqlmodel import Session, col, select
from temporalio.client import Client

from api.intake import StoredOrder
from api.schemas import OrderIn
from models.contracts import DatesInput, PostPurchaseInput
from models.journeys import JourneysConfig
from models.store import recent_order_ids
from models.tables import Customer, CustomerDate
from starter.campaigns import reengage_id
from starter.carts import cart_id_of, open_cart_journeys
from starter.cross_sell import cross_sell_id, cross_sell_input, start_cross_sell
from starter.dates import dates_changed, dates_id
from starter.follow_through import follow_through_id
from starter.journeys import post_purchase_id, signal_purchase, start_post_purchase
from starter.triggers import browsed_ids, running_triggers, start_trigger, trigger_input


async def order_journeys(
    client: Client, task_queue: str, config: JourneysConfig, order: OrderIn, stored: StoredOrder
) -> bool:
    """Start the order's journeys and tell the ones it ends; True when its post-purchase journey started now.

    Everything here is idempotent (workflow ids are the order's, signals to ended journeys are dropped), so a
    repeated POST of the order, after a 503, does what the first could not."""
    plans, customer_id = config.journeys, stored.customer_id
    journey = PostPurchaseInput(
        customer_id=customer_id, order_id=order.order_id, segment=stored.segment, plan=plans.post_purchase
    )
    started = await start_post_purchase(client, task_queue, journey) is not None
    await start_cross_sell(client, task_queue, cross_sell_input(config, customer_id, order.order_id))
    if stored.personal_code:
        thanks = trigger_input(config, "code_purchase", customer_id, order_id=order.order_id)
        await start_trigger(client, task_queue, thanks)
    if order.customer.birthday is not None or order.customer.dates is not None:
        # Told dates the checkout replaced (even with none) move a running journey; only dates start one.
        has_dates = order.customer.birthday is not None or bool(order.customer.dates)
        await dates_changed(client, task_queue, DatesInput(customer_id=customer_id, plan=plans.dates), start=has_dates)
    await signal_purchase(client, ended_by_purchase(config, stored, datetime.now(UTC).date()), order.order_id)
    return started


def ended_by_purchase(config: JourneysConfig, stored: StoredOrder, today: date) -> list[str]:
    """The ids of the journeys the customer's purchase ends, where they run."""
    browsing = browsed_ids(stored.customer_id, config.journeys.triggers.browsed, today)
    return [
        *(post_purchase_id(order_id) for order_id in stored.earlier_orders),
        *(cross_sell_id(order_id) for order_id in stored.earlier_orders),
        *(cart_id_of(cart_id) for cart_id in stored.open_carts),
        reengage_id(stored.customer_id),
        *browsing,
    ]


def running_journeys(session: Session, customer_ids: list[str], config: JourneysConfig) -> list[str]:
    """The ids of the customers' journeys that may still be running, from the database: whom an opt-out tells.
    Journeys that have ended ignore the signal; each journey checks consent at every send anyway."""
    order_ids = recent_order_ids(session, customer_ids, config.order_journeys_horizon)
    return [
        *(post_purchase_id(order_id) for order_id in order_ids),
        *(cross_sell_id(order_id) for order_id in order_ids),
        *(follow_through_id(order_id) for order_id in order_ids),
        *open_cart_journeys(session, customer_ids, config.journeys.cart),
        *(reengage_id(customer_id) for customer_id in customer_ids),
        *(dates_id(customer_id) for customer_id in with_dates(session, customer_ids)),
        *running_triggers(session, customer_ids, config),
    ]


def with_dates(session: Session, customer_ids: list[str]) -> list[str]:
    """Those of the customers who have a birthday or told us dates: only they may have a dates journey."""
    told = session.exec(select(CustomerDate.customer_id).where(col(CustomerDate.customer_id).in_(customer_ids))).all()
    born = session.exec(
        select(Customer.id).where(col(Customer.id).in_(customer_ids), col(Customer.birthday).is_not(None))
    ).all()
    return sorted({*told, *born})
