"""What is stored. Money is Decimal; every timestamp is an aware UTC datetime, on SQLite as on PostgreSQL."""

from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, DateTime, Numeric, String, TypeDecorator, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, hands back aware datetimes: SQLite would otherwise drop the zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; pass an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _timestamp() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


def _money() -> Any:
    return Field(sa_column=Column(Numeric(14, 3), nullable=False))


class Channel(StrEnum):
    sms = "sms"
    email = "email"


class ConsentStatus(StrEnum):
    granted = "granted"
    denied = "denied"
    revoked = "revoked"


class MessageStatus(StrEnum):
    pending = "pending"  # row written, provider not yet confirmed
    sent = "sent"  # the provider accepted it (the outbox channel: recorded)
    skipped = "skipped"  # the send policy decided not to send; `reason` says why
    failed = "failed"  # a permanent provider error
    deferred = "deferred"  # quiet hours or the frequency cap: tried again at `not_before`; `reason` says why


class Customer(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=128)
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=20, index=True)  # E.164
    email: str | None = Field(default=None, max_length=320, index=True)
    timezone: str | None = Field(default=None, max_length=64)
    birthday: date | None = None
    preferred_channel: Channel | None = Field(default=None, sa_type=String(8))
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class Consent(SQLModel, table=True):
    """An append-only log: a customer's consent for a channel is their latest row for it."""

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=128)
    channel: Channel = Field(sa_type=String(8))
    status: ConsentStatus = Field(sa_type=String(16))
    source: str = Field(max_length=64)  # checkout, sms_keyword, api, ...
    wording: str | None = None  # the exact text the customer agreed to
    wording_version: str | None = Field(default=None, max_length=32)
    ip: str | None = Field(default=None, max_length=45)  # where the customer agreed, when known
    user_agent: str | None = Field(default=None, max_length=500)
    recorded_at: datetime = _timestamp()


class Product(SQLModel, table=True):
    sku: str = Field(primary_key=True, max_length=128)
    name: str = Field(max_length=300)
    category: str | None = Field(default=None, max_length=100, index=True)
    url: str | None = Field(default=None, max_length=2000)
    image_url: str | None = Field(default=None, max_length=2000)
    price: Decimal | None = Field(default=None, sa_column=Column(Numeric(14, 3)))
    # What cross-sell matches on: the product line ("Alpine"), its colour, the sizes it comes in ("S,M,L") and the
    # season it is for (spring, summer, autumn, winter; None: all year). A product no longer sold is not offered.
    line: str | None = Field(default=None, max_length=100, index=True)
    color: str | None = Field(default=None, max_length=32)
    sizes: str | None = Field(default=None, max_length=300)
    season: str | None = Field(default=None, max_length=16)
    active: bool = True


class Order(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=128)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=128)
    placed_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    currency: str = Field(max_length=3)
    total: Decimal = _money()
    coupon_code: str | None = Field(default=None, max_length=64)
    # The message whose coupon this order redeemed, and its journey: the order counts as that journey's conversion.
    attributed_message_id: int | None = Field(default=None, foreign_key="message.id")
    attributed_journey: str | None = Field(default=None, max_length=64)
    cart_id: str | None = Field(default=None, max_length=128, index=True)  # the cart this order bought
    # Order follow-through, from the shop's order_shipped and order_delivered events.
    carrier: str | None = Field(default=None, max_length=64)
    tracking_url: str | None = Field(default=None, max_length=2000)
    shipped_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    delivered_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    created_at: datetime = _timestamp()


class OrderItem(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(foreign_key="order.id", index=True, max_length=128)
    sku: str = Field(foreign_key="product.sku", max_length=128)
    name: str = Field(max_length=300)
    quantity: int
    unit_price: Decimal = _money()
    size: str | None = Field(default=None, max_length=32)
    color: str | None = Field(default=None, max_length=32)


class Message(SQLModel, table=True):
    """The outbox. A row is written before a provider is called, under a unique idempotency key."""

    __table_args__ = (UniqueConstraint("idempotency_key", name="uq_message_idempotency_key"),)

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=300)  # {workflow_id}/{step}
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=128)
    channel: Channel | None = Field(default=None, sa_type=String(8))  # None when skipped before a channel was chosen
    journey: str = Field(max_length=64, index=True)
    step: str = Field(max_length=64)
    template: str | None = Field(default=None, max_length=200)
    subject: str | None = Field(default=None, max_length=300)
    body: str | None = None
    status: MessageStatus = Field(sa_type=String(16))
    reason: str | None = Field(default=None, max_length=200)
    kind: str = Field(default="marketing", max_length=16)  # marketing or transactional: which caps and window apply
    not_before: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))  # deferred
    provider: str | None = Field(default=None, max_length=32)
    provider_id: str | None = Field(default=None, max_length=128, index=True)  # status callbacks look it up
    created_at: datetime = _timestamp()
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    updated_at: datetime = _timestamp()
    # What the provider last reported (Twilio: queued, sent, delivered, undelivered, failed, read); only moves forward.
    delivery_status: str | None = Field(default=None, max_length=16)
    delivery_updated_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


