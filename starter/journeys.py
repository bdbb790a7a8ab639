"""Starting and signalling journeys. Workflow ids are meaningful, which makes intake idempotent."""

import asyncio
import logging

from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from models import search
from models.contracts import JourneyResult, PostPurchaseInput, PurchaseSignal
from workflows.post_purchase import PostPurchaseJourney

log = logging.getLogger(__name__)


def post_purchase_id(order_id: str) -> str:
    return f"post-purchase-{order_id}"


async def start_post_purchase(
    client: Client, task_queue: str, journey: PostPurchaseInput
) -> WorkflowHandle[PostPurchaseJourney, JourneyResult] | None:
    """Start the order's journey; None when it already exists (running or ended): an order has one."""
    try:
        return await client.start_workflow(
            PostPurchaseJourney.run,
            journey,
            id=post_purchase_id(journey.order_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(search.CUSTOMER_ID, journey.customer_id),
                    SearchAttributePair(search.JOURNEY, PostPurchaseJourney.journey),
                    SearchAttributePair(search.JOURNEY_STEP, journey.plan.steps[0].stage),
                    SearchAttributePair(search.ORDER_ID, journey.order_id),
                ]
            ),
            static_summary=f"Post-purchase journey of customer {journey.customer_id} for order {journey.order_id}",
        )
    except WorkflowAlreadyStartedError:
        return None


async def signal_purchase(client: Client, customer_id: str, order_id: str, *, skip: str | None = None) -> int:
    """Tell the customer's other running journeys about a purchase; returns how many were told."""
    query = f"CustomerId = '{customer_id}' AND ExecutionStatus = 'Running'"
    handles = [
        client.get_workflow_handle(wf.id, run_id=wf.run_id)
        async for wf in client.list_workflows(query)
        if wf.id != skip
    ]
    results = await asyncio.gather(
        *(h.signal("purchase", PurchaseSignal(order_id=order_id)) for h in handles),
        return_exceptions=True,
    )
    for handle, result in zip(handles, results, strict=True):
        if isinstance(result, RPCError):  # it ended between the listing and the signal
            log.info("purchase signal to %s not delivered: %s", handle.id, result)
        elif isinstance(result, BaseException):
            raise result
    return sum(1 for r in results if r is None)
