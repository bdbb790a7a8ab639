"""When a message may go: quiet hours in the recipient's zone, and the frequency cap across all journeys.

Called by the send policy under the customer's lock, so that two journeys deciding at once count each other's
sends: the cap is counted from the outbox (marketing messages sent on the channel), not from a counter.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from activities.quiet_hours import Window, allowed_window, next_allowed, recipient_zones
from models.journeys import SMS_CEILING, Cap, Policy
from models.tables import Channel, Customer, Message, MessageStatus


@dataclass(frozen=True)
class Pace:
    at: datetime  # the earliest instant the message may go: `now` when it may go at once
    reasons: tuple[str, ...] = ()  # what holds it until then: "quiet_hours", "frequency_cap"


def earliest_send(
    session: Session, policy: Policy, customer: Customer, channel: Channel, kind: str, now: datetime
) -> Pace:
    """The first instant from `now` that is inside the recipient's window and under every cap.

    Raises `NoCommonWindowError` when the recipient's possible zones share no allowed minute.
    """
    caps = _caps(policy, channel, kind)
    sends = _recent_sends(session, customer.id, channel, now - max(cap.per for cap in caps)) if caps else []
    quiet = _quiet_hours(policy, customer, kind) if policy.quiet_hours and channel == Channel.sms else None
    at, reasons = now, []
    # Waiting for the cap can land in quiet hours and the other way round; each round moves `at` forward to the
    # next instant one of them allows, and past sends only leave the cap's window, so this settles by round three.
    for _ in range(4):
        opened = next_allowed(at, *quiet) if quiet else at
        freed = max([opened, *(_frees_at(sends, cap, opened) for cap in caps)])
        if opened > at:
            reasons.append("quiet_hours")
        if freed > opened:
            reasons.append("frequency_cap")
        if freed == at:
            break
        at = freed
    else:
        raise AssertionError(f"quiet hours and caps did not settle on a time after {now}")
    return Pace(at=at, reasons=tuple(dict.fromkeys(reasons)))


def _caps(policy: Policy, channel: Channel, kind: str) -> list[Cap]:
    """Transactional messages (order updates) are never capped; marketing texts never exceed the ceiling."""
    if kind != "marketing" or not policy.frequency_caps:
        return []
    return [policy.cap(channel), SMS_CEILING] if channel == Channel.sms else [policy.cap(channel)]


def _quiet_hours(policy: Policy, customer: Customer, kind: str) -> tuple[list[ZoneInfo], Window]:
    marketing, transactional = Window(*policy.window("marketing")), Window(*policy.window("transactional"))
    kind_: Literal["marketing", "transactional"] = "transactional" if kind == "transactional" else "marketing"
    window = allowed_window(kind_, customer.phone, marketing, transactional)
    zones = recipient_zones(customer.timezone, customer.phone, default_zone=policy.default_timezone)
    return zones, window


def _recent_sends(session: Session, customer_id: str, channel: Channel, since: datetime) -> list[datetime]:
    """When the customer's marketing messages on the channel were sent since `since`, newest first."""
    sent = session.exec(
        select(Message.sent_at)
        .where(
            Message.customer_id == customer_id,
            Message.channel == channel,
            Message.kind == "marketing",
            Message.status == MessageStatus.sent,
            col(Message.sent_at) > since,
        )
        .order_by(col(Message.sent_at).desc())
    ).all()
    return [at for at in sent if at is not None]


def _frees_at(sends: list[datetime], cap: Cap, at: datetime) -> datetime:
    """`at`, or the instant enough of the sends (newest first) leave the cap's window for it to allow one more."""
    within = [sent for sent in sends if sent > at - cap.per]
    if len(within) < cap.count:
        return at
    # The window holds `count` or more: it frees up when the count-th most recent send leaves it.
    return max(at, within[cap.count - 1] + cap.per)
