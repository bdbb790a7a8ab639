"""SMS and email providers behind one small protocol (channels.base)."""

from channels.base import Channels, MessageChannel
from channels.outbox import OutboxChannel
from channels.sendgrid import SendGridChannel
from channels.twilio import TwilioChannel
from models.settings import Settings


def channels_from_settings(settings: Settings) -> Channels:
    """Twilio for SMS and SendGrid for email where their credentials are set; otherwise the embedded default,
    the outbox channel, which records and prints every message."""
    outbox = OutboxChannel()
    sms: MessageChannel = outbox
    email: MessageChannel = outbox
    if settings.twilio_account_sid and settings.twilio_auth_token:
        sms = TwilioChannel.from_settings(settings)
    if settings.sendgrid_api_key:
        email = SendGridChannel.from_settings(settings)
    return Channels(sms=sms, email=email)