class WebhookReceipt(SQLModel, table=True):
    """One row per provider delivery handled: a duplicate delivery hits the unique constraint and changes nothing."""

    __table_args__ = (UniqueConstraint("provider", "key", name="uq_webhookreceipt_provider_key"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=16)
    key: str = Field(max_length=200)
    received_at: datetime = _timestamp()


class Suppression(SQLModel, table=True):
    """Addresses never to be contacted again (an erased customer's): only a SHA-256 of the normalized address."""

    __table_args__ = (UniqueConstraint("key_hash", name="uq_suppression_key_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    key_hash: str = Field(max_length=64)  # sha256 hex of the E.164 phone or the lowercased email
    channel: Channel = Field(sa_type=String(8))
    reason: str = Field(max_length=64)
    created_at: datetime = _timestamp()


class LinkKind(StrEnum):
    click = "click"  # /r/{token}: recorded, then redirected to `url`
    unsubscribe = "unsubscribe"  # /u/{token}: one-click email unsubscribe (List-Unsubscribe)


class Link(SQLModel, table=True):
    """A per-recipient link made when a message is rendered: the token is random (80 bits) and says nothing."""

    token: str = Field(primary_key=True, max_length=32)
    message_id: int = Field(foreign_key="message.id", index=True)
    kind: LinkKind = Field(sa_type=String(16))
    url: str | None = Field(default=None, max_length=2000)  # the destination, without our UTM parameters
    created_at: datetime = _timestamp()


class Click(SQLModel, table=True):
    """Every visit of a link; unique clicks are the distinct links clicked."""

    id: int | None = Field(default=None, primary_key=True)
    token: str = Field(foreign_key="link.token", index=True, max_length=32)
    clicked_at: datetime = _timestamp()
    ip: str | None = Field(default=None, max_length=45)
    user_agent: str | None = Field(default=None, max_length=500)


class Coupon(SQLModel, table=True):
    """A unique, single-use code made for one message; redeemed by the order that quotes it."""

    code: str = Field(primary_key=True, max_length=32)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=128)
    message_id: int = Field(foreign_key="message.id", index=True)
    journey: str = Field(max_length=64)
    percent_off: int
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    created_at: datetime = _timestamp()
    redeemed_order_id: str | None = Field(default=None, foreign_key="order.id", max_length=128, unique=True)
    redeemed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


class CouponRejection(SQLModel, table=True):
    """A code quoted with an order that could not be redeemed (unknown, expired, already used); the order stands."""

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(foreign_key="order.id", index=True, max_length=128)
    code: str = Field(max_length=64)
    reason: str = Field(max_length=32)
    rejected_at: datetime = _timestamp()


class Reply(SQLModel, table=True):
    """An inbound text that is no keyword (STOP, START, HELP): kept for the shop, and told to the customer's
    conversation when one runs."""

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str | None = Field(default=None, foreign_key="customer.id", index=True, max_length=128)
    sender: str = Field(max_length=20)  # E.164, also for a number we do not know
    body: str
    provider_key: str | None = Field(default=None, max_length=200, unique=True)  # duplicate deliveries
    received_at: datetime = _timestamp()


class CartStatus(StrEnum):
    open = "open"
    ordered = "ordered"  # an order quoting the cart bought it


class Cart(SQLModel, table=True):
    """A customer's cart as the shop last reported it (cart_updated replaces its items)."""

    id: str = Field(primary_key=True, max_length=128)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=128)
    status: CartStatus = Field(default=CartStatus.open, sa_type=String(16))
    currency: str | None = Field(default=None, max_length=3)
    order_id: str | None = Field(default=None, max_length=128)  # the order that bought it
    checkout_started_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class CartItem(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    cart_id: str = Field(foreign_key="cart.id", index=True, max_length=128)
    sku: str = Field(foreign_key="product.sku", max_length=128)
    name: str = Field(max_length=300)
    quantity: int
    unit_price: Decimal = _money()
    size: str | None = Field(default=None, max_length=32)
    color: str | None = Field(default=None, max_length=32)


class Event(SQLModel, table=True):
    """Every event the shop posted (POST /events): what re-engagement reads to tell who is inactive. The shop's
    `event_id`, when it sends one, makes a repeated POST a no-op."""

    __table_args__ = (UniqueConstraint("event_id", name="uq_event_event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str | None = Field(default=None, max_length=128)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=128)
    type: str = Field(max_length=32, index=True)
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    subject_id: str | None = Field(default=None, max_length=128)  # the cart or order it is about
    received_at: datetime = _timestamp()


class Review(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=128)
    order_id: str = Field(foreign_key="order.id", index=True, max_length=128)
    sku: str | None = Field(default=None, foreign_key="product.sku", index=True, max_length=128)
    rating: int  # 1-5
    text: str | None = None
    posted_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class DateKind(StrEnum):
    birthday = "birthday"  # the customer's own (Customer.birthday): a reward on the day
    partner_birthday = "partner_birthday"  # dates the customer told us: a reminder a week ahead, then the day
    anniversary = "anniversary"
    other = "other"


class CustomerDate(SQLModel, table=True):
    """A yearly date the customer told us (a partner's birthday, a wedding anniversary), by month and day."""

    __table_args__ = (UniqueConstraint("customer_id", "kind", "label", name="uq_customerdate_customer_kind_label"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=128)
    kind: DateKind = Field(sa_type=String(24))
    label: str = Field(default="", max_length=100)  # "Sam's birthday": shown in the message, never in a history
    month: int
    day: int  # 29 February is kept; in other years it is celebrated on 28 February
    year: int | None = None
