"""`send_message`: the one place that decides whether, how and what to send.

At send time, in the database: consent per channel and the customer's preferred channel, rendering, then an
outbox row keyed `{workflow_id}/{step}` written *before* the provider is called. A retried or repeated call
finds that row and returns the first result, so a step is sent at most once. Quiet hours, caps, links and
coupons will answer `deferred(until)` or `skipped(reason)` from here too.
"""

from types import SimpleNamespace
from typing import Any

from jinja2 import TemplateError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.rendering import Rendered, TemplateRenderer
from channels.base import Channels, OutgoingMessage, PermanentFailure, RecipientOptedOut
from models.contracts import SendRequest, SendResult
from models.journeys import Brand
from models.store import consent_status, is_suppressed, lock_customer, revoke_consent
from models.tables import (
    Channel,
    ConsentStatus,
    Customer,
    Message,
    MessageStatus,
    Order,
    OrderItem,
    Product,
    utcnow,
)


class MessageActivities:
    def __init__(self, engine: Engine, channels: Channels, brand: Brand, renderer: TemplateRenderer) -> None:
        self._engine = engine
        self._channels = channels
        self._brand = brand
        self._renderer = renderer

    @activity.defn
    def send_message(self, request: SendRequest) -> SendResult:
        key = f"{activity.info().workflow_id}/{request.step}"
        with Session(self._engine, expire_on_commit=False) as session:
            earlier = _find(session, key)
            message = earlier or self._record(session, key, request)
            # Pending: written, the provider not yet confirmed; by this attempt, or by an earlier one whose
            # outcome is unknown (it crashed or timed out), in which case the provider looks before sending.
            if message.status == MessageStatus.pending:
                self._deliver(session, message, maybe_sent=earlier is not None)
            return _result(message)

    def _record(self, session: Session, key: str, request: SendRequest) -> Message:
        """Decide and write the outbox row, committed before any provider hears of it."""
        message = self._prepare(session, key, request)
        try:
            return _store(session, message)
        except IntegrityError:
            # A concurrent attempt wrote this step first; the retry will find its result.
            session.rollback()
            raise ApplicationError(f"{key} is being sent by another attempt") from None

    def _deliver(self, session: Session, message: Message, *, maybe_sent: bool) -> None:
        assert message.channel is not None, "a pending message has its channel"
        channel = Channel(message.channel)
        provider = self._channels.for_channel(channel)
        outgoing = OutgoingMessage(
            message_id=message.id or 0,
            channel=channel,
            to=_address(session, message),
            subject=message.subject,
            body=message.body or "",
            journey=message.journey,
        )
        # From here to the commit the customer is locked: a STOP recorded before this point is seen below, and one
        # that arrives during the provider call waits for the commit, so nothing is sent after a STOP is recorded.
        lock_customer(session, message.customer_id)
        if not _allowed(session, message.customer_id, channel, outgoing.to):
            message.status, message.reason = MessageStatus.skipped, "opted_out"
            message.updated_at = utcnow()
            _store(session, message)
            return
        message.provider = provider.name
        try:
            message.provider_id = provider.send(outgoing, maybe_sent=maybe_sent)
            message.status, message.sent_at = MessageStatus.sent, utcnow()
        except RecipientOptedOut as e:  # e.g. Twilio 21610: the number replied STOP to the carrier
            message.status, message.reason = MessageStatus.skipped, f"opted_out: {e.code}"
            revoke_consent(session, message.customer_id, channel, source=f"provider:{provider.name}", wording=str(e))
        except PermanentFailure as e:  # a retry cannot mend it: recorded, and the journey goes on
            message.status, message.reason = MessageStatus.failed, f"provider: {e}"[:200]
        message.updated_at = utcnow()
        _store(session, message)

    def _prepare(self, session: Session, key: str, request: SendRequest) -> Message:
        customer = session.get(Customer, request.customer_id)
        if customer is None:
            raise ApplicationError(f"unknown customer {request.customer_id}", non_retryable=True)
        message = Message(
            idempotency_key=key,
            customer_id=customer.id,
            journey=request.journey,
            step=request.step,
            template=request.template,
            status=MessageStatus.pending,
        )
        channel = _choose_channel(session, customer, request.channels)
        if channel is None:
            message.status, message.reason = MessageStatus.skipped, "no_consent"
            return message
        message.channel = channel
        try:
            rendered = self._render(session, customer, request, channel)
        except (TemplateError, ValueError) as e:  # the same text fails the same way on every retry
            activity.logger.error("template %s failed to render: %s", request.template, e)
            message.status, message.reason = MessageStatus.failed, f"template_error: {e}"[:200]
            return message
        message.subject, message.body = rendered.subject, rendered.body
        return message

    def _render(self, session: Session, customer: Customer, request: SendRequest, channel: Channel) -> Rendered:
        context: dict[str, Any] = {
            "brand": self._brand.model_dump(),
            "customer": {"first_name": customer.first_name, "last_name": customer.last_name},
            "order": _order_context(session, request.order_id) if request.order_id else None,
        }
        return self._renderer.render(request.template, channel, context)


def _find(session: Session, key: str) -> Message | None:
    return session.exec(select(Message).where(Message.idempotency_key == key)).first()


def _store(session: Session, message: Message) -> Message:
    session.add(message)
    session.commit()
    return message


def _choose_channel(session: Session, customer: Customer, channels: list[Channel]) -> Channel | None:
    """The first of the step's channels (the customer's preferred one first) with an address, consent and no
    suppression."""
    preferred = sorted(channels, key=lambda c: c != customer.preferred_channel)
    for channel in preferred:
        address = customer.phone if channel == Channel.sms else customer.email
        if address and _allowed(session, customer.id, channel, address):
            return channel
    return None


def _allowed(session: Session, customer_id: str, channel: Channel, address: str) -> bool:
    """Consent granted and the address not suppressed (an erased customer's). Checked when the channel is chosen,
    and again under the customer's lock just before the provider call."""
    if consent_status(session, customer_id, channel) != ConsentStatus.granted:
        return False
    phone, email = (address, None) if channel == Channel.sms else (None, address)
    return not is_suppressed(session, phone, email)


def _address(session: Session, message: Message) -> str:
    customer = session.get(Customer, message.customer_id)
    address = customer and (customer.phone if message.channel == Channel.sms else customer.email)
    if not address:
        raise ApplicationError(f"customer {message.customer_id} has no {message.channel} address", non_retryable=True)
    return address


def _order_context(session: Session, order_id: str) -> SimpleNamespace | None:
    """A namespace, not a dict: in a template `order.items` must be the items, not dict.items."""
    order = session.get(Order, order_id)
    if order is None:
        return None
    rows = session.exec(
        select(OrderItem, Product)
        .join(Product, col(OrderItem.sku) == col(Product.sku))
        .where(OrderItem.order_id == order_id)
    ).all()
    items = [
        {
            "name": item.name,
            "quantity": item.quantity,
            "size": item.size,
            "color": item.color,
            "url": product.url,
            "category": product.category,
        }
        for item, product in rows
    ]
    return SimpleNamespace(id=order.id, total=order.total, currency=order.currency, items=items)


def _result(message: Message) -> SendResult:
    if message.status == MessageStatus.sent:
        return SendResult(status="sent", channel=message.channel, message_id=message.id)
    return SendResult(status="skipped", channel=message.channel, message_id=message.id, reason=message.reason)
