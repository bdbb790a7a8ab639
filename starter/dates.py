"""The dates journey: a profile change (POST /customers, an order's customer) tells it, starting it if none runs."""

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from models import search
from models.contracts import DatesChangedSignal, DatesInput
from workflows.dates import WAITING_STAGE, DatesJourney


def dates_id(customer_id: str) -> str:
    return f"dates-{customer_id}"


async def dates_changed(client: Client, task_queue: str, journey: DatesInput, *, start: bool = True) -> None:
    """Tell the customer's dates journey that their dates changed: it reads them again at once, and adopts the plan
    of `journey`. With `start` (the customer has dates), a journey is started when none runs; without, only a
    running one is told (it ends when no date is left). A journey that ended (no dates left, opted out) is started
    anew."""
    workflow_id, signal = dates_id(journey.customer_id), DatesChangedSignal(plan=journey.plan)
    if not start:
        try:
            await client.get_workflow_handle(workflow_id).signal(DatesJourney.dates_changed, signal)
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
        return
    await client.start_workflow(
        DatesJourney.run,
        journey,
        id=workflow_id,
        task_queue=task_queue,
        start_signal="dates_changed",
        start_signal_args=[signal],
        search_attributes=search.journey_attributes(journey.customer_id, DatesJourney.journey, WAITING_STAGE),
        static_summary=f"Birthday and dates journey of customer {journey.customer_id}",
    )
