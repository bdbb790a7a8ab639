"""The events a shop's backend posts to `POST /events`, validated before anything is stored. The `type` field
says which one; every event names a known customer."""

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.schemas import Currency, Identifier, OrderItemIn

Url = Annotated[str, Field(max_length=2000, pattern=r"^https?://[^\s]+$")]


class EventBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: Identifier | None = None  # the shop's id for the event: a repeated POST of it changes nothing
    customer_id: Identifier
    occurred_at: AwareDatetime


class CartUpdated(EventBase):
    """The cart's items as they are now (an empty list: the cart was emptied)."""

    type: Literal["cart_updated"]
    cart_id: Identifier
    currency: Currency | None = None
    items: list[OrderItemIn] = Field(max_length=500)


class CheckoutStarted(EventBase):
    type: Literal["checkout_started"]
    cart_id: Identifier | None = None


class SiteVisit(EventBase):
    type: Literal["site_visit"]
    url: Url | None = None  # not stored: the visit's time is what re-engagement reads


class OrderShipped(EventBase):
    type: Literal["order_shipped"]
    order_id: Identifier
    carrier: str = Field(min_length=1, max_length=64)
    tracking_url: Url


class OrderDelivered(EventBase):
    type: Literal["order_delivered"]
    order_id: Identifier


class ReviewPosted(EventBase):
    type: Literal["review_posted"]
    order_id: Identifier
    rating: int = Field(ge=1, le=5)
    text: str | None = Field(None, max_length=5000)
    sku: Identifier | None = None  # the product reviewed, when the review is of one item


EventIn = Annotated[
    CartUpdated | CheckoutStarted | SiteVisit | OrderShipped | OrderDelivered | ReviewPosted,
    Field(discriminator="type"),
]
EVENT_TYPES = ("cart_updated", "checkout_started", "site_visit", "order_shipped", "order_delivered", "review_posted")


class EventResult(BaseModel):
    status: Literal["accepted", "exists"]  # exists: this event_id was posted before, and nothing changed
    workflow_id: str | None = None  # the journey the event started or told, if any
