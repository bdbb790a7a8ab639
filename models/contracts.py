"""What crosses Temporal: workflow inputs, plans, signals, activity requests and results.

These carry ids, template keys and step names, never phone numbers, emails or names: operators read
workflow histories, and customers' personal data stays in the database.
"""

import re
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from models.tables import Channel

_DURATION = re.compile(r"(\d+)\s*(w|d|h|m|s)")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """'2h', '7d', '1d12h', '90s' → timedelta: the way a marketer writes a delay."""
    compact = text.replace(" ", "").lower()
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not a duration like '2h', '7d', '1d12h' or '30s'")
    return timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))


class Segment(StrEnum):
    first_time = "first_time"
    repeat = "repeat"
    vip = "vip"


class MessageKind(StrEnum):
    marketing = "marketing"
    transactional = "transactional"


class Priority(StrEnum):
    high = "high"
    low = "low"


class StepPlan(BaseModel):
    """One message of a journey, as the marketer configured it."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    after: timedelta = timedelta(0)  # from the journey's start, or from the moment its plan names
    stage: str  # coarse progress shown as the JourneyStep search attribute
    template: str  # key under templates/, e.g. "post_purchase/thank_you"
    templates_by_segment: dict[Segment, str] = {}
    channels: list[Channel] = [Channel.sms, Channel.email]  # order of preference
    kind: MessageKind = MessageKind.marketing
    priority: Priority = Priority.high  # when the frequency cap is reached: high waits (deferred), low is dropped
    sms_segments: int = Field(default=2, ge=1)  # the text's budget, link and opt-out footer included

    @field_validator("after", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return _duration_field(value)

    def template_for(self, segment: Segment) -> str:
        return self.templates_by_segment.get(segment, self.template)


def _in_order(steps: list[StepPlan]) -> list[StepPlan]:
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ValueError("step names must be unique")
    if any(a.after > b.after for a, b in pairwise(steps)):
        raise ValueError("steps must be listed in the order they are sent")
    return steps


class JourneyPlan(BaseModel):
    """Steps sent in order, each `after` a delay from the journey's start."""

    steps: list[StepPlan] = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _steps_in_order(cls, steps: list[StepPlan]) -> list[StepPlan]:
        return _in_order(steps)

    def all_steps(self) -> list[StepPlan]:
        """Every step the plan may send: what the journeys file checks templates and budgets of."""
        return list(self.steps)


def _duration_field(value: object) -> object:
    # Our own short form from the journeys file; ISO 8601 ("PT2H") as serialized in workflow inputs.
    return parse_duration(value) if isinstance(value, str) and not value.startswith("P") else value


class PostPurchasePlan(JourneyPlan):
    pass


class ReengagePlan(JourneyPlan):
    """Customers with no purchase, visit, open or click for `inactive_days`: survey → contest to those who did not
    open it → unique coupon to those who opened neither. A click ends it (back to active); no click by
    `sunset_after` unsubscribes them from marketing."""

    inactive_days: int = Field(default=90, ge=1)
    sunset_after: timedelta = timedelta(days=97)  # from the journey's start
    starts_per_second: float = Field(default=50, gt=0)  # how fast a campaign starts journeys
    schedule: str = "0 15 * * *"  # the daily campaign, a cron expression in UTC

    _sunset = field_validator("sunset_after", mode="before")(_duration_field)


class CartPlan(JourneyPlan):
    """Steps measured from the cart's last update: each update pushes them back."""


class FollowThroughPlan(BaseModel):
    """Transactional order updates: `shipped` steps measured from the order_shipped event, `delivered` steps from
    order_delivered."""

    shipped: list[StepPlan]
    delivered: list[StepPlan]
    wait_for_delivery: timedelta = timedelta(days=30)  # no delivery by then: the journey ends

    _wait = field_validator("wait_for_delivery", mode="before")(_duration_field)
    _shipped_in_order = field_validator("shipped", "delivered")(_in_order)

    def all_steps(self) -> list[StepPlan]:
        return [*self.shipped, *self.delivered]


class CrossSellPlan(JourneyPlan):
    """Recommendations at set times after a purchase: complementary categories, the same line, size and colour,
    in season, never what the customer already bought. No message when nothing fits."""

    complements: dict[str, list[str]] = {}  # category bought → categories that go with it
    max_items: int = Field(default=3, ge=1, le=10)


