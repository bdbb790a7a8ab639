"""SendGrid's signed Event Webhook: delivery and engagement events for the emails we sent.

Every request is verified before anything else, with the SDK's `EventWebhook`: an ECDSA (P-256, SHA-256)
signature over the `X-Twilio-Email-Event-Webhook-Timestamp` header followed by the raw body, checked against
SENDGRID_WEBHOOK_PUBLIC_KEY, and a timestamp within five minutes of now (a captured request cannot be replayed
later). No key configured, a missing header, a forged or stale signature: 403, and nothing is read from or
written to the database.

Each event is handled once: its `sg_event_id` is recorded as a WebhookReceipt(provider="sendgrid") in the same
transaction as its effects, so a redelivered batch (SendGrid retries for up to 24 hours) changes nothing. An
event finds its outbox row by our custom argument `comeback_message_id` (or, failing that, by the X-Message-Id
that starts `sg_message_id`, up to a dot); an event for a message we do not know is skipped, its receipt still
recorded.

Once a batch is stored, each new event (not a redelivered one) about a journey's message is signalled to that
journey as `message_event`. Signalling is best effort: the stored event is what counts, so an unreachable
Temporal or an ended journey is logged and the answer is still 204. A revoked consent is not signalled as an
opt-out: every later send checks consent, so the next email is skipped all the same.
"""

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from fastapi import APIRouter, HTTPException, Request, Response, status
from sendgrid.helpers.eventwebhook import EventWebhook
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client

from channels.sendgrid import MESSAGE_ID_ARG
from models.contracts import MessageEventSignal
from models.journeys import JourneysConfig
from models.links import workflow_id_of
from models.settings import Settings
from models.store import lock_customer, revoke_consent
from models.tables import Channel, Customer, Message, WebhookReceipt, utcnow
from starter.customer_journeys import running_journeys
from starter.journeys import signal_message_event, signal_opt_out, signal_or_log

log = logging.getLogger(__name__)

PROVIDER = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_SKEW_SECONDS = 5 * 60

# SendGrid's delivery events in the order a message moves through them; events arrive out of order and in
# batches, so a status only ever replaces a lower-ranked one. The outcomes that mean the email never arrived
# (bounce, blocked, dropped) are terminal: they replace anything reported before (an asynchronous bounce can
# follow "delivered") and nothing replaces them; among themselves the first reported stands.
# spamreport, unsubscribe and group_unsubscribe are about the recipient, not the message's delivery: they change
# consent, never delivery_status.
STATUS_RANK = {
    "processed": 0,
    "deferred": 1,
    "delivered": 2,
    "open": 3,
    "click": 4,
    "bounce": 5,
    "blocked": 5,
    "dropped": 5,
}
TERMINAL_RANK = 5
# Events that mean the address must get no more email from us: its consent is revoked.
REVOKING_EVENTS = frozenset({"bounce", "dropped", "spamreport", "unsubscribe", "group_unsubscribe"})
# A drop revokes consent only when SendGrid dropped it because the address is suppressed or invalid; not for
# reasons that are ours to fix ("Invalid SMTPAPI header", "Spam Content", "Recipient List over Package Quota").
SUPPRESSED_DROP_REASONS = frozenset({"bounced address", "invalid", "unsubscribed address", "spam reporting address"})
# What a journey is told (as `message_event`): outcomes and engagement, not SendGrid's intermediate steps
# (processed, deferred), each of which would cost a signal and tell a journey nothing it branches on.
SIGNALLED_EVENTS = frozenset(
    {"delivered", "open", "click", "bounce", "blocked", "dropped", "spamreport", "unsubscribe", "group_unsubscribe"}
)

# A journey to tell about one of its messages: (workflow id, signal).
Told = tuple[str, MessageEventSignal]


