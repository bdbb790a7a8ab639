"""Queries that both the API and the activities ask of the database."""

import hashlib
from datetime import timedelta

import phonenumbers
from sqlalchemy import text
from sqlmodel import Session, col, select

from models.settings import get_settings
from models.tables import Channel, Consent, ConsentStatus, Order, Suppression, utcnow


def lock_customer(session: Session, customer_id: str) -> None:
    """Hold the customer's write lock until the session's transaction ends: what serializes a send (consent
    checked, provider called, marked sent) against a STOP or START for that customer.

    One no-op UPDATE serves both databases: PostgreSQL locks the row, SQLite takes the database's write lock
    (and waits for it, up to the busy timeout, while another transaction holds it)."""
    session.connection().execute(
        text("UPDATE customer SET updated_at = updated_at WHERE id = :id"), {"id": customer_id}
    )


def latest_consent(session: Session, customer_id: str, channel: Channel) -> Consent | None:
    return session.exec(
        select(Consent)
        .where(Consent.customer_id == customer_id, Consent.channel == channel)
        .order_by(col(Consent.recorded_at).desc(), col(Consent.id).desc())
    ).first()


def consent_status(session: Session, customer_id: str, channel: Channel) -> ConsentStatus | None:
    """A customer's consent for a channel is their latest consent record for it; None: never asked."""
    latest = latest_consent(session, customer_id, channel)
    return ConsentStatus(latest.status) if latest else None


def revoke_consent(session: Session, customer_id: str, channel: Channel, source: str, wording: str) -> bool:
    """Record that the customer withdrew consent for a channel, unless their latest record already says so."""
    if consent_status(session, customer_id, channel) == ConsentStatus.revoked:
        return False
    session.add(
        Consent(
            customer_id=customer_id,
            channel=channel,
            status=ConsentStatus.revoked,
            source=source[:64],
            wording=wording,
        )
    )
    return True


def recent_order_ids(session: Session, customer_ids: list[str], within: timedelta) -> list[str]:
    """The customers' orders placed within `within` of now: those whose journeys may still be running."""
    return list(
        session.exec(
            select(Order.id).where(col(Order.customer_id).in_(customer_ids), col(Order.placed_at) > utcnow() - within)
        ).all()
    )


def suppression_key(channel: Channel, address: str) -> str:
    """The SHA-256 hex of the normalized address: a phone in E.164, an email lowercased."""
    normalized = address.strip()
    if channel == Channel.sms:
        try:
            number = phonenumbers.parse(normalized, get_settings().default_region)
            normalized = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        except phonenumbers.NumberParseException:
            pass  # hashed as given: stored phones are E.164 already
    else:
        normalized = normalized.lower()
    return hashlib.sha256(normalized.encode()).hexdigest()


def _addresses(phone: str | None, email: str | None) -> list[tuple[Channel, str]]:
    return [(channel, address) for channel, address in ((Channel.sms, phone), (Channel.email, email)) if address]


def is_suppressed(session: Session, phone: str | None = None, email: str | None = None) -> bool:
    """Whether any of the given addresses is on the suppression list."""
    keys = [suppression_key(channel, address) for channel, address in _addresses(phone, email)]
    if not keys:
        return False
    return session.exec(select(Suppression.id).where(col(Suppression.key_hash).in_(keys))).first() is not None


def suppress(session: Session, *, phone: str | None = None, email: str | None = None, reason: str) -> None:
    """Add the addresses to the suppression list (an address already there is left as it is); not committed."""
    for channel, address in _addresses(phone, email):
        key = suppression_key(channel, address)
        if session.exec(select(Suppression.id).where(Suppression.key_hash == key)).first() is None:
            session.add(Suppression(key_hash=key, channel=channel, reason=reason))
