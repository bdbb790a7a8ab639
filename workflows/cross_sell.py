"""Cross-sell (one per order): at set times after the purchase, products that go with what was bought, from the
catalog as it is that day. Nothing fits: that step sends nothing. A newer purchase ends it (the new order has a
cross-sell of its own), as does opting out of every channel."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.steps import Journey

with workflow.unsafe.imports_passed_through():
    from models.contracts import CrossSellInput, JourneyResult, RecommendRequest, StepOutcome

RECOMMEND_TIMEOUT = timedelta(seconds=30)
# A read of the catalog: retried until the database answers, like a send.
RECOMMEND_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))
NOTHING_TO_RECOMMEND = "skipped (nothing to recommend)"


async def recommend(request: RecommendRequest) -> list[str]:
    """The skus to show, best first, by the `recommend_products` activity; [] when nothing fits."""
    return await workflow.execute_activity(
        "recommend_products",
        request,
        result_type=list[str],
        start_to_close_timeout=RECOMMEND_TIMEOUT,
        retry_policy=RECOMMEND_RETRY,
        summary=f"{request.mode} for order {request.order_id}",
    )


@workflow.defn
class CrossSellJourney(Journey):
    journey = "cross_sell"

    @workflow.run
    async def run(self, journey: CrossSellInput) -> JourneyResult:
        started = workflow.info().workflow_start_time
        plan = journey.plan
        self._state.stage = plan.steps[0].stage  # set with the search attributes at start, which costs nothing
        self.uses({channel for step in plan.steps for channel in step.channels})
        for step in plan.steps:
            self.enter_stage(step.stage)
            if not await self.wait_until(started + step.after, step.name):
                break
            skus = await recommend(
                RecommendRequest(
                    customer_id=journey.customer_id,
                    order_id=journey.order_id,
                    mode="complements",
                    on=workflow.now().date(),  # the season of the day the message goes out
                    complements=plan.complements,
                    max_items=plan.max_items,
                )
            )
            if self._exit is not None:  # a purchase or an opt-out arrived while the catalog was read
                break
            if not skus:
                self._state.steps_done.append(
                    StepOutcome(step=step.name, at=workflow.now(), outcome=NOTHING_TO_RECOMMEND)
                )
                continue
            request = self.step_request(step, journey.customer_id, order_id=journey.order_id, products=skus)
            if await self.send(request) is None:
                break
        return self.end()
