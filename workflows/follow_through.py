"""Order follow-through (one per order, `follow-through-{order_id}`), told by the shop's order events: shipped →
the tracking message at once; delivered → care and how-to content → the review request → an offer of help, each
measured from the delivery. A delivery reported first (or before the tracking went out) skips the tracking; a
review already posted skips the review request; no delivery within `wait_for_delivery` of shipping ends it.
Order updates are not ended by another purchase, only by an opt-out of every channel."""

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow

from workflows.steps import Journey

with workflow.unsafe.imports_passed_through():
    from models.contracts import (
        FollowThroughInput,
        FollowThroughPlan,
        JourneyResult,
        OrderEventSignal,
        PurchaseSignal,
        StepOutcome,
    )


@workflow.defn
class FollowThroughJourney(Journey):
    journey = "follow_through"

    def __init__(self) -> None:
        super().__init__()
        self._shipped_at: datetime | None = None
        self._delivered_at: datetime | None = None
        self._reviewed = False

    @workflow.signal
    def order_event(self, signal: OrderEventSignal) -> None:
        """The shop reported the order shipped or delivered, or the customer reviewed it. A repeated event keeps the
        time it was first heard."""
        if signal.event == "shipped":
            self._shipped_at = self._shipped_at or workflow.now()
        elif signal.event == "delivered":
            self._delivered_at = self._delivered_at or workflow.now()
        else:
            self._reviewed = True

    @workflow.signal
    def purchase(self, signal: PurchaseSignal) -> None:
        """Another purchase does not end the updates about this order."""

    @workflow.run
    async def run(self, journey: FollowThroughInput) -> JourneyResult:
        plan = journey.plan
        # Set with the search attributes at start, from the event that started it, which costs nothing.
        self._state.stage = plan.stage_after("delivered" if self._delivered_at else "shipped")
        self.uses({channel for step in plan.all_steps() for channel in step.channels})
        if self._delivered_at is None and not await self._until_delivered(journey):
            return self.end("not_delivered")  # unless an exit signal came first: end() names that
        await self._after_delivery(journey)
        return self.end()

    async def _until_delivered(self, journey: FollowThroughInput) -> bool:
        """The tracking steps, then the wait for the delivery; False when it did not come (or an exit signal came)."""
        plan = journey.plan
        shipped = self._shipped_at or workflow.info().workflow_start_time
        if self._shipped_at is not None:
            for step in plan.shipped:
                self.enter_stage(step.stage)
                await self._sleep(shipped + step.after, step.name)
                if self._exit is not None or self._delivered_at is not None:
                    break  # delivered before its tracking went out: the tracking is of no use any more
                if await self.send(self.step_request(step, journey.customer_id, order_id=journey.order_id)) is None:
                    break
        await self._sleep(shipped + plan.wait_for_delivery, "delivery")
        return self._exit is None and self._delivered_at is not None

    async def _after_delivery(self, journey: FollowThroughInput) -> None:
        plan: FollowThroughPlan = journey.plan
        assert self._delivered_at is not None
        for step in plan.delivered:
            if step.name == plan.review_step and self._reviewed:
                self._skip(step.name, "reviewed")
                continue
            self.enter_stage(step.stage)
            if not await self.wait_until(self._delivered_at + step.after, step.name):
                return
            if step.name == plan.review_step and self._reviewed:  # the review came while it waited
                self._skip(step.name, "reviewed")
                continue
            if await self.send(self.step_request(step, journey.customer_id, order_id=journey.order_id)) is None:
                return

    async def _sleep(self, when: datetime, next_step: str) -> None:
        """Sleep until `when` (one timer), cut short by the delivery or an exit signal."""
        self._state.next_step, self._state.next_wake_up = next_step, when
        waiting_for = "for the delivery" if next_step == "delivery" else f"to send {next_step}"
        workflow.set_current_details(f"Waiting until {when:%Y-%m-%d %H:%M:%S} UTC {waiting_for}.")
        delay = when - workflow.now()
        if not self._woken() and delay > timedelta(0):
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(self._woken, timeout=delay)
        self._state.next_wake_up = None

    def _woken(self) -> bool:
        return self._exit is not None or self._delivered_at is not None

    def _skip(self, step: str, reason: str) -> None:
        self._state.steps_done.append(StepOutcome(step=step, at=workflow.now(), outcome=f"skipped ({reason})"))
