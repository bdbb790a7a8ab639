"""Every side effect of a journey: database reads and writes, rendering, sends."""

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from activities.messages import MessageActivities
from activities.rendering import TemplateRenderer
from channels.base import Channels
from models.journeys import JourneysConfig
from models.settings import get_settings

log = logging.getLogger(__name__)


def build_activities(
    engine: Engine, config: JourneysConfig, channels: Channels, public_url: str | None = None
) -> list[Callable[..., Any]]:
    """`public_url` (the base of tracking links): COMEBACK_PUBLIC_URL unless given."""
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
    return [messages.send_message]
