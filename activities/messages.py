"""`send_message`: the one place that decides whether, how, what and when to send.

At send time, in the database:
1. consent per channel (the customer's preferred channel first) and the suppression list choose the channel;
2. the text is rendered, with its tracking links, unique coupon, opt-out footer (a customer's first marketing
   text) or unsubscribe link (marketing email), and written as an outbox row keyed `{workflow_id}/{step}`,
   committed *before* any provider hears of it;
3. under the customer's lock: consent again (a STOP may have arrived), quiet hours in the recipient's zone and
   the frequency cap across journeys, which answer `deferred(until)` (or `skipped` for a low-priority message
   over the cap); then the provider call, and the row is completed in the same transaction.

A retried or repeated call finds the row and goes on from where it stands, so a step is sent at most once.
"""

from collections.abc import Callable
from datetime import UTC, datetime

from jinja2 import TemplateError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.message_context import message_context
from activities.pacing import earliest_send
from activities.personalisation import Personalisation
from activities.quiet_hours import NoCommonWindowError
from activities.rendering import Rendered, TemplateRenderer, template_context
from channels.base import Channels, OutgoingMessage, PacedChannel, PermanentFailure, RecipientOptedOut
from models.contracts import MessageKind, Priority, SendRequest, SendResult
from models.journeys import JourneysConfig
from models.links import unsubscribe_url
from models.store import consent_status, is_suppressed, lock_customer, revoke_consent
from models.tables import (
    Channel,
    ConsentStatus,
    Customer,
    Link,
    LinkKind,
    Message,
    MessageStatus,
    utcnow,
)


def server_clock() -> datetime:
    """Now, as the send policy sees it: the wall clock, or the time Temporal scheduled this attempt if that is
    later. They agree in production; under a time-skipping test server only the second moves with the journey."""
    scheduled = activity.info().current_attempt_scheduled_time
    return max(datetime.now(UTC), scheduled.astimezone(UTC)) if scheduled else datetime.now(UTC)


