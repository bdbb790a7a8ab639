"""Abandoned carts: each cart event starts the cart's journey or pushes its reminders back (signal-with-start)."""

import logging
from datetime import timedelta

from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from models import search
from models.contracts import CartInput, CartPlan, CartUpdatedSignal
from models.tables import Cart, CartStatus, utcnow
from workflows.cart import AbandonedCartJourney

log = logging.getLogger(__name__)

# A journey may end this long after its last step was due: a step deferred by quiet hours or the frequency cap.
LATE_SEND_MARGIN = timedelta(days=2)


def cart_id_of(cart_id: str) -> str:
    """The workflow id of a cart's journey."""
    return f"cart-{cart_id}"


async def cart_activity(client: Client, task_queue: str, journey: CartInput, signal: CartUpdatedSignal) -> bool:
    """Tell the cart's journey about an update, starting it with this update if none runs yet. True: the journey
    was started or told. False: none runs for this cart and none may start, because its one reminder series has
    ended (bought, emptied, sent), or because the cart is empty and had none."""
    workflow_id = cart_id_of(journey.cart_id)
    if signal.items == 0:  # an empty cart is nothing to remind of: it only ends a running journey
        try:
            await client.get_workflow_handle(workflow_id).signal(AbandonedCartJourney.cart_updated, signal)
            return True
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
    try:
        await client.start_workflow(
            AbandonedCartJourney.run,
            journey,
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,  # a closed cart journey is never started again
            start_signal="cart_updated",
            start_signal_args=[signal],
            search_attributes=search.journey_attributes(
                journey.customer_id, AbandonedCartJourney.journey, journey.plan.steps[0].stage
            ),
            static_summary=f"Abandoned-cart journey of customer {journey.customer_id} for cart {journey.cart_id}",
        )
    except WorkflowAlreadyStartedError:
        log.info("%s has ended: cart %s gets no other reminders", workflow_id, journey.cart_id)
        return False
    return True


def open_cart_journeys(session: Session, customer_ids: list[str], plan: CartPlan) -> list[str]:
    """The workflow ids of the customers' carts, not bought and updated recently enough that their journeys may
    still run: whom an opt-out tells (for starter.journeys.running_journeys)."""
    horizon = plan.steps[-1].after + LATE_SEND_MARGIN
    cart_ids = session.exec(
        select(Cart.id).where(
            col(Cart.customer_id).in_(customer_ids),
            Cart.status == CartStatus.open,
            col(Cart.updated_at) > utcnow() - horizon,
        )
    ).all()
    return [cart_id_of(cart_id) for cart_id in cart_ids]
