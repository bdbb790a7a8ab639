"""Re-engagement's side effects: who is inactive (one query over the whole shop), the sunset that unsubscribes a
customer who never clicked, and the daily campaign run by the `reengage-daily` schedule.

A customer's last activity is the latest of: their creation, an order placed, an event the shop posted (a site
visit, a cart, anything), a click on one of our links, and a provider's report that they opened a message.
"""

from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, Engine, and_, exists, or_
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from models.contracts import CampaignRequest, CampaignResult, SunsetRequest, SunsetResult
from models.journeys import JourneysConfig
from models.store import consent_status, lock_customer, revoke_consent
from models.tables import (
    Channel,
    Click,
    Consent,
    ConsentStatus,
    Customer,
    Event,
    Link,
    Message,
    Order,
)

SUNSET_SOURCE = "reengage_sunset"
SUNSET_WORDING = "No click on a re-engagement message by the end of the series: unsubscribed from marketing."
# A message's delivery_status once the customer opened it: SendGrid's open and click, Twilio's read receipt.
OPENED_STATUSES = ("open", "click", "read")


def inactive_customers(session: Session, inactive_days: int, now: datetime) -> list[str]:
    """The ids of customers with no activity since `inactive_days` before `now` who can be reached: granted
    consent on a channel they have an address for. One statement, anti-joins on indexed customer ids: no
    per-customer round trip, whatever the size of the shop."""
    cutoff = now - timedelta(days=inactive_days)
    customer = col(Customer.id)
    ordered = exists().where(col(Order.customer_id) == customer, col(Order.placed_at) >= cutoff)
    posted = exists().where(col(Event.customer_id) == customer, col(Event.occurred_at) >= cutoff)
    clicked = exists(
        select(col(Click.id))
        .join(Link, col(Link.token) == col(Click.token))
        .join(Message, col(Message.id) == col(Link.message_id))
        .where(col(Message.customer_id) == customer, col(Click.clicked_at) >= cutoff)
    )
    opened = exists().where(
        col(Message.customer_id) == customer,
        col(Message.delivery_status).in_(OPENED_STATUSES),
        col(Message.delivery_updated_at) >= cutoff,
    )
    query = (
        select(customer)
        .where(col(Customer.created_at) < cutoff, ~ordered, ~posted, ~clicked, ~opened, _reachable())
        .order_by(customer)
    )
    return list(session.exec(query).all())


def _reachable() -> ColumnElement[bool]:
    """The customer's latest consent record for some channel grants it, and they have that channel's address.
    (The latest record: none newer for the channel, by time then id, as `models.store.latest_consent` reads it.)"""
    latest, newer = aliased(Consent), aliased(Consent)
    superseded = exists().where(
        col(newer.customer_id) == col(latest.customer_id),
        col(newer.channel) == col(latest.channel),
        or_(
            col(newer.recorded_at) > col(latest.recorded_at),
            and_(col(newer.recorded_at) == col(latest.recorded_at), col(newer.id) > col(latest.id)),
        ),
    )
    has_address = or_(
        and_(col(latest.channel) == Channel.sms, col(Customer.phone).is_not(None)),
        and_(col(latest.channel) == Channel.email, col(Customer.email).is_not(None)),
    )
    return exists().where(
        col(latest.customer_id) == col(Customer.id),
        col(latest.status) == ConsentStatus.granted,
        has_address,
        ~superseded,
    )


def came_back(session: Session, customer_id: str, since: datetime) -> Literal["purchased", "reactivated"] | None:
    """Whether the database shows the customer active since `since`: an order, a click on any of our links or an
    event the shop posted. (Opens do not count: the series is for those who open and never click.)"""
    ordered = select(col(Order.id)).where(Order.customer_id == customer_id, col(Order.placed_at) >= since)
    if session.exec(ordered).first() is not None:
        return "purchased"
    clicked = (
        select(col(Click.id))
        .join(Link, col(Link.token) == col(Click.token))
        .join(Message, col(Message.id) == col(Link.message_id))
        .where(Message.customer_id == customer_id, col(Click.clicked_at) >= since)
    )
    posted = select(col(Event.id)).where(Event.customer_id == customer_id, col(Event.occurred_at) >= since)
    if session.exec(clicked).first() is not None or session.exec(posted).first() is not None:
        return "reactivated"
    return None


class ReengagementActivities:
    def __init__(self, engine: Engine, config: JourneysConfig, client: Client | None = None) -> None:
        self._engine, self._config, self._client = engine, config, client

    @activity.defn
    def sunset_inactive_customer(self, request: SunsetRequest) -> SunsetResult:
        """Revoke the customer's marketing consent on every channel it is granted on (append-only Consent rows;
        nothing is deleted, and a later opt-in brings them back), unless they came back since the journey began:
        a click or an order whose signal was lost must not unsubscribe them."""
        with Session(self._engine) as session:
            lock_customer(session, request.customer_id)  # a START or checkout opt-in at this moment waits its turn
            back = came_back(session, request.customer_id, request.since)
            if back is not None:
                return SunsetResult(outcome=back)
            # Granted channels only: one denied or never asked stays as it is. (A retry after a committed attempt
            # whose answer was lost finds nothing left to revoke, and says so.)
            revoked = [
                channel
                for channel in Channel
                if consent_status(session, request.customer_id, channel) == ConsentStatus.granted
                and revoke_consent(session, request.customer_id, channel, source=SUNSET_SOURCE, wording=SUNSET_WORDING)
            ]
            session.commit()
            return SunsetResult(outcome="sunset", revoked=revoked)

    @activity.defn
    async def run_reengage_campaign(self, request: CampaignRequest) -> CampaignResult:
        """The daily campaign: starts the journeys on this worker's task queue, heartbeating its progress."""
        # Imported here: the starter imports the activities (build_activities), not the other way round.
        from starter.campaigns import run_reengage_campaign

        if self._client is None:  # build_activities registers this activity only with a client
            raise ApplicationError("the worker has no Temporal client to start journeys with", non_retryable=True)

        def progress(done: int, total: int) -> None:
            activity.heartbeat(done, total)

        return await run_reengage_campaign(
            self._client,
            self._engine,
            self._config,
            activity.info().task_queue,
            inactive_days=request.inactive_days,
            dry_run=request.dry_run,
            on_progress=progress,
        )