class MessageActivities:
    def __init__(
        self,
        engine: Engine,
        channels: Channels,
        config: JourneysConfig,
        renderer: TemplateRenderer | None = None,
        *,
        public_url: str = "http://localhost:8000",
        clock: Callable[[], datetime] = server_clock,
    ) -> None:
        self._engine = engine
        self._channels = channels
        self._brand, self._policy = config.brand, config.policy
        self._renderer = renderer or TemplateRenderer()
        self._public_url = public_url
        self._clock = clock

    @activity.defn
    def send_message(self, request: SendRequest) -> SendResult:
        key = f"{activity.info().workflow_id}/{request.step}"
        with Session(self._engine, expire_on_commit=False) as session:
            earlier = _find(session, key)
            # Pending: written, the provider not yet confirmed; by this attempt, or by an earlier one whose
            # outcome is unknown (it crashed or timed out), in which case the provider looks before sending.
            maybe_sent = earlier is not None and earlier.status == MessageStatus.pending
            message = earlier or self._record(session, key, request)
            if message.status == MessageStatus.deferred:
                # Pending again before the lock is taken: should this attempt die inside the provider call,
                # the next one must know that the provider may have the message.
                message.status = MessageStatus.pending
                _store(session, message)
            if message.status == MessageStatus.pending:
                self._deliver(session, message, request.priority, maybe_sent=maybe_sent)
            return _result(message)

    def _record(self, session: Session, key: str, request: SendRequest) -> Message:
        """Decide and write the outbox row, committed before any provider hears of it."""
        message, personal = self._prepare(session, key, request)
        try:
            session.add(message)
            session.flush()  # the row's id, which its links and coupons point to
            personal.attach(session, message)
            return _store(session, message)
        except IntegrityError:
            # A concurrent attempt wrote this step first; the retry will find its result.
            session.rollback()
            raise ApplicationError(f"{key} is being sent by another attempt") from None

    def _deliver(self, session: Session, message: Message, priority: Priority, *, maybe_sent: bool) -> None:
        assert message.channel is not None, "a pending message has its channel"
        channel = Channel(message.channel)
        provider = self._channels.for_channel(channel)
        customer = session.get(Customer, message.customer_id)
        assert customer is not None
        outgoing = OutgoingMessage(
            message_id=message.id or 0,
            channel=channel,
            to=_address(customer, channel),
            subject=message.subject,
            body=message.body or "",
            journey=message.journey,
            unsubscribe_url=_unsubscribe_url(session, message, self._public_url) if channel == Channel.email else None,
        )
        if isinstance(provider, PacedChannel):  # the provider's rate limit is waited out before the lock, not under it
            provider.pace()
        # From here to the commit the customer is locked: a STOP recorded before this point is seen below, and one
        # that arrives during the provider call waits for the commit, so nothing is sent after a STOP is recorded.
        # The lock also makes concurrent journeys count each other's sends against the frequency cap.
        lock_customer(session, message.customer_id)
        now = self._clock()
        if not _allowed(session, message.customer_id, channel, outgoing.to):
            _conclude(session, message, MessageStatus.skipped, "opted_out")
            return
        if self._hold(session, message, customer, priority, now):
            return
        message.provider = provider.name
        try:
            message.provider_id = provider.send(outgoing, maybe_sent=maybe_sent)
            message.status, message.sent_at = MessageStatus.sent, now
        except RecipientOptedOut as e:  # e.g. Twilio 21610: the number replied STOP to the carrier
            message.status, message.reason = MessageStatus.skipped, f"opted_out: {e.code}"
            revoke_consent(session, message.customer_id, channel, source=f"provider:{provider.name}", wording=str(e))
        except PermanentFailure as e:  # a retry cannot mend it: recorded, and the journey goes on
            message.status, message.reason = MessageStatus.failed, f"provider: {e}"[:200]
        message.updated_at = utcnow()
        _store(session, message)

    def _hold(self, session: Session, message: Message, customer: Customer, priority: Priority, now: datetime) -> bool:
        """Quiet hours and the frequency cap: defer the message, or drop it if it is low priority and would wait
        for the cap, and say why."""
        channel = Channel(message.channel or "")
        try:
            pace = earliest_send(session, self._policy, customer, channel, message.kind, now)
        except NoCommonWindowError:
            # The number's zones never share an allowed minute (a whole country code): no time is safe to guess.
            _conclude(session, message, MessageStatus.skipped, "quiet_hours: no common window; set a time zone")
            return True
        if pace.at <= now:
            return False
        if priority == Priority.low and "frequency_cap" in pace.reasons:
            _conclude(session, message, MessageStatus.skipped, "frequency_cap")
            return True
        message.not_before = pace.at
        _conclude(session, message, MessageStatus.deferred, " + ".join(pace.reasons))
        return True

    def _prepare(self, session: Session, key: str, request: SendRequest) -> tuple[Message, Personalisation]:
        personal = Personalisation(self._public_url, self._policy.coupon_valid_for, self._clock())
        customer = session.get(Customer, request.customer_id)
        if customer is None:
            raise ApplicationError(f"unknown customer {request.customer_id}", non_retryable=True)
        message = Message(
            idempotency_key=key,
            customer_id=customer.id,
            journey=request.journey,
            step=request.step,
            template=request.template,
            kind=request.kind,
            status=MessageStatus.pending,
        )
        channel = _choose_channel(session, customer, request.channels)
        if channel is None:
            message.status, message.reason = MessageStatus.skipped, "no_consent"
            return message, personal
        message.channel = channel
        try:
            rendered = self._render(session, customer, request, channel, personal)
        except (TemplateError, ValueError) as e:  # the same text fails the same way on every retry
            activity.logger.error("template %s failed to render: %s", request.template, e)
            message.status, message.reason = MessageStatus.failed, f"template_error: {e}"[:200]
            # Links or codes made before the error belong to no text: none is stored.
            return message, Personalisation(self._public_url, self._policy.coupon_valid_for, self._clock())
        message.subject, message.body = rendered.subject, rendered.body
        if request.kind == MessageKind.marketing:
            if channel == Channel.sms and _first_marketing_text(session, customer.id):
                message.body = self._policy.with_footer(rendered.body)
            elif channel == Channel.email:
                message.body = f"{rendered.body}\n\n--\nUnsubscribe: {personal.unsubscribe_url()}"
        return message, personal

    def _render(
        self, session: Session, customer: Customer, request: SendRequest, channel: Channel, personal: Personalisation
    ) -> Rendered:
        names = {"first_name": customer.first_name, "last_name": customer.last_name}
        context = template_context(self._brand, names, personal, message_context(session, request))
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


def _address(customer: Customer, channel: Channel) -> str:
    address = customer.phone if channel == Channel.sms else customer.email
    if not address:
        raise ApplicationError(f"customer {customer.id} has no {channel} address", non_retryable=True)
    return address


def _conclude(session: Session, message: Message, status: MessageStatus, reason: str) -> None:
    message.status, message.reason, message.updated_at = status, reason, utcnow()
    _store(session, message)


def _first_marketing_text(session: Session, customer_id: str) -> bool:
    """No marketing text has gone to this customer yet: this one carries the opt-out footer."""
    earlier = session.exec(
        select(Message.id).where(
            Message.customer_id == customer_id,
            Message.channel == Channel.sms,
            Message.kind == MessageKind.marketing,
            Message.status == MessageStatus.sent,
        )
    ).first()
    return earlier is None


def _unsubscribe_url(session: Session, message: Message, public_url: str) -> str | None:
    token = session.exec(
        select(Link.token).where(Link.message_id == message.id, Link.kind == LinkKind.unsubscribe)
    ).first()
    return unsubscribe_url(public_url, token) if token else None


def _result(message: Message) -> SendResult:
    if message.status == MessageStatus.sent:
        return SendResult(status="sent", channel=message.channel, message_id=message.id)
    if message.status == MessageStatus.deferred:
        return SendResult(
            status="deferred",
            channel=message.channel,
            message_id=message.id,
            until=message.not_before,
            reason=message.reason,
        )
    return SendResult(status="skipped", channel=message.channel, message_id=message.id, reason=message.reason)
