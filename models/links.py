"""Per-recipient links and coupon codes: how they are made and read, shared by the send policy and the API."""

import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from models.tables import Message

TOKEN_BYTES = 10  # 80 random bits: a token cannot be guessed, and says nothing about the customer

# No 0/O, 1/I/L: a code read aloud or typed from a text message comes out right.
COUPON_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
COUPON_LENGTH = 10  # 31^10, about 2^49 codes


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def click_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/r/{token}"


def unsubscribe_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/u/{token}"


def with_utm(url: str, *, channel: str, journey: str, step: str) -> str:
    """The destination with our UTM parameters; parameters the marketer set on the URL win."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    utm = {"utm_source": "comeback", "utm_medium": channel, "utm_campaign": journey, "utm_content": step}
    return urlunsplit(parts._replace(query=urlencode({**utm, **query})))


def workflow_id_of(message: Message) -> str:
    """The journey that sent a message: its idempotency key is `{workflow_id}/{step}`."""
    return message.idempotency_key.rpartition("/")[0]


def new_coupon_code() -> str:
    return "".join(secrets.choice(COUPON_ALPHABET) for _ in range(COUPON_LENGTH))


def normalize_coupon_code(text: str) -> str:
    """What the customer typed, as stored: case, spaces and dashes do not matter."""
    return "".join(c for c in text.upper() if c.isalnum())
