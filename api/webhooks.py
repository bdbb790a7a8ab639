"""Twilio's webhooks: delivery status callbacks and inbound texts (STOP, START, HELP, and replies).

Every request's signature is checked first, against the configured public URL (the one Twilio called, not the
one this process sees behind a proxy) and every form field; a missing or wrong signature is a 403 and nothing is
read from or written to the database.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import ImmutableMultiDict
from temporalio.client import Client
from temporalio.service import RPCError
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from api.keywords import classify
from channels.twilio import OPTED_OUT
from models.contracts import MessageEventSignal, RepliedSignal
from models.journeys import Brand, JourneysConfig
from models.links import workflow_id_of
from models.settings import Settings
from models.store import lock_customer, revoke_consent
from models.tables import Channel, Consent, ConsentStatus, Customer, Message, Reply, WebhookReceipt, utcnow
from starter.customer_journeys import running_journeys
from starter.journeys import (
    conversation_id,
    signal_message_event,
    signal_opt_out,
    signal_or_log,
    signal_replied,
)

log = logging.getLogger(__name__)

PROVIDER = "twilio"
KEYWORD_SOURCE = "sms_keyword"
# Twilio's statuses, in the order a message moves through them; callbacks arrive out of order, so a status only
# ever replaces an earlier one. The three outcomes share a rank: the first reported stands.
STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "undelivered": 2, "failed": 2, "read": 3}
# The outcomes a journey is told (as `message_event`), once: when the message's status becomes one of them.
SIGNALLED_STATUSES = frozenset({"delivered", "undelivered", "failed"})
XML = "application/xml"

Form = ImmutableMultiDict[str, str]


def twilio_webhooks(
    settings: Settings, engine: Engine, config: JourneysConfig, temporal: Callable[[], Client]
) -> APIRouter:
    router = APIRouter(prefix="/webhooks/twilio", tags=["webhooks"])
    validator = RequestValidator(settings.twilio_auth_token) if settings.twilio_auth_token else None
    public_url = settings.public_url.rstrip("/")

    async def verified(request: Request) -> Form:
        """The form fields, once the X-Twilio-Signature header proves Twilio sent them to our public URL."""
        if validator is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "Twilio webhooks are off: TWILIO_AUTH_TOKEN is not set")
        signature = request.headers.get("X-Twilio-Signature")
        if not signature:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid signature")
        url = public_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        body = (await request.body()).decode("utf-8", errors="replace")
        form: Form = ImmutableMultiDict(parse_qsl(body, keep_blank_values=True))
        if not validator.validate(url, form, signature):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid signature")
        return form

    @router.post("/status", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
    async def delivery_status(request: Request) -> Response:
        """A message's delivery status moved (Twilio calls the status_callback each send names)."""
        form = await verified(request)
        told = await run_in_threadpool(
            update_status, engine, form.get("MessageSid", ""), form.get("MessageStatus", ""), form.get("ErrorCode")
        )
        if told is not None:  # best effort: the status is stored, and a retried callback would not tell again
            workflow_id, signal = told
            what = f"Twilio {signal.event} on message {signal.message_id} stored"
            await signal_or_log(what, signal_message_event(temporal(), workflow_id, signal))
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.post("/sms", response_class=Response, responses={200: {"content": {XML: {}}}})
    async def inbound(request: Request) -> Response:
        """An inbound text: STOP and START change SMS consent, HELP gets the brand's help text, and anything
        else is stored as a reply and told to the customer's conversation, if one runs."""
        form = await verified(request)
        key = request.headers.get("I-Twilio-Idempotency-Token") or form.get("MessageSid") or None
        inbound = await run_in_threadpool(
            handle_inbound, engine, config, form.get("From", ""), form.get("Body", ""), key
        )
        if inbound.opted_out:
            try:
                await signal_opt_out(temporal(), inbound.opted_out, Channel.sms)
            except RPCError as e:  # the consent is stored: every later send skips SMS even if a journey is not told
                log.error("opt-out stored, journeys not told (%s): %s", inbound.opted_out, e)
        if inbound.replied is not None:
            conversations, signal = inbound.replied
            what = f"reply {signal.reply_id} stored"
            await signal_or_log(what, signal_replied(temporal(), conversations, signal))
        return Response(inbound.twiml, media_type=XML)

    return router


