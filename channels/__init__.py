"""SMS and email providers behind one small protocol (channels.base)."""

from channels.base import Channels
from channels.outbox import OutboxChannel
from models.settings import Settings


def channels_from_settings(settings: Settings) -> Channels:
    """The embedded default records and prints every message (the outbox channel)."""
    outbox = OutboxChannel()
    return Channels(sms=outbox, email=outbox)
