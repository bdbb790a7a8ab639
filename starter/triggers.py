"""Starting behaviour triggers: a thanks for looking after a click, for a review, for a purchase with a code.

Ids: `browsed-{customer_id}-{YYYYMMDD}`, `reviewed-{order_id}-{review_id}`, `code-purchase-{order_id}`, each started
at most once. A customer gets at most one thanks for looking a day (the id of the day is never reused) and never a
second while one is still waiting: before today's starts, the days whose journey may still run are looked up by id
(not in visibility, which lags), and a running one means no new start. Two clicks at the same moment on the same day
are one start (the id); only two on either side of midnight UTC could race past the look-up.
"""

import asyncio
from datetime import UTC, date, datetime, timedelta

from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from models import search
from models.contracts import StepPlan, Trigger, TriggerInput
from models.journeys import JourneysConfig
from models.tables import Order, Review, utcnow
from workflows.triggers import TriggerJourney

# A thanks may be deferred (quiet hours, the frequency cap) past its delay: a journey may still run this long after.
MAY_RUN_PAST_ITS_DELAY = timedelta(days=1)

# A click on these journeys' messages starts no thanks for looking: the triggers' own (a click on a thanks for
# looking would earn a code every day) and the abandoned cart's (it follows up with an offer of its own).
NO_THANKS_FOR_CLICKS_IN = frozenset({"triggers", "cart"})


def thanks_for_looking_follows(journey: str, kind: str) -> bool:
    """Whether a click on a message of `journey` (its `kind`: marketing or transactional) is browsing to thank for:
    a marketing message's link, outside the journeys that follow a click up themselves. A tracking link is not."""
    return kind == "marketing" and journey not in NO_THANKS_FOR_CLICKS_IN


def browsed_id(customer_id: str, on: date) -> str:
    return f"browsed-{customer_id}-{on:%Y%m%d}"


def reviewed_id(order_id: str, review_id: int) -> str:
    return f"reviewed-{order_id}-{review_id}"


def code_purchase_id(order_id: str) -> str:
    return f"code-purchase-{order_id}"


def trigger_id(journey: TriggerInput, on: date) -> str:
    """`on`: the day a browsed trigger is for."""
    if journey.trigger == "browsed":
        return browsed_id(journey.customer_id, on)
    if journey.trigger == "reviewed":
        assert journey.review_id is not None  # TriggerInput checks it
        assert journey.order_id is not None  # reviews are of orders
        return reviewed_id(journey.order_id, journey.review_id)
    assert journey.order_id is not None
    return code_purchase_id(journey.order_id)


def trigger_input(
    config: JourneysConfig,
    trigger: Trigger,
    customer_id: str,
    *,
    order_id: str | None = None,
    review_id: int | None = None,
) -> TriggerInput:
    """The trigger's journey with a snapshot of its step of today's plan."""
    plan = config.journeys.triggers
    return TriggerInput(
        trigger=trigger,
        customer_id=customer_id,
        step=getattr(plan, trigger),
        order_id=order_id,
        review_id=review_id,
        max_items=plan.similar_items,
    )


def browsed_ids(customer_id: str, step: StepPlan, today: date) -> list[str]:
    """Today's thanks for looking and those of the days before it that may still be running, newest first:
    whom a purchase tells (`config.journeys.triggers.browsed` is the step)."""
    days_back = -(-(step.after + MAY_RUN_PAST_ITS_DELAY) // timedelta(days=1))  # rounded up
    return [browsed_id(customer_id, today - timedelta(days=n)) for n in range(days_back + 1)]


def running_triggers(session: Session, customer_ids: list[str], config: JourneysConfig) -> list[str]:
    """The ids of the customers' triggers that may still be running, from the database: whom an opt-out tells."""
    plan, now = config.journeys.triggers, utcnow()
    reviews = session.exec(
        select(Review.order_id, Review.id).where(
            col(Review.customer_id).in_(customer_ids),
            col(Review.posted_at) > now - plan.reviewed.after - MAY_RUN_PAST_ITS_DELAY,
        )
    ).all()
    code_orders = session.exec(
        select(Order.id).where(
            col(Order.customer_id).in_(customer_ids),
            col(Order.coupon_code).is_not(None),
            col(Order.placed_at) > now - plan.code_purchase.after - MAY_RUN_PAST_ITS_DELAY,
        )
    ).all()
    return [
        *(wid for customer_id in customer_ids for wid in browsed_ids(customer_id, plan.browsed, now.date())),
        *(reviewed_id(order_id, review_id) for order_id, review_id in reviews if review_id is not None),
        *(code_purchase_id(order_id) for order_id in code_orders),
    ]


async def start_trigger(client: Client, task_queue: str, journey: TriggerInput, *, on: date | None = None) -> bool:
    """Start the trigger's journey; False when it already exists (running or ended) or, for a thanks for looking,
    when one of an earlier day is still running. `on`: the day of a click (default: today, UTC)."""
    on = on or datetime.now(UTC).date()
    if journey.trigger == "browsed" and await _any_running(
        client, browsed_ids(journey.customer_id, journey.step, on)[1:]
    ):
        return False
    try:
        await client.start_workflow(
            TriggerJourney.run,
            journey,
            id=trigger_id(journey, on),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=search.journey_attributes(
                journey.customer_id, TriggerJourney.journey, journey.step.stage, journey.order_id
            ),
            static_summary=_summary(journey),
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


def _summary(journey: TriggerInput) -> str:
    about = {
        "browsed": "a click without a purchase",
        "reviewed": f"review {journey.review_id}",
        "code_purchase": f"order {journey.order_id}, bought with a personal code",
    }[journey.trigger]
    return f"Thanks ({journey.trigger}) to customer {journey.customer_id} for {about}"


async def _any_running(client: Client, workflow_ids: list[str]) -> bool:
    async def running(workflow_id: str) -> bool:
        try:
            description = await client.get_workflow_handle(workflow_id).describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return description.status == WorkflowExecutionStatus.RUNNING

    return any(await asyncio.gather(*(running(wid) for wid in workflow_ids)))
