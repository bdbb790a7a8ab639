"""Queries that both the API and the activities ask of the database."""

from datetime import timedelta

from sqlmodel import Session, col, select

from models.tables import Channel, Consent, ConsentStatus, Order, utcnow


def consent_status(session: Session, customer_id: str, channel: Channel) -> ConsentStatus | None:
    """A customer's consent for a channel is their latest consent record for it; None: never asked."""
    latest = session.exec(
        select(Consent)
        .where(Consent.customer_id == customer_id, Consent.channel == channel)
        .order_by(col(Consent.recorded_at).desc(), col(Consent.id).desc())
    ).first()
    return ConsentStatus(latest.status) if latest else None


def recent_order_ids(session: Session, customer_ids: list[str], within: timedelta) -> list[str]:
    """The customers' orders placed within `within` of now: those whose journeys may still be running."""
    return list(
        session.exec(
            select(Order.id).where(col(Order.customer_id).in_(customer_ids), col(Order.placed_at) > utcnow() - within)
        ).all()
    )
