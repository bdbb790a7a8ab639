"""Post-purchase (one per order): thank-you → loyalty & review request by segment → soft win-back →
best incentive. Any new purchase by the customer ends it at once, whatever it is waiting for."""

from temporalio import workflow

from workflows.steps import Journey

with workflow.unsafe.imports_passed_through():
    from models.contracts import JourneyResult, PostPurchaseInput


@workflow.defn
class PostPurchaseJourney(Journey):
    journey = "post_purchase"

    @workflow.run
    async def run(self, journey: PostPurchaseInput) -> JourneyResult:
        started = workflow.info().workflow_start_time
        steps = journey.plan.steps
        self._state.stage = steps[0].stage  # set with the search attributes at start, which costs nothing
        self.uses({channel for step in steps for channel in step.channels})
        for step in steps:
            self.enter_stage(step.stage)
            if not await self.wait_until(started + step.after, step.name):
                break
            template = step.template_for(journey.segment)
            request = self.step_request(step, journey.customer_id, template, order_id=journey.order_id)
            if await self.send(request) is None:
                break
        return self.end()
