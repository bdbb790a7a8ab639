"""Customers: upsert profiles with consent evidence, export everything stored about one, erase one.

Erasure keeps the shop's records (orders and items, outbox rows for counting) but nulls every personal field,
deletes the consent log and the dates told, and puts the customer's phone and email (hashed) on the suppression
list, so that an address given again later, under any customer id, is never contacted.

A customer whose birthday or dates are given has their dates journey told (started when none runs).
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, IPvAnyAddress, TypeAdapter, ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client
from temporalio.service import RPCError

from api.intake import customer_has_dates, upsert_customer
from api.schemas import CustomerIn
from models.contracts import DatesInput
from models.journeys import JourneysConfig
from models.store import suppress
from models.tables import (
    Cart,
    CartItem,
    Consent,
    Customer,
    CustomerDate,
    Event,
    Message,
    Order,
    OrderItem,
    Review,
    utcnow,
)
from starter.dates import dates_changed
from starter.journeys import signal_or_log

log = logging.getLogger(__name__)

MAX_BATCH = 1000
ERASURE_REASON = "erasure"
CONCURRENT_SIGNALS = 50  # a batch of customers tells their dates journeys this many at a time


class ConsentEvidence(BaseModel):
    """How the customer gave the consent in `sms_consent`/`email_consent`: recorded with each consent row."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, max_length=64)  # e.g. signup_form, pos, import
    wording: str = Field(min_length=1, max_length=5000)  # the exact text the customer agreed to
    wording_version: str = Field(min_length=1, max_length=32)
    ip: IPvAnyAddress | None = None
    user_agent: str | None = Field(None, max_length=500)
    recorded_at: AwareDatetime | None = None  # when they agreed; default: now


class CustomerUpsert(CustomerIn):
    consent: ConsentEvidence | None = None


class UpsertResult(BaseModel):
    upserted: int


_one = TypeAdapter(CustomerUpsert)
_many = TypeAdapter(Annotated[list[CustomerUpsert], Field(min_length=1, max_length=MAX_BATCH)])


def parse_customers(payload: Any) -> list[CustomerUpsert]:
    """One customer object or a list of them; errors are located as `phone` or `1.phone`, like FastAPI's."""
    try:
        return _many.validate_python(payload) if isinstance(payload, list) else [_one.validate_python(payload)]
    except ValidationError as e:
        raise RequestValidationError([error | {"loc": ("body", *error["loc"])} for error in e.errors()]) from None


def upsert_customers(session: Session, customers: list[CustomerUpsert], config: JourneysConfig) -> None:
    """All in one transaction (not committed here): a failure stores none of them."""
    for incoming in customers:
        evidence = incoming.consent
        earlier = session.exec(select(Consent.id).where(Consent.customer_id == incoming.id)).all()
        customer = upsert_customer(
            session, CustomerIn.model_validate(incoming.model_dump(exclude={"consent"}, exclude_unset=True)),
            config, source=evidence.source if evidence else "api",
            wording_version=evidence.wording_version if evidence else None,
        )  # fmt: skip
        if evidence is None:
            continue
        session.flush()
        # The consent rows upsert_customer just added carry this evidence, not the brand's checkout wording.
        added = select(Consent).where(Consent.customer_id == customer.id, col(Consent.id).not_in(earlier))
        for row in session.exec(added).all():
            row.wording, row.wording_version = evidence.wording, evidence.wording_version
            row.ip = str(evidence.ip) if evidence.ip else None
            row.user_agent = evidence.user_agent
            row.recorded_at = evidence.recorded_at or row.recorded_at
            session.add(row)
        session.flush()


def export_customer(session: Session, customer: Customer) -> dict[str, Any]:
    consents = session.exec(
        select(Consent).where(Consent.customer_id == customer.id).order_by(col(Consent.recorded_at), col(Consent.id))
    ).all()
    orders = session.exec(
        select(Order).where(Order.customer_id == customer.id).order_by(col(Order.placed_at), col(Order.id))
    ).all()
    messages = session.exec(select(Message).where(Message.customer_id == customer.id).order_by(col(Message.id))).all()
    # warnings=False: enum columns come back from the database as plain strings, which serialize the same.
    dates = session.exec(
        select(CustomerDate).where(CustomerDate.customer_id == customer.id).order_by(col(CustomerDate.id))
    ).all()
    return {
        "profile": customer.model_dump(mode="json", warnings=False)
        | {"dates": [d.model_dump(mode="json", exclude={"customer_id"}, warnings=False) for d in dates]},
        "consents": [c.model_dump(mode="json", warnings=False) for c in consents],
        "orders": [
            order.model_dump(mode="json", warnings=False)
            | {
                "items": [
                    item.model_dump(mode="json", exclude={"order_id"}, warnings=False)
                    for item in session.exec(
                        select(OrderItem).where(OrderItem.order_id == order.id).order_by(col(OrderItem.id))
                    ).all()
                ]
            }
            for order in orders
        ],
        "messages": [m.model_dump(mode="json", warnings=False) for m in messages],
        "carts": [
            cart.model_dump(mode="json", warnings=False)
            | {
                "items": [
                    item.model_dump(mode="json", exclude={"cart_id"}, warnings=False)
                    for item in session.exec(
                        select(CartItem).where(CartItem.cart_id == cart.id).order_by(col(CartItem.id))
                    ).all()
                ]
            }
            for cart in session.exec(select(Cart).where(Cart.customer_id == customer.id).order_by(col(Cart.created_at)))
        ],
        "reviews": [
            r.model_dump(mode="json", warnings=False)
            for r in session.exec(select(Review).where(Review.customer_id == customer.id).order_by(col(Review.id)))
        ],
        "events": [
            e.model_dump(mode="json", warnings=False)
            for e in session.exec(select(Event).where(Event.customer_id == customer.id).order_by(col(Event.id)))
        ],
    }


