"""The one small protocol every provider speaks."""

from dataclasses import dataclass
from typing import Protocol

from models.tables import Channel


@dataclass(frozen=True)
class OutgoingMessage:
    message_id: int  # our outbox row: providers get it as their idempotency / custom argument
    channel: Channel
    to: str  # E.164 phone or email address, read from the database at send time
    body: str
    subject: str | None = None
    journey: str | None = None


class MessageChannel(Protocol):
    name: str

    def send(self, message: OutgoingMessage) -> str:
        """Deliver to the provider and return its message id. Blocking: called from an activity thread."""
        ...


@dataclass(frozen=True)
class Channels:
    """Which provider carries each channel."""

    sms: MessageChannel
    email: MessageChannel

    def for_channel(self, channel: Channel) -> MessageChannel:
        return self.sms if channel == Channel.sms else self.email
