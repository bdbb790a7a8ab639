"""Starting and signalling journeys. Workflow ids are meaningful, which makes intake idempotent."""

import asyncio
import logging
from collections.abc import Awaitable

from pydantic import BaseModel
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from models import search
from models.contracts import (
    ClickedSignal,
    JourneyResult,
    MessageEventSignal,
    OptOutSignal,
    OrderEventSignal,
    PostPurchaseInput,
    PurchaseSignal,
    RepliedSignal,
)
from models.tables import Channel
from workflows.post_purchase import PostPurchaseJourney

log = logging.getLogger(__name__)

# A best-effort signal gives up after this long: whoever waits on it (a customer's redirect, a provider's
# webhook) must not wait out the client's retries while Temporal is unreachable.
BEST_EFFORT_SIGNAL_SECONDS = 3.0


def post_purchase_id(order_id: str) -> str:
    return f"post-purchase-{order_id}"


def conversation_id(customer_id: str) -> str:
    """The customer's SMS conversation (a survey, a hand-off to a human), when one runs."""
    return f"conversation-{customer_id}"


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
            search_attributes=search.journey_attributes(
                journey.customer_id, PostPurchaseJourney.journey, journey.plan.steps[0].stage, journey.order_id
            ),
            static_summary=f"Post-purchase journey of customer {journey.customer_id} for order {journey.order_id}",
        )
    except WorkflowAlreadyStartedError:
        return None


async def signal_purchase(client: Client, workflow_ids: list[str], order_id: str) -> int:
    """Tell journeys about a purchase; returns how many were told. Journeys that already ended are skipped.

    The ids come from the database, not from visibility, which is eventually consistent: a journey started
    a moment ago would not be listed yet.
    """
    return await _signal(client, workflow_ids, "purchase", PurchaseSignal(order_id=order_id))


async def signal_opt_out(client: Client, workflow_ids: list[str], channel: Channel) -> int:
    """Tell journeys the customer opted out of a channel everywhere; returns how many were told."""
    return await _signal(client, workflow_ids, "opted_out", OptOutSignal(channel=channel))


async def signal_clicked(client: Client, workflow_id: str, signal: ClickedSignal) -> int:
    """Tell a journey the customer clicked a link of one of its messages; 0 when it has ended."""
    return await _signal(client, [workflow_id], "clicked", signal)


async def signal_message_event(client: Client, workflow_id: str, signal: MessageEventSignal) -> int:
    """Tell a journey what a provider reported about one of its messages; 0 when it has ended."""
    return await _signal(client, [workflow_id], "message_event", signal)


async def signal_order_event(client: Client, workflow_id: str, signal: OrderEventSignal) -> int:
    """Tell an order's running follow-through what happened to the order; 0 when none runs."""
    return await _signal(client, [workflow_id], "order_event", signal)


async def signal_replied(client: Client, workflow_ids: list[str], signal: RepliedSignal) -> int:
    """Tell the customer's conversation that they texted something; 0 when none runs (the text is stored)."""
    return await _signal(client, workflow_ids, "replied", signal)


async def signal_or_log(what: str, signalling: Awaitable[object]) -> None:
    """Await a signal whose facts are already stored: a failure is logged, never raised, because the caller's
    answer (a redirect, a webhook's 2xx) must not depend on Temporal, and a provider's retry of a webhook would
    be deduplicated without signalling again anyway."""
    try:
        await asyncio.wait_for(signalling, BEST_EFFORT_SIGNAL_SECONDS)
    except (RPCError, TimeoutError) as e:
        log.error("%s; the journey was not told: %s", what, str(e) or "timed out")
    except Exception:
        log.exception("%s; the journey was not told", what)


async def _signal(client: Client, workflow_ids: list[str], name: str, arg: BaseModel) -> int:
    results = await asyncio.gather(
        *(client.get_workflow_handle(wid).signal(name, arg) for wid in workflow_ids),
        return_exceptions=True,
    )
    for workflow_id, result in zip(workflow_ids, results, strict=True):
        if isinstance(result, RPCError) and result.status == RPCStatusCode.NOT_FOUND:
            log.debug("%s signal: %s has ended", name, workflow_id)
        elif isinstance(result, BaseException):
            raise result
    return sum(1 for r in results if r is None)