def erase_customer(session: Session, customer: Customer) -> None:
    """Null the personal data, drop the consent log, suppress the addresses; not committed here."""
    suppress(session, phone=customer.phone, email=customer.email, reason=ERASURE_REASON)
    for message in session.exec(select(Message).where(Message.customer_id == customer.id)).all():
        message.subject = message.body = None  # the row stays: it is counted (caps, reports)
        message.updated_at = utcnow()
        session.add(message)
    for consent in session.exec(select(Consent).where(Consent.customer_id == customer.id)).all():
        session.delete(consent)
    for told in session.exec(select(CustomerDate).where(CustomerDate.customer_id == customer.id)).all():
        session.delete(told)  # "Sam's birthday" is personal too
    for review in session.exec(select(Review).where(Review.customer_id == customer.id)).all():
        review.text = None  # the rating stays, without the customer's words
        session.add(review)
    for field in ("first_name", "last_name", "phone", "email", "birthday", "timezone"):
        setattr(customer, field, None)
    customer.updated_at = utcnow()
    session.add(customer)


async def tell_dates_journeys(
    client: Client, task_queue: str, config: JourneysConfig, has_dates: dict[str, bool]
) -> None:
    """Tell the customers' dates journeys that their dates changed, starting one for each customer who has dates
    (and none running); raises RPCError when Temporal cannot be reached."""
    limit = asyncio.Semaphore(CONCURRENT_SIGNALS)

    async def tell(customer_id: str, start: bool) -> None:
        async with limit:
            journey = DatesInput(customer_id=customer_id, plan=config.journeys.dates)
            await dates_changed(client, task_queue, journey, start=start)

    await asyncio.gather(*(tell(customer_id, start) for customer_id, start in has_dates.items()))


def customers_router(
    engine: Engine,
    config: JourneysConfig,
    authorized: Callable[..., None],
    task_queue: str,
    temporal: Callable[[], Client],
) -> APIRouter:
    router = APIRouter(prefix="/customers", tags=["customers"], dependencies=[Depends(authorized)])

    @router.post("")
    async def post_customers(
        payload: Annotated[Any, Body(description=f"one customer, or a list of at most {MAX_BATCH}")],
    ) -> UpsertResult:
        """Create or update customers, with consent evidence; all or nothing. Customers whose birthday or dates
        are given have their dates journey told; 503 when Temporal cannot be reached (the customers are stored:
        retry the request)."""
        customers = parse_customers(payload)
        dated = [c.id for c in customers if c.birthday is not None or c.dates is not None]

        def store() -> None:
            for attempt in range(1, 4):
                with Session(engine) as session:
                    try:
                        upsert_customers(session, customers, config)
                        session.commit()
                        return
                    except IntegrityError:
                        # A concurrent request inserted one of these new customers first: again, now updating it.
                        session.rollback()
                        if attempt == 3:
                            raise

        def who_has_dates() -> dict[str, bool]:
            with Session(engine) as session:
                return {customer_id: customer_has_dates(session, customer_id) for customer_id in dated}

        await run_in_threadpool(store)
        if not dated:
            return UpsertResult(upserted=len(customers))
        has_dates = await run_in_threadpool(who_has_dates)
        try:
            await tell_dates_journeys(temporal(), task_queue, config, has_dates)
        except RPCError as e:
            log.error("customers stored, their dates journeys not told: Temporal unreachable: %s", e)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "customers stored; Temporal could not be reached: retry this request",
            ) from e
        return UpsertResult(upserted=len(customers))

    @router.get("/{customer_id}/export")
    def get_export(customer_id: str) -> dict[str, Any]:
        """Everything stored about the customer: profile, consent log, orders with items, outbox."""
        with Session(engine) as session:
            return export_customer(session, _customer(session, customer_id))

    @router.delete("/{customer_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def delete_customer(customer_id: str) -> Response:
        """Erase the customer's personal data and never contact their phone or email again."""

        def erase() -> None:
            with Session(engine) as session:
                erase_customer(session, _customer(session, customer_id))
                session.commit()

        await run_in_threadpool(erase)
        # With no dates left the dates journey ends; were it not told, it would find none at its next reading, and
        # nothing is sent to an erased customer meanwhile (no consent, no address).
        journey = DatesInput(customer_id=customer_id, plan=config.journeys.dates)
        await signal_or_log(
            f"customer {customer_id} erased", dates_changed(temporal(), task_queue, journey, start=False)
        )
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router


def _customer(session: Session, customer_id: str) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer {customer_id!r}")
    return customer
