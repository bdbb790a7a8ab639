"""What crosses Temporal: workflow inputs, plans, signals, activity requests and results.

These carry ids, template keys and step names, never phone numbers, emails or names: operators read
workflow histories, and customers' personal data stays in the database.
"""

import re
from datetime import date, datetime, timedelta
from enum import StrEnum
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from models.tables import Channel, DateKind

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

    inactive_days: int = Field(default=90, ge=0)  # 0: every customer with consent (a demo, a one-off campaign)
    sunset_after: timedelta = timedelta(days=97)  # from the journey's start
    starts_per_second: float = Field(default=50, gt=0)  # how fast a campaign starts journeys
    schedule: str = Field(default="0 15 * * *", pattern=r"^\S+( \S+){4}$")  # the daily campaign: cron, UTC

    _sunset = field_validator("sunset_after", mode="before")(_duration_field)

    @model_validator(mode="after")
    def _sunset_after_last_step(self) -> "ReengagePlan":
        # The last step's message needs its own time to be clicked before the customer is unsubscribed.
        if self.sunset_after <= self.steps[-1].after:
            raise ValueError(f"sunset_after ({self.sunset_after}) must come after the last step's after")
        return self


class CartPlan(JourneyPlan):
    """Steps measured from the cart's last update: each update pushes them back."""


class FollowThroughPlan(BaseModel):
    """Transactional order updates: `shipped` steps measured from the order_shipped event, `delivered` steps from
    order_delivered."""

    shipped: list[StepPlan]
    delivered: list[StepPlan]
    wait_for_delivery: timedelta = timedelta(days=30)  # no delivery by then (from shipping): the journey ends
    review_step: str | None = "review_request"  # the delivered step a review already posted makes pointless

    _wait = field_validator("wait_for_delivery", mode="before")(_duration_field)
    _shipped_in_order = field_validator("shipped", "delivered")(_in_order)

    @model_validator(mode="after")
    def _review_step_is_a_delivered_step(self) -> "FollowThroughPlan":
        names = [step.name for step in self.all_steps()]
        if len(set(names)) != len(names):
            raise ValueError("step names must be unique across shipped and delivered")
        if self.review_step is not None and self.review_step not in names[len(self.shipped) :]:
            raise ValueError(f"review_step {self.review_step!r} is none of the delivered steps")
        return self

    def all_steps(self) -> list[StepPlan]:
        return [*self.shipped, *self.delivered]

    def stage_after(self, event: str) -> str:
        """The stage a journey is in once it heard `event` first (shipped or delivered): set at start."""
        steps = self.delivered if event == "delivered" else self.shipped
        return steps[0].stage if steps else event


class CrossSellPlan(JourneyPlan):
    """Recommendations at set times after a purchase: complementary categories, the same line, size and colour,
    in season, never what the customer already bought. No message when nothing fits."""

    complements: dict[str, list[str]] = {}  # category bought → categories that go with it, best first
    max_items: int = Field(default=3, ge=1, le=10)

    @field_validator("complements")
    @classmethod
    def _lowercase(cls, complements: dict[str, list[str]]) -> dict[str, list[str]]:
        # Categories match whatever case the shop sends them in.
        return {
            bought.strip().lower(): [c.strip().lower() for c in goes_with] for bought, goes_with in complements.items()
        }


class DatesPlan(BaseModel):
    """Yearly: the customer's birthday (a reward on the day); the dates they told us (a reminder with gift ideas
    `reminder_before` the date, and a message on the day). Sent at `send_at` in the customer's time zone."""

    send_at: str = Field(default="10:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")  # local wall-clock time, HH:MM
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
    similar_items: int = Field(default=3, ge=1, le=10)  # at most this many similar items in the code_purchase thanks

    def all_steps(self) -> list[StepPlan]:
        return [self.browsed, self.reviewed, self.code_purchase]


class PostPurchaseInput(BaseModel):
    customer_id: str
    order_id: str
    segment: Segment  # decided at intake, when the order is stored: a later purchase ends this journey
    plan: PostPurchasePlan


class ReengageInput(BaseModel):
    """The customer's re-engagement. Its workflow id, `reengage-{customer_id}`, is reused by later campaigns: the
    steps' names carry the run's start time (`survey_20261126T150000`), as message keys must be unique per id."""

    customer_id: str
    plan: ReengagePlan


