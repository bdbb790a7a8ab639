"""Behaviour triggers: one message after something the customer did, `after` the step's delay.

- browsed: clicked a link and bought nothing: "thanks for looking" with a code. A purchase ends it unsent.
- reviewed: posted a review: thanks, with a discount.
- code_purchase: bought with their personal code: thanks, with similar items when the catalog has some
  (without them otherwise: the thanks is the point).

Opting out of every channel ends any of them.
"""

from temporalio import workflow

from workflows.cross_sell import recommend
from workflows.steps import Journey

with workflow.unsafe.imports_passed_through():
    from models.contracts import JourneyResult, PurchaseSignal, RecommendRequest, TriggerInput


@workflow.defn
class TriggerJourney(Journey):
    journey = "triggers"

    @workflow.init
    def __init__(self, journey: TriggerInput) -> None:
        super().__init__()
        self._trigger = journey.trigger  # known before any signal is handled

    @workflow.signal
    def purchase(self, signal: PurchaseSignal) -> None:
        """Only the thanks for looking is for someone who has not bought: a purchase ends that one alone."""
        if self._trigger == "browsed":
            super().purchase(signal)

    @workflow.run
    async def run(self, journey: TriggerInput) -> JourneyResult:
        step = journey.step
        self._state.stage = step.stage  # set with the search attributes at start, which costs nothing
        self.uses(set(step.channels))
        if await self.wait_until(workflow.info().workflow_start_time + step.after, step.name):
            products = await self._similar_items(journey) if journey.trigger == "code_purchase" else []
            if self._exit is None:  # a purchase or an opt-out may have arrived while the catalog was read
                request = self.step_request(
                    step,
                    journey.customer_id,
                    order_id=journey.order_id,
                    review_id=journey.review_id,
                    products=products,
                )
                await self.send(request)
        return self.end()

    async def _similar_items(self, journey: TriggerInput) -> list[str]:
        assert journey.order_id is not None, "a code purchase names its order"
        request = RecommendRequest(
            customer_id=journey.customer_id,
            order_id=journey.order_id,
            mode="similar",
            on=workflow.now().date(),
            max_items=journey.max_items,
        )
        return await recommend(request)
