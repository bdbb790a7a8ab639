"""Starting cross-sell journeys: one per order, started at order intake."""

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from models import search
from models.contracts import CrossSellInput
from models.journeys import JourneysConfig
from workflows.cross_sell import CrossSellJourney


def cross_sell_id(order_id: str) -> str:
    return f"cross-sell-{order_id}"


def cross_sell_input(config: JourneysConfig, customer_id: str, order_id: str) -> CrossSellInput:
    """The order's journey with a snapshot of today's plan."""
    return CrossSellInput(customer_id=customer_id, order_id=order_id, plan=config.journeys.cross_sell)


async def start_cross_sell(client: Client, task_queue: str, journey: CrossSellInput) -> bool:
    """Start the order's cross-sell; False when it already exists (running or ended): an order has one."""
    try:
        await client.start_workflow(
            CrossSellJourney.run,
            journey,
            id=cross_sell_id(journey.order_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=search.journey_attributes(
                journey.customer_id, CrossSellJourney.journey, journey.plan.steps[0].stage, journey.order_id
            ),
            static_summary=f"Cross-sell journey of customer {journey.customer_id} for order {journey.order_id}",
        )
    except WorkflowAlreadyStartedError:
        return False
    return True
