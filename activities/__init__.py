"""Every side effect of a journey: database reads and writes, rendering, sends."""

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from activities.messages import MessageActivities
from activities.rendering import TemplateRenderer
from channels.base import Channels
from models.journeys import JourneysConfig
from models.settings import get_settings


def build_activities(
    engine: Engine, config: JourneysConfig, channels: Channels, public_url: str | None = None
) -> list[Callable[..., Any]]:
    """`public_url` (the base of tracking links): COMEBACK_PUBLIC_URL unless given."""
    messages = MessageActivities(
        engine, channels, config, TemplateRenderer(), public_url=public_url or get_settings().public_url
    )
    return [messages.send_message]
