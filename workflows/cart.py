"""Abandoned cart (one per cart, `cart-{cart_id}`): a text with a small discount once the cart has been left alone
for a while, then an email with its items and their reviews. Each step is measured from the cart's latest update,
so every update pushes the next one back. Buying the cart, emptying it or opting out of every channel ends it at
once. A cart gets one series: once this journey has ended, the starter starts no other for the cart."""

from datetime import datetime

from temporalio import workflow

from workflows.steps import Journey

with workflow.unsafe.imports_passed_through():
    from models.contracts import CartInput, CartUpdatedSignal, JourneyResult, StepPlan


@workflow.defn
class AbandonedCartJourney(Journey):
    journey = "cart"

    def __init__(self) -> None:
        super().__init__()
        self._last_update: datetime | None = None
        self._waiting_for: StepPlan | None = None

    @workflow.signal
    def cart_updated(self, signal: CartUpdatedSignal) -> None:
        """The shop reported the cart (signal-with-start brings the first report), or its checkout started."""
        self._last_update = workflow.now()
        if signal.items == 0:
            self._exit = self._exit or "emptied"
        elif self._waiting_for is not None:
            # The timer already set is left alone (a new one per update would be billed); `state` shows the new time.
            due = self._due(self._waiting_for)
            self._state.next_wake_up = due
            workflow.set_current_details(
                f"Cart updated: waiting until {due:%Y-%m-%d %H:%M:%S} UTC to send {self._waiting_for.name}."
            )

    @workflow.run
    async def run(self, journey: CartInput) -> JourneyResult:
        if self._last_update is None:  # started without its signal: the start is the cart's first update
            self._last_update = workflow.now()
        steps = journey.plan.steps
        self._state.stage = steps[0].stage  # set with the search attributes at start, which costs nothing
        self.uses({channel for step in steps for channel in step.channels})
        for step in steps:
            self.enter_stage(step.stage)
            if not await self._wait_for_quiet(step):
                break
            request = self.step_request(step, journey.customer_id, cart_id=journey.cart_id)
            if await self.send(request) is None:
                break
        return self.end()

    def _due(self, step: StepPlan) -> datetime:
        assert self._last_update is not None
        return self._last_update + step.after

    async def _wait_for_quiet(self, step: StepPlan) -> bool:
        """Until the cart has been left alone for `step.after`; False when an exit signal ends the journey. An update
        does not wake the journey: the timer that fires before the new time sleeps on for the rest, so a burst of
        updates costs one more timer, not one per update."""
        self._waiting_for = step
        try:
            while await self.wait_until(self._due(step), step.name):
                if self._due(step) <= workflow.now():
                    return True
            return False
        finally:
            self._waiting_for = None
