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
    after: timedelta  # measured from the start of the journey
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
        # Our own short form from the journeys file; ISO 8601 ("PT2H") as serialized in workflow inputs.
        if isinstance(value, str) and not value.startswith("P"):
            return parse_duration(value)
        return value

    def template_for(self, segment: Segment) -> str:
        return self.templates_by_segment.get(segment, self.template)


class PostPurchasePlan(BaseModel):
    steps: list[StepPlan]

    @field_validator("steps")
    @classmethod
    def _in_order(cls, steps: list[StepPlan]) -> list[StepPlan]:
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError("step names must be unique")
        if any(a.after > b.after for a, b in pairwise(steps)):
            raise ValueError("steps must be listed in the order they are sent")
        return steps


class PostPurchaseInput(BaseModel):
    customer_id: str
    order_id: str
    segment: Segment  # decided at intake, when the order is stored: a later purchase ends this journey
    plan: PostPurchasePlan


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
