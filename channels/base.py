"""The one small protocol every provider speaks."""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from models.tables import Channel


@dataclass(frozen=True)
class OutgoingMessage:
    message_id: int  # our outbox row: providers get it as their idempotency / custom argument
    channel: Channel
    to: str  # E.164 phone or email address, read from the database at send time
    body: str
    subject: str | None = None
    journey: str | None = None
    unsubscribe_url: str | None = None  # marketing email: our one-click List-Unsubscribe URL (RFC 8058)


class PermanentFailure(Exception):
    """The provider refused this message for good (bad number, landline, unreachable): never retried."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class RecipientOptedOut(PermanentFailure):
    """The recipient has opted out at the provider (Twilio 21610): record the opt-out, skip the step."""


class ProviderUnavailable(Exception):
    """The provider could not take the message now (429, 5xx, network, configuration): retried by Temporal."""


class OutcomeUnknown(ProviderUnavailable):
    """The request may have reached the provider (read timeout, dropped connection): look before sending again,
    where the provider allows it."""


@runtime_checkable
class PacedChannel(Protocol):
    """A provider that limits how fast we may send (Twilio's messages per second per sender). The send policy
    calls `pace()` before it locks the customer, so a send waiting for its turn holds no lock."""

    def pace(self) -> None:
        """Block until this process may make its next send."""
        ...


class MessageChannel(Protocol):
    name: str

    def send(self, message: OutgoingMessage, *, maybe_sent: bool = False) -> str:
        """Deliver to the provider and return its message id. Blocking: called from an activity thread.

        `maybe_sent`: an earlier attempt called the provider and its outcome is unknown (the worker died, the
        call timed out). A provider that can look its messages up returns the earlier one instead of sending
        again.

        Raises PermanentFailure (or RecipientOptedOut) for refusals that no retry can mend; any other
        exception is retried by Temporal with backoff.
        """
        ...


@dataclass(frozen=True)
class Channels:
    """Which provider carries each channel."""

    sms: MessageChannel
    email: MessageChannel

    def for_channel(self, channel: Channel) -> MessageChannel:
        return self.sms if channel == Channel.sms else self.email
