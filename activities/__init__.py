"""Every side effect of a journey: database reads and writes, rendering, sends."""

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from activities.messages import MessageActivities
from activities.rendering import TemplateRenderer
from channels.base import Channels
from models.journeys import JourneysConfig


def build_activities(engine: Engine, config: JourneysConfig, channels: Channels) -> list[Callable[..., Any]]:
    messages = MessageActivities(engine, channels, config.brand, TemplateRenderer())
    return [messages.send_message]
