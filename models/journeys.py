"""The journeys file (config/journeys.toml): the marketer's cadences, thresholds, templates and channels.

The starter reads it and passes each journey its plan as a snapshot, so editing the file changes new journeys
and never the replay of running ones.
"""

import tomllib
from datetime import time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from models.contracts import (
    CartPlan,
    CrossSellPlan,
    DatesPlan,
    FollowThroughPlan,
    MessageKind,
    PostPurchasePlan,
    ReengagePlan,
    Segment,
    StepPlan,
    TriggersPlan,
    parse_duration,
)
from models.settings import ROOT, get_settings
from models.tables import Channel

TEMPLATES_DIR = ROOT / "templates"


class Brand(BaseModel):
    name: str
    shop_url: str = Field(pattern=r"^https?://[^/\s]+")  # templates link to it: {{ link(brand.shop_url ~ "/new") }}
    help_text: str
    sms_consent_wording: str
    email_consent_wording: str
    consent_wording_version: str = "1"
    sms_frequency: str = "Up to 4 msgs/week"  # in the START confirmation (CTIA)


class Segments(BaseModel):
    """A customer's segment by order count or lifetime value (this order included)."""

    repeat_min_orders: int = 2
    vip_min_orders: int = 5
    vip_min_lifetime_value: Decimal = Decimal("500")

    def of(self, order_count: int, lifetime_value: Decimal) -> Segment:
        if order_count >= self.vip_min_orders or lifetime_value >= self.vip_min_lifetime_value:
            return Segment.vip
        if order_count >= self.repeat_min_orders:
            return Segment.repeat
        return Segment.first_time


class Cap(BaseModel):
    """At most `count` marketing messages of a channel to one customer within any `per`, across all journeys."""

    count: int = Field(ge=1)
    per: timedelta

    @field_validator("per", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) and not value.startswith("P") else value


# However the caps are configured, never more than this many marketing texts to one customer a day: enforced at
# send time next to the configured cap.
SMS_CEILING = Cap(count=3, per=timedelta(hours=24))


def _window(text: str) -> tuple[time, time]:
    start, sep, end = text.partition("-")
    try:
        if not sep:
            raise ValueError
        return time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a window like '09:00-20:00'") from None


class Policy(BaseModel):
    """The send policy's settings. Quiet hours and caps apply to marketing; transactional messages (order updates)
    have their own window and no cap."""

    default_timezone: str  # the recipient's zone when neither their profile nor their number tells it
    quiet_hours: bool = True  # false only for a demo that sends to the outbox
    marketing_window: str = "09:00-20:00"  # local time; kept within 08:00-21:00, and 08:00-20:00 in FL, OK, MD
    transactional_window: str = "08:00-21:00"
    frequency_caps: bool = True  # false only for a demo that sends to the outbox
    sms_cap: Cap = Cap(count=1, per=timedelta(hours=24))
    email_cap: Cap = Cap(count=1, per=timedelta(hours=16))
    sms_footer: str = "Reply STOP to opt out."  # added to a customer's first marketing text
    coupon_valid_for: timedelta = timedelta(days=14)

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone such as 'America/New_York'") from None
        return value

    @field_validator("marketing_window", "transactional_window")
    @classmethod
    def _valid_window(cls, value: str) -> str:
        start, end = _window(value)
        if not start < end:
            raise ValueError(f"{value!r}: the window must start before it ends, within one day")
        return value

    @field_validator("coupon_valid_for", mode="before")
    @classmethod
    def _coupon_duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) and not value.startswith("P") else value

    def with_footer(self, body: str) -> str:
        """The body with the opt-out footer, unless the text already tells how to opt out."""
        return body if "STOP" in body else f"{body} {self.sms_footer}"

    def window(self, kind: str) -> tuple[time, time]:
        return _window(self.marketing_window if kind == "marketing" else self.transactional_window)

    def cap(self, channel: str) -> Cap:
        return self.sms_cap if channel == "sms" else self.email_cap


class Journeys(BaseModel):
    post_purchase: PostPurchasePlan
    reengage: ReengagePlan
    cart: CartPlan
    follow_through: FollowThroughPlan
    cross_sell: CrossSellPlan
    dates: DatesPlan
    triggers: TriggersPlan

    def all_steps(self) -> list[tuple[str, StepPlan]]:
        """(journey, step) for every step of every journey."""
        plans = [(name, getattr(self, name)) for name in type(self).model_fields]
        return [(name, step) for name, plan in plans for step in plan.all_steps()]


class JourneysConfig(BaseModel):
    brand: Brand
    policy: Policy
    segments: Segments = Segments()
    journeys: Journeys

    @property
    def post_purchase_horizon(self) -> timedelta:
        """How long after its order a post-purchase journey may still be running."""
        return self.journeys.post_purchase.steps[-1].after + timedelta(days=1)

    @property
    def order_journeys_horizon(self) -> timedelta:
        """How long after its order any of the order's journeys (post-purchase, cross-sell, follow-through) may
        still be running."""
        follow = self.journeys.follow_through
        return max(
            self.post_purchase_horizon,
            self.journeys.cross_sell.steps[-1].after + timedelta(days=1),
            follow.wait_for_delivery
            + max((s.after for s in follow.delivered), default=timedelta(0))
            + timedelta(days=1),
        )

    @model_validator(mode="after")
    def _templates_exist(self) -> "JourneysConfig":
        missing = [
            f"{journey}.{step.name}: {path.relative_to(ROOT)}"
            for journey, step in self.journeys.all_steps()
            for key in {step.template, *step.templates_by_segment.values()}
            for channel in step.channels
            if not (path := TEMPLATES_DIR / f"{key}.{channel}.j2").is_file()
        ]
        if missing:
            raise ValueError("missing templates: " + ", ".join(sorted(missing)))
        return self

    @model_validator(mode="after")
    def _sms_within_budget(self) -> "JourneysConfig":
        """Each text, rendered for a long name with its link, code and opt-out footer, fits its step's budget."""
        from activities.rendering import TemplateRenderer, sample_sms  # the renderer lives with the send policy
        from channels.segments import count

        renderer, public_url = TemplateRenderer(), get_settings().public_url
        over = []
        for journey, step in self.journeys.all_steps():
            if Channel.sms not in step.channels:
                continue
            for key in sorted({step.template, *step.templates_by_segment.values()}):
                text = sample_sms(renderer, key, self.brand, public_url)
                if step.kind == MessageKind.marketing:
                    text = self.policy.with_footer(text)
                size = count(text)
                if size.segments > step.sms_segments:
                    over.append(
                        f"{journey}.{step.name}: {key}.sms.j2 is {size.segments} segments ({size.encoding}, "
                        f"{size.units} units with link and footer), over its budget of {step.sms_segments} "
                        "(sms_segments)"
                    )
        if over:
            raise ValueError("texts over budget: " + "; ".join(over))
        return self


class ConfigError(Exception):
    pass


def load_journeys(path: Path) -> JourneysConfig:
    try:
        with path.open("rb") as f:
            return JourneysConfig.model_validate(tomllib.load(f))
    except FileNotFoundError as e:
        raise ConfigError(f"journeys config not found: {path}") from e
    except (tomllib.TOMLDecodeError, ValidationError) as e:
        raise ConfigError(f"{path}: {e}") from e
