"""`POST /events`: carts, checkouts, site visits, shipments, deliveries and reviews.

Each event is stored with what it tells (the cart's items, the order's shipment, the review) in one transaction,
then handed to its journey: a cart to its abandoned-cart journey, a shipment or a delivery to the order's
follow-through, a review to the follow-through and to the thank-you trigger. A repeated `event_id` stores
nothing again but is handed on again, so a POST that met an unreachable Temporal (503) recovers when retried.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client
from temporalio.service import RPCError

from api.event_schemas import (
    CartUpdated,
    CheckoutStarted,
    EventIn,
    EventResult,
    OrderDelivered,
    OrderShipped,
    ReviewPosted,
)
from api.intake import line_of, upsert_products
from models.contracts import CartInput, CartUpdatedSignal, FollowThroughInput, OrderEventSignal
from models.journeys import JourneysConfig
from models.tables import Cart, CartItem, CartStatus, Customer, Event, Order, OrderItem, Review
from starter.carts import cart_activity, cart_id_of
from starter.follow_through import follow_through_id, order_event
from starter.journeys import signal_order_event
from starter.triggers import reviewed_id, start_trigger, trigger_input

log = logging.getLogger(__name__)
_event = TypeAdapter[EventIn](EventIn)


class EventRejected(Exception):
    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code, self.detail = status_code, detail


@dataclass(frozen=True)
class StoredEvent:
    created: bool  # False: this event_id was stored before, and nothing was changed
    cart_items: int | None = None  # a cart event for an open cart: how many items it holds now
    review_id: int | None = None


def parse_event(payload: Any) -> EventIn:
    """Errors are located by field (`items.0.quantity`), without pydantic's tag for the event's type."""
    try:
        return _event.validate_python(payload)
    except ValidationError as e:
        errors = []
        for error in e.errors():
            loc = error["loc"]
            if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc = ("type",)
            elif loc and isinstance(payload, dict) and loc[0] == payload.get("type"):
                loc = loc[1:]
            errors.append(error | {"loc": ("body", *loc)})
        raise RequestValidationError(errors) from None


def store_event(session: Session, event: EventIn) -> StoredEvent:
    """Store the event and what it tells, or raise EventRejected (404, 422) having stored nothing."""
    if event.event_id is not None:
        earlier = session.exec(select(Event).where(Event.event_id == event.event_id)).first()
        if earlier is not None:
            if earlier.customer_id != event.customer_id or earlier.type != event.type:
                raise EventRejected(422, f"event_id {event.event_id!r} was already used for another event")
            return StoredEvent(False, *_current(session, event))
    if session.get(Customer, event.customer_id) is None:
        raise EventRejected(404, f"no customer {event.customer_id!r}")
    subject = None
    cart_items = review_id = None
    if isinstance(event, CartUpdated):
        subject, cart_items = event.cart_id, _update_cart(session, event)
    elif isinstance(event, CheckoutStarted):
        subject, cart_items = event.cart_id, _checkout(session, event)
    elif isinstance(event, OrderShipped | OrderDelivered):
        order = _order(session, event.customer_id, event.order_id)
        subject = order.id
        if isinstance(event, OrderShipped):
            order.carrier, order.tracking_url, order.shipped_at = event.carrier, event.tracking_url, event.occurred_at
        else:
            order.delivered_at = event.occurred_at
        session.add(order)
    elif isinstance(event, ReviewPosted):
        subject, review_id = event.order_id, _review(session, event)
    session.add(
        Event(
            event_id=event.event_id,
            customer_id=event.customer_id,
            type=event.type,
            occurred_at=event.occurred_at,
            subject_id=subject,
        )
    )
    session.commit()
    return StoredEvent(True, cart_items, review_id)


def _current(session: Session, event: EventIn) -> tuple[int | None, int | None]:
    """For a repeated event: what the first POST stored, to hand on again."""
    if isinstance(event, CartUpdated | CheckoutStarted) and event.cart_id:
        cart = session.get(Cart, event.cart_id)
        return (_item_count(session, cart.id), None) if cart and cart.status == CartStatus.open else (None, None)
    if isinstance(event, ReviewPosted):
        review = session.exec(
            select(Review.id).where(Review.order_id == event.order_id, Review.customer_id == event.customer_id)
        ).first()
        return None, review
    return None, None


def _update_cart(session: Session, event: CartUpdated) -> int | None:
    """Replace the cart's items; None when the cart was already bought (no journey for it)."""
    cart = session.get(Cart, event.cart_id)
    if cart is not None and cart.customer_id != event.customer_id:
        raise EventRejected(404, f"no cart {event.cart_id!r} of customer {event.customer_id!r}")
    if cart is None:
        cart = Cart(
            id=event.cart_id, customer_id=event.customer_id, created_at=event.occurred_at, updated_at=event.occurred_at
        )
    if cart.status == CartStatus.ordered:
        return None
    if event.occurred_at < cart.updated_at:  # an older update arriving late: the cart keeps the newer items
        return _item_count(session, cart.id)
    upsert_products(session, event.items)
    cart.currency, cart.updated_at = event.currency or cart.currency, event.occurred_at
    session.add(cart)
    session.flush()
    session.exec(delete(CartItem).where(col(CartItem.cart_id) == cart.id))  # type: ignore[call-overload]
    session.add_all(CartItem(cart_id=cart.id, **line_of(item)) for item in event.items)
    return len(event.items)