def sendgrid_events(
    settings: Settings, engine: Engine, config: JourneysConfig, temporal: Callable[[], Client]
) -> APIRouter:
    router = APIRouter(prefix="/webhooks/sendgrid", tags=["webhooks"])
    verifier = EventWebhook()
    public_key = _load_key(verifier, settings.sendgrid_webhook_public_key)

    async def verified(request: Request) -> bytes:
        """The raw body, once its signature proves SendGrid sent it within the last five minutes."""
        if public_key is None:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "SendGrid webhooks are off: SENDGRID_WEBHOOK_PUBLIC_KEY is not set or not a valid key",
            )
        signature = request.headers.get(SIGNATURE_HEADER)
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid signature")
        try:
            sent_at = int(timestamp)
        except ValueError:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid signature") from None
        if abs(time.time() - sent_at) > MAX_SKEW_SECONDS:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "stale timestamp")
        body = await request.body()
        try:
            # The SDK signs `timestamp + payload` as text: the body must be the exact UTF-8 SendGrid sent.
            ok = verifier.verify_signature(body.decode("utf-8"), signature, timestamp, public_key)
        except (UnicodeDecodeError, binascii.Error, ValueError):  # not UTF-8, not base64, not a DER signature
            ok = False
        if not ok:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid signature")
        return body

    @router.post("/events", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
    async def events(request: Request) -> Response:
        """A batch of delivery and engagement events (SendGrid's signed Event Webhook)."""
        body = await verified(request)
        try:
            batch = json.loads(body)
        except ValueError:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not JSON") from None
        if not isinstance(batch, list):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not a JSON array of events")
        events = [e for e in batch if isinstance(e, dict)]
        told, opted_out = await run_in_threadpool(handle_events, engine, events, config)
        await tell_journeys(temporal, told)
        if opted_out:  # the consent is stored: every later email is skipped even if a journey is not told
            what = f"email opt-out of {len(opted_out)} journeys stored"
            await signal_or_log(what, signal_opt_out(temporal(), sorted(opted_out), Channel.email))
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router


def _load_key(verifier: EventWebhook, key: str | None) -> EllipticCurvePublicKey | None:
    """SendGrid shows the key as base64 DER; a PEM block (headers and line breaks) is accepted as well."""
    if not key:
        return None
    der = "".join(line.strip() for line in key.strip().splitlines() if line.strip() and "-----" not in line)
    try:
        base64.b64decode(der, validate=True)
        loaded = verifier.convert_public_key_to_ecdsa(der)
    except (ValueError, binascii.Error) as e:
        log.error("SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid public key (%s): every SendGrid event is refused", e)
        return None
    if not isinstance(loaded, EllipticCurvePublicKey):
        log.error("SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA key: every SendGrid event is refused")
        return None
    return loaded


@dataclass(frozen=True)
class Event:
    kind: str
    event_id: str
    sg_message_id: str
    email: str
    message_id: int | None
    reason: str
    bounce_type: str

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> "Event":
        ours = raw.get(MESSAGE_ID_ARG)
        try:
            message_id = int(ours) if ours is not None else None
        except (TypeError, ValueError):
            message_id = None
        return cls(
            kind=str(raw.get("event") or ""),
            event_id=str(raw.get("sg_event_id") or ""),
            sg_message_id=str(raw.get("sg_message_id") or ""),
            email=str(raw.get("email") or ""),
            message_id=message_id,
            reason=str(raw.get("reason") or ""),
            bounce_type=str(raw.get("type") or ""),
        )

    @property
    def x_message_ids(self) -> list[str]:
        """What the send's X-Message-Id may be: `sg_message_id` is that id, a dot, then the recipient's part. Today's
        ids have no dot (the first part is the id); older ones did, so every prefix ending before a dot is tried."""
        parts = self.sg_message_id.split(".")
        return [".".join(parts[:n]) for n in range(1, len(parts) + 1)] if self.sg_message_id else []

    @property
    def status(self) -> str:
        """The delivery status the event reports; a "blocked" bounce is a temporary refusal, kept apart."""
        return "blocked" if self.kind == "bounce" and self.bounce_type == "blocked" else self.kind

    @property
    def revokes(self) -> bool:
        if self.kind not in REVOKING_EVENTS or self.status == "blocked":
            return False
        return self.kind != "dropped" or self.reason.strip().lower() in SUPPRESSED_DROP_REASONS


def handle_events(engine: Engine, batch: list[dict[str, Any]], config: JourneysConfig) -> tuple[list[Told], set[str]]:
    """Store each event once; return the journeys to tell about the events stored now (not about duplicates),
    and the journeys of customers whose email consent they revoked (an unsubscribe opts out everywhere at once)."""
    told: list[Told] = []
    opted_out: set[str] = set()
    for raw in batch:
        event = Event.parse(raw)
        with Session(engine) as session:
            try:
                message, revoked = handle_event(session, event)
                tell = journey_event(message, event)
                session.commit()
            except IntegrityError:  # a duplicate delivery of this event: handled the first time
                session.rollback()
                log.info("duplicate SendGrid event %s ignored", event.event_id)
                continue
            if revoked and message is not None:
                opted_out |= {workflow_id_of(message), *running_journeys(session, [message.customer_id], config)}
        if tell is not None:
            told.append(tell)
    return told, opted_out


def journey_event(message: Message | None, event: Event) -> Told | None:
    if message is None or message.id is None or event.status not in SIGNALLED_EVENTS:
        return None
    return workflow_id_of(message), MessageEventSignal(step=message.step, message_id=message.id, event=event.status)


async def tell_journeys(temporal: Callable[[], Client], told: list[Told]) -> None:
    """Signal every journey at once (each bounded in time): a large batch must not wait on them one by one."""
    if not told:
        return
    client = temporal()
    await asyncio.gather(
        *(
            signal_or_log(
                f"SendGrid {signal.event} on message {signal.message_id} stored",
                signal_message_event(client, workflow_id, signal),
            )
            for workflow_id, signal in told
        )
    )


def handle_event(session: Session, event: Event) -> tuple[Message | None, bool]:
    """Apply one event; the message it is about, if it is ours, and whether it revoked email consent now."""
    if event.event_id:
        session.add(WebhookReceipt(provider=PROVIDER, key=event.event_id[:200]))
        session.flush()  # a duplicate fails here, before anything else is changed
    else:  # SendGrid always sends one; without it, what follows is idempotent anyway
        log.warning("SendGrid %s event without sg_event_id", event.kind)
    message = find_message(session, event)
    if message is None:
        # Not ours (another system on the same SendGrid account), or not yet committed: answered 204 all the
        # same, or SendGrid retries the batch for a day.
        log.info("SendGrid %s event for unknown message %s", event.kind, event.message_id or event.sg_message_id)
        return None, False
    rank = STATUS_RANK.get(event.status)
    current = STATUS_RANK.get(message.delivery_status or "")
    if rank is not None and (current is None or (current < TERMINAL_RANK and rank > current)):
        message.delivery_status, message.delivery_updated_at = event.status, utcnow()
        session.add(message)
    return message, event.revokes and revoke_email(session, message, event)


def find_message(session: Session, event: Event) -> Message | None:
    if event.message_id is not None:
        message = session.get(Message, event.message_id)
        # Cross-checked: another environment (staging) sending through the same account numbers its rows too.
        if (
            message is not None
            and message.provider == PROVIDER
            and (not message.provider_id or not event.sg_message_id or message.provider_id in event.x_message_ids)
        ):
            return message
    if event.x_message_ids:
        return session.exec(
            select(Message).where(Message.provider == PROVIDER, col(Message.provider_id).in_(event.x_message_ids))
        ).first()
    return None


def revoke_email(session: Session, message: Message, event: Event) -> bool:
    """The address is suppressed at SendGrid: the customer's email consent is revoked, once. True if it was now."""
    customer = session.get(Customer, message.customer_id)
    if customer is None or not customer.email:  # no address on file (an erased customer): nothing to revoke
        return False
    if event.email and customer.email.strip().lower() != event.email.strip().lower():
        # The customer has changed address since: the suppressed one is no longer theirs.
        log.info("SendGrid %s on message %s: customer %s now uses another address", event.kind, message.id, customer.id)
        return False
    detail = f" ({event.reason})" if event.reason else ""
    # As for STOP: an email in flight to this customer is sent or not before the consent changes, never after.
    lock_customer(session, customer.id)
    return revoke_consent(
        session,
        customer.id,
        Channel.email,
        source=f"provider:{PROVIDER}:{event.kind}",
        wording=f"SendGrid {event.kind}{detail} on message {message.id}",
    )
