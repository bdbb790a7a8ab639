"""Customers: upsert profiles with consent evidence, export everything stored about one, erase one.

Erasure keeps the shop's records (orders and items, outbox rows for counting) but nulls every personal field,
deletes the consent log, and puts the customer's phone and email (hashed) on the suppression list, so that an
address given again later, under any customer id, is never contacted.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, IPvAnyAddress, TypeAdapter, ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from api.intake import upsert_customer
from api.schemas import CustomerIn
from models.journeys import JourneysConfig
from models.store import suppress
from models.tables import Consent, Customer, Message, Order, OrderItem, utcnow

MAX_BATCH = 1000
ERASURE_REASON = "erasure"


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
    return {
        "profile": customer.model_dump(mode="json", warnings=False),
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
    for field in ("first_name", "last_name", "phone", "email", "birthday", "timezone"):
        setattr(customer, field, None)
    customer.updated_at = utcnow()
    session.add(customer)


def customers_router(engine: Engine, config: JourneysConfig, authorized: Callable[..., None]) -> APIRouter:
    router = APIRouter(prefix="/customers", tags=["customers"], dependencies=[Depends(authorized)])

    @router.post("")
    async def post_customers(
        payload: Annotated[Any, Body(description=f"one customer, or a list of at most {MAX_BATCH}")],
    ) -> UpsertResult:
        """Create or update customers, with consent evidence; all or nothing."""
        customers = parse_customers(payload)

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

        await run_in_threadpool(store)
        return UpsertResult(upserted=len(customers))

    @router.get("/{customer_id}/export")
    def get_export(customer_id: str) -> dict[str, Any]:
        """Everything stored about the customer: profile, consent log, orders with items, outbox."""
        with Session(engine) as session:
            return export_customer(session, _customer(session, customer_id))

    @router.delete("/{customer_id}", status_code=status.HTTP_204_NO_CONTENT)
    def delete_customer(customer_id: str) -> Response:
        """Erase the customer's personal data and never contact their phone or email again."""
        with Session(engine) as session:
            erase_customer(session, _customer(session, customer_id))
            session.commit()
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router


def _customer(session: Session, customer_id: str) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer {customer_id!r}")
    return customer