class SunsetRequest(BaseModel):
    """Unsubscribe the customer from marketing at the end of a re-engagement that had no click, unless the database
    shows they came back since `since` (a click or purchase whose signal was lost, a visit)."""

    customer_id: str
    since: datetime


class SunsetResult(BaseModel):
    outcome: Literal["sunset", "reactivated", "purchased"]
    revoked: list[Channel] = []  # channels whose consent this revoked


class CampaignRequest(BaseModel):
    """A re-engagement campaign run by the daily schedule: every inactive customer gets a journey."""

    inactive_days: int | None = Field(default=None, ge=0)  # None: the journeys file's
    dry_run: bool = False


class CampaignResult(BaseModel):
    found: int  # inactive customers with consent
    started: int = 0
    already_running: int = 0  # a re-engagement of theirs was running: never two at once
    dry_run: bool = False


class CartInput(BaseModel):
    cart_id: str
    customer_id: str
    plan: CartPlan


class CartUpdatedSignal(BaseModel):
    """The cart changed, or its checkout started: the next step's deadline moves back."""

    event: Literal["cart_updated", "checkout_started"] = "cart_updated"
    items: int = Field(ge=0)  # how many items the cart now holds: an emptied cart ends its journey


class FollowThroughInput(BaseModel):
    order_id: str
    customer_id: str
    plan: FollowThroughPlan


class OrderEventSignal(BaseModel):
    """What the shop reported about the order: shipped, delivered, or a review of it was posted. Each event's time
    is when the journey hears it: the steps after it are measured from there."""

    event: Literal["shipped", "delivered", "reviewed"]


class CrossSellInput(BaseModel):
    order_id: str
    customer_id: str
    plan: CrossSellPlan


class DatesInput(BaseModel):
    customer_id: str
    plan: DatesPlan  # the latest a `dates_changed` brought is carried across continue-as-new
    # Carried across continue-as-new: where the next run's year begins, and the channels opted out of so far.
    since: datetime | None = None
    opted_out: list[Channel] = []


class DatesChangedSignal(BaseModel):
    """The customer's birthday or told dates changed: the journey reads them again. It brings the journeys file's
    plan as it is now, which the journey adopts: a journey that runs forever would otherwise never see a new one."""

    plan: DatesPlan


class UpcomingDatesRequest(BaseModel):
    """The customer's dates with a send due in [since, until), and when each send is due."""

    customer_id: str
    since: datetime
    until: datetime
    send_at: str  # HH:MM in the customer's zone
    reminder_before: timedelta
    # The journey's first read: a message due today before `since` still goes (the customer told us on the day).
    catch_up: bool = False


class DateOccurrence(BaseModel):
    """One yearly date in one year: ids, kinds and days only; its label stays in the database."""

    date_id: int | None  # a CustomerDate; None: the customer's own birthday
    kind: DateKind
    day: date  # the day it falls on that year: 29 February is 28 February in other years
    reminder_at: datetime | None  # told dates only: `reminder_before` the day, at `send_at`
    on_the_day_at: datetime


class UpcomingDates(BaseModel):
    dates: int  # how many dates the customer has, their own birthday included: none ends the journey
    occurrences: list[DateOccurrence]


Trigger = Literal["browsed", "reviewed", "code_purchase"]


class TriggerInput(BaseModel):
    """One message after something the customer did: `step` is the trigger's step of the plan (its snapshot)."""

    trigger: Trigger
    customer_id: str
    step: StepPlan
    order_id: str | None = None  # code_purchase: the order bought with the code; reviewed: the reviewed order
    review_id: int | None = None  # reviewed
    max_items: int = Field(default=3, ge=1, le=10)  # code_purchase: similar items shown at most

    @model_validator(mode="after")
    def _names_what_it_is_about(self) -> "TriggerInput":
        if self.trigger == "code_purchase" and self.order_id is None:
            raise ValueError("a code_purchase trigger names its order_id")
        if self.trigger == "reviewed" and (self.review_id is None or self.order_id is None):
            raise ValueError("a reviewed trigger names its review_id and the reviewed order_id")
        return self


class RecommendRequest(BaseModel):
    """Products to recommend after an order: `complements` (cross-sell: categories that go with what the order
    bought, by `complements`) or `similar` (the same category or line). `on`: the day whose season counts."""

    customer_id: str
    order_id: str
    mode: Literal["complements", "similar"]
    on: date
    complements: dict[str, list[str]] = {}
    max_items: int = Field(default=3, ge=1, le=10)


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
