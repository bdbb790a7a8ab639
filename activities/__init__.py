"""Every side effect of a journey: database reads and writes, rendering, sends."""

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from temporalio.client import Client

from activities.dates import DatesActivities
from activities.messages import MessageActivities
from activities.recommendations import RecommendationActivities
from activities.reengagement import ReengagementActivities
from activities.rendering import TemplateRenderer
from channels.base import Channels
from models.journeys import JourneysConfig
from models.settings import get_settings

log = logging.getLogger(__name__)


def build_activities(
    engine: Engine,
    config: JourneysConfig,
    channels: Channels,
    public_url: str | None = None,
    client: Client | None = None,
) -> list[Callable[..., Any]]:
    """`public_url` (the base of tracking links): COMEBACK_PUBLIC_URL unless given. `client`: the worker's Temporal
    client, which the daily re-engagement campaign starts journeys with (without it, that activity is left out)."""
    providers = {channels.sms.name, channels.email.name} - {"outbox"}
    if providers and not (config.policy.quiet_hours and config.policy.frequency_caps):
        log.warning(
            "quiet hours or frequency caps are off in the journeys config while sending through %s: "
            "turn them off only for a demo that sends to the outbox",
            ", ".join(sorted(providers)),
        )
    messages = MessageActivities(
        engine, channels, config, TemplateRenderer(), public_url=public_url or get_settings().public_url
    )
    reengagement = ReengagementActivities(engine, config, client)
    return [
        messages.send_message,
        RecommendationActivities(engine).recommend_products,
        DatesActivities(engine, config).upcoming_dates,
        reengagement.sunset_inactive_customer,
        *([reengagement.run_reengage_campaign] if client else []),
    ]