def update_status(
    engine: Engine, sid: str, reported: str, error_code: str | None
) -> tuple[str, MessageEventSignal] | None:
    """Store the status; return the journey to tell and what, when the message reached an outcome just now."""
    told = None
    with Session(engine) as session:
        message = session.exec(select(Message).where(Message.provider == PROVIDER, Message.provider_id == sid)).first()
        if message is None:
            # Not ours, or not yet committed: answered 200 all the same, or Twilio retries it for hours.
            log.info("status %s for unknown Twilio message %s", reported, sid)
            return None
        opted_out = error_code == str(OPTED_OUT) and message.channel == Channel.sms
        if opted_out:  # as for STOP: a send in flight for this customer finishes first, a later one sees it
            lock_customer(session, message.customer_id)
        rank = STATUS_RANK.get(reported)
        if rank is not None and (message.delivery_status is None or rank > STATUS_RANK[message.delivery_status]):
            message.delivery_status, message.delivery_updated_at = reported, utcnow()
            session.add(message)
            if reported in SIGNALLED_STATUSES and message.id is not None:
                signal = MessageEventSignal(step=message.step, message_id=message.id, event=reported)
                told = workflow_id_of(message), signal
        # The number replied STOP to the carrier (or Twilio's own opt-out): every later send must skip it.
        if opted_out:
            wording = f"Twilio error {OPTED_OUT} on message {sid}"
            revoke_consent(session, message.customer_id, Channel.sms, source=f"provider:{PROVIDER}", wording=wording)
        session.commit()
    return told


@dataclass(frozen=True)
class Inbound:
    twiml: str  # our answer
    opted_out: list[str] = field(default_factory=list)  # after a STOP: the journeys to tell
    replied: tuple[list[str], RepliedSignal] | None = None  # any other text: the conversations to tell


def handle_inbound(engine: Engine, config: JourneysConfig, sender: str, body: str, key: str | None) -> Inbound:
    """Record what the text asks for (once per delivery) and say whom to tell."""
    brand, intent, journeys = config.brand, classify(body), []
    with Session(engine) as session:
        customers = session.exec(select(Customer).where(Customer.phone == sender)).all() if sender else []
        if intent in ("stop", "start") and customers:
            # Each customer's lock first (in one order, so two deliveries cannot deadlock): a send in flight
            # finishes before the consent is recorded, and a send after it sees the consent.
            for customer_id in sorted(c.id for c in customers):
                lock_customer(session, customer_id)
            if key:
                session.add(WebhookReceipt(provider=PROVIDER, key=key[:200]))
            for customer in customers:
                session.add(_keyword_consent(customer.id, intent == "stop", body, brand))
            try:
                session.commit()
            except IntegrityError:  # a duplicate delivery: handled the first time
                session.rollback()
                log.info("duplicate Twilio delivery %s ignored", key)
            if intent == "stop":  # told again on a duplicate: harmless, and mends a first delivery that failed
                journeys = running_journeys(session, [c.id for c in customers], config)
        if intent == "other":
            replied = store_reply(session, [c.id for c in customers], sender, body, key)
            return Inbound(_reply(intent, brand, known=bool(customers)), replied=replied)
    return Inbound(_reply(intent, brand, known=bool(customers)), opted_out=journeys)


def store_reply(
    session: Session, customer_ids: list[str], sender: str, body: str, key: str | None
) -> tuple[list[str], RepliedSignal] | None:
    """Keep the text (a question, an answer to a survey) for the shop; None for a duplicate delivery."""
    # A number shared by several customers: the text is kept once, unattributed, and each conversation is told.
    reply = Reply(
        customer_id=customer_ids[0] if len(customer_ids) == 1 else None,
        sender=sender[:20],
        body=body,
        provider_key=key[:200] if key else None,
    )
    session.add(reply)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        log.info("duplicate Twilio delivery %s ignored", key)
        return None
    assert reply.id is not None
    return [conversation_id(c) for c in customer_ids], RepliedSignal(reply_id=reply.id)


def _keyword_consent(customer_id: str, stop: bool, body: str, brand: Brand) -> Consent:
    if stop:
        return Consent(
            customer_id=customer_id,
            channel=Channel.sms,
            status=ConsentStatus.revoked,
            source=KEYWORD_SOURCE,
            wording=body,
        )
    return Consent(
        customer_id=customer_id,
        channel=Channel.sms,
        status=ConsentStatus.granted,
        source=KEYWORD_SOURCE,
        wording=brand.sms_consent_wording,
        wording_version=brand.consent_wording_version,
    )


def _reply(intent: str, brand: Brand, *, known: bool) -> str:
    response = MessagingResponse()
    if intent == "stop":  # answered even for a number we do not know: carrier rules
        response.message(
            f"{brand.name}: you are unsubscribed and will receive no more messages. Reply START to resubscribe."
        )
    elif intent == "start" and known:
        response.message(
            f"{brand.name}: you are subscribed to texts again. {brand.sms_frequency}. Msg & data rates may apply. "
            "Reply HELP for help, STOP to cancel."
        )
    elif intent == "help":
        response.message(brand.help_text)
    return str(response)