class DatesPlan(BaseModel):
    """Yearly: the customer's birthday (a reward on the day); the dates they told us (a reminder with gift ideas
    `reminder_before` the date, and a message on the day). Sent at `send_at` in the customer's time zone."""

    send_at: str = "10:00"
    reminder_before: timedelta = timedelta(days=7)
    birthday: StepPlan
    reminder: StepPlan
    on_the_day: StepPlan

    _reminder = field_validator("reminder_before", mode="before")(_duration_field)

    def all_steps(self) -> list[StepPlan]:
        return [self.birthday, self.reminder, self.on_the_day]


class TriggersPlan(BaseModel):
    """One message after something the customer did; each step's `after` is measured from that moment."""

    browsed: StepPlan  # clicked a link and bought nothing: "thanks for looking" with a code
    reviewed: StepPlan  # posted a review: thanks with a discount
    code_purchase: StepPlan  # bought with their personal code: thanks with similar items

    def all_steps(self) -> list[StepPlan]:
        return [self.browsed, self.reviewed, self.code_purchase]


class PostPurchaseInput(BaseModel):
    customer_id: str
    order_id: str
    segment: Segment  # decided at intake, when the order is stored: a later purchase ends this journey
    plan: PostPurchasePlan


class ReengageInput(BaseModel):
    customer_id: str
    plan: ReengagePlan


class CartInput(BaseModel):
    cart_id: str
    customer_id: str
    plan: CartPlan


class CartUpdatedSignal(BaseModel):
    """The cart changed, or its checkout started: the next step's deadline moves back."""

    event: Literal["cart_updated", "checkout_started"] = "cart_updated"


class FollowThroughInput(BaseModel):
    order_id: str
    customer_id: str
    plan: FollowThroughPlan


class OrderEventSignal(BaseModel):
    """What the shop reported about the order: shipped, delivered, or a review of it was posted."""

    event: Literal["shipped", "delivered", "reviewed"]


class CrossSellInput(BaseModel):
    order_id: str
    customer_id: str
    plan: CrossSellPlan


class DatesInput(BaseModel):
    customer_id: str
    plan: DatesPlan


class TriggerInput(BaseModel):
    trigger: Literal["browsed", "reviewed", "code_purchase"]
    customer_id: str
    step: StepPlan
    order_id: str | None = None
    review_id: int | None = None


class PurchaseSignal(BaseModel):
    order_id: str


class OptOutSignal(BaseModel):
    channel: Channel  # the customer opted out of this channel everywhere (STOP, unsubscribe)


class SendRequest(BaseModel):
    customer_id: str
    journey: str
    step: str  # unique for the life of the workflow id: the idempotency key is {workflow_id}/{step}
    template: str
    channels: list[Channel]
    kind: MessageKind = MessageKind.marketing
    priority: Priority = Priority.high
    order_id: str | None = None
    # What else the message shows, by id (rendered from the database at send time, never carried here):
    cart_id: str | None = None  # the cart's items, images and reviews
    products: list[str] = []  # skus of recommended products
    date_id: int | None = None  # a CustomerDate: the occasion
    review_id: int | None = None  # the customer's review


class ClickedSignal(BaseModel):
    step: str  # the step whose message's link was clicked
    message_id: int


class MessageEventSignal(BaseModel):
    """What the provider reported about a journey's message: delivered, open, click, bounce, dropped, spamreport,
    unsubscribe, group_unsubscribe (SendGrid), undelivered or failed (Twilio)."""

    step: str
    message_id: int
    event: str


class RepliedSignal(BaseModel):
    """The customer texted something that is no keyword; the text stays in the database (`Reply`)."""

    reply_id: int


class SendResult(BaseModel):
    status: Literal["sent", "deferred", "skipped"]
    channel: Channel | None = None
    message_id: int | None = None
    until: datetime | None = None  # deferred: try the same step again at this time
    reason: str | None = None  # skipped or deferred: why

    @property
    def summary(self) -> str:
        if self.status == "sent":
            return f"sent by {self.channel}"
        if self.status == "deferred":
            return f"deferred until {self.until:%Y-%m-%d %H:%M} UTC ({self.reason})"
        return f"skipped ({self.reason})"


class StepOutcome(BaseModel):
    step: str
    at: datetime
    outcome: str


class JourneyState(BaseModel):
    journey: str
    stage: str
    next_step: str | None = None
    next_wake_up: datetime | None = None
    steps_done: list[StepOutcome] = []
    opted_out: list[Channel] = []
    clicked: list[str] = []  # steps whose links the customer clicked
    events: list[str] = []  # "step: event" as the providers reported them (delivered, open, bounce, ...)
    ended: str | None = None  # "completed", "purchased", "opted_out"


class JourneyResult(BaseModel):
    ended: str
    steps_done: list[StepOutcome]