def _checkout(session: Session, event: CheckoutStarted) -> int | None:
    if event.cart_id is None:
        return None
    cart = session.get(Cart, event.cart_id)
    if cart is None or cart.customer_id != event.customer_id:
        raise EventRejected(404, f"no cart {event.cart_id!r} of customer {event.customer_id!r}")
    if cart.status == CartStatus.ordered:
        return None
    cart.checkout_started_at = event.occurred_at
    session.add(cart)
    return _item_count(session, cart.id)


def _item_count(session: Session, cart_id: str) -> int:
    return len(session.exec(select(CartItem.id).where(CartItem.cart_id == cart_id)).all())


def _order(session: Session, customer_id: str, order_id: str) -> Order:
    order = session.get(Order, order_id)
    if order is None or order.customer_id != customer_id:
        raise EventRejected(404, f"no order {order_id!r} of customer {customer_id!r}")
    return order


def _review(session: Session, event: ReviewPosted) -> int:
    order = _order(session, event.customer_id, event.order_id)
    if event.sku is not None:
        skus = session.exec(select(OrderItem.sku).where(OrderItem.order_id == order.id)).all()
        if event.sku not in skus:
            raise EventRejected(422, f"sku: {event.sku!r} is not an item of order {order.id!r}")
    review = Review(
        customer_id=event.customer_id,
        order_id=order.id,
        sku=event.sku,
        rating=event.rating,
        text=event.text,
        posted_at=event.occurred_at,
    )
    session.add(review)
    session.flush()
    assert review.id is not None
    return review.id


async def hand_on(
    client: Client, task_queue: str, config: JourneysConfig, event: EventIn, stored: StoredEvent
) -> str | None:
    """Start or tell the event's journey; returns its workflow id, if any."""
    plans = config.journeys
    if isinstance(event, CartUpdated | CheckoutStarted) and event.cart_id and stored.cart_items is not None:
        journey = CartInput(cart_id=event.cart_id, customer_id=event.customer_id, plan=plans.cart)
        signal = CartUpdatedSignal(event=event.type, items=stored.cart_items)
        return cart_id_of(event.cart_id) if await cart_activity(client, task_queue, journey, signal) else None
    if isinstance(event, OrderShipped | OrderDelivered):
        follow = FollowThroughInput(order_id=event.order_id, customer_id=event.customer_id, plan=plans.follow_through)
        told = OrderEventSignal(event="shipped" if isinstance(event, OrderShipped) else "delivered")
        await order_event(client, task_queue, follow, told)
        return follow_through_id(event.order_id)
    if isinstance(event, ReviewPosted) and stored.review_id is not None:
        # The follow-through need not ask for the review it has; a journey that has ended is not restarted.
        await signal_order_event(client, follow_through_id(event.order_id), OrderEventSignal(event="reviewed"))
        thanks = trigger_input(
            config, "reviewed", event.customer_id, order_id=event.order_id, review_id=stored.review_id
        )
        await start_trigger(client, task_queue, thanks)
        return reviewed_id(event.order_id, stored.review_id)
    return None


def events_router(
    engine: Engine,
    config: JourneysConfig,
    task_queue: str,
    authorized: Callable[..., None],
    temporal: Callable[[], Client],
) -> APIRouter:
    router = APIRouter(tags=["events"], dependencies=[Depends(authorized)])

    @router.post("/events", status_code=status.HTTP_202_ACCEPTED, responses={200: {"model": EventResult}})
    async def post_event(
        payload: Annotated[Any, Body(description="one event; `type` says which")], response: Response
    ) -> EventResult:
        """Store an event and start or tell its journey (cart, follow-through, review thanks)."""
        event = parse_event(payload)

        def store() -> StoredEvent:
            for attempt in range(1, 4):
                with Session(engine) as session:
                    try:
                        return store_event(session, event)
                    except IntegrityError:
                        # A concurrent POST inserted the same cart, product or event first: again, now updating.
                        session.rollback()
                        if attempt == 3:
                            raise
            raise AssertionError("unreachable")

        try:
            stored = await run_in_threadpool(store)
        except EventRejected as e:
            raise HTTPException(e.status_code, e.detail) from None
        try:
            workflow_id = await hand_on(temporal(), task_queue, config, event, stored)
        except RPCError as e:
            log.error("%s event stored, Temporal unreachable: %s", event.type, e)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "event stored; Temporal could not be reached: retry this request"
            ) from e
        if not stored.created:
            response.status_code = status.HTTP_200_OK
        return EventResult(status="accepted" if stored.created else "exists", workflow_id=workflow_id)

    return router
