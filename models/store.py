"""Queries that both the API and the activities ask of the database."""

from sqlmodel import Session, col, select

from models.tables import Channel, Consent, ConsentStatus


def consent_status(session: Session, customer_id: str, channel: Channel) -> ConsentStatus | None:
    """A customer's consent for a channel is their latest consent record for it; None: never asked."""
    latest = session.exec(
        select(Consent)
        .where(Consent.customer_id == customer_id, Consent.channel == channel)
        .order_by(col(Consent.recorded_at).desc(), col(Consent.id).desc())
    ).first()
    return ConsentStatus(latest.status) if latest else None
