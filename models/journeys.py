"""The journeys file (config/journeys.toml): the marketer's cadences, thresholds, templates and channels.

The starter reads it and passes each journey its plan as a snapshot, so editing the file changes new journeys
and never the replay of running ones.
"""

import tomllib
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ValidationError, model_validator

from models.contracts import PostPurchasePlan, Segment
from models.settings import ROOT

TEMPLATES_DIR = ROOT / "templates"


class Brand(BaseModel):
    name: str
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


class Journeys(BaseModel):
    post_purchase: PostPurchasePlan


class JourneysConfig(BaseModel):
    brand: Brand
    segments: Segments = Segments()
    journeys: Journeys

    @property
    def post_purchase_horizon(self) -> timedelta:
        """How long after its order a post-purchase journey may still be running."""
        return self.journeys.post_purchase.steps[-1].after + timedelta(days=1)

    @model_validator(mode="after")
    def _templates_exist(self) -> "JourneysConfig":
        missing = [
            f"{step.name}: {path.relative_to(ROOT)}"
            for step in self.journeys.post_purchase.steps
            for key in {step.template, *step.templates_by_segment.values()}
            for channel in step.channels
            if not (path := TEMPLATES_DIR / f"{key}.{channel}.j2").is_file()
        ]
        if missing:
            raise ValueError("missing templates: " + ", ".join(sorted(missing)))
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
