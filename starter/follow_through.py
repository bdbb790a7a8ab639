"""Order follow-through: the shop's order events start the order's journey or tell it (signal-with-start)."""

import logging

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from models import search
from models.contracts import FollowThroughInput, OrderEventSignal
from workflows.follow_through import FollowThroughJourney

log = logging.getLogger(__name__)


def follow_through_id(order_id: str) -> str:
    """The workflow id of an order's follow-through."""
    return f"follow-through-{order_id}"


async def order_event(client: Client, task_queue: str, journey: FollowThroughInput, event: OrderEventSignal) -> None:
    """Tell the order's follow-through what happened to the order. Shipped or delivered starts it if it has not
    started; a review only tells a running one (a review alone is no reason for order updates). An order has one
    follow-through: an event after it ended (say, a delivery reported after `wait_for_delivery`) is logged and
    dropped."""
    workflow_id = follow_through_id(journey.order_id)
    if event.event == "reviewed":
        try:
            await client.get_workflow_handle(workflow_id).signal(FollowThroughJourney.order_event, event)
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
        return
    try:
        await client.start_workflow(
            FollowThroughJourney.run,
            journey,
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            start_signal="order_event",
            start_signal_args=[event],
            search_attributes=search.journey_attributes(
                journey.customer_id,
                FollowThroughJourney.journey,
                journey.plan.stage_after(event.event),
                journey.order_id,
            ),
            static_summary=f"Order follow-through of customer {journey.customer_id} for order {journey.order_id}",
        )
    except WorkflowAlreadyStartedError:
        log.info("%s has ended: order %s %s is not followed through", workflow_id, journey.order_id, event.event)
