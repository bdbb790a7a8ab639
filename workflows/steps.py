"""The shared vocabulary every journey is built from: wait (cut short by an exit signal), send, stage, end.

Deterministic: no I/O, no clock but workflow.now(). Activities are called by name, so no database, template
or provider library is imported into the workflow sandbox.
"""

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from models import search
    from models.contracts import (
        Channel,
        ClickedSignal,
        JourneyResult,
        JourneyState,
        MessageEventSignal,
        OptOutSignal,
        PurchaseSignal,
        SendRequest,
        SendResult,
        StepOutcome,
        StepPlan,
    )

SEND_TIMEOUT = timedelta(seconds=60)
# A send is retried until it succeeds (a database or provider outage delays it, never drops it);
# permanent failures are raised non-retryable by the activity.
SEND_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))


class Journey:
    """Base of every journey workflow: state, the `state` query and the signals that end a journey."""

    journey: str = ""
    ends_on_click: str | None = None  # a journey whose goal is a click ends with this outcome at the first one

    def __init__(self) -> None:
        self._exit: str | None = None
        self._state = JourneyState(journey=self.journey, stage="")
        self._channels: set[Channel] = set()  # every channel the journey's plan may use

    def uses(self, channels: set[Channel]) -> None:
        self._channels = channels

    @workflow.signal
    def purchase(self, signal: PurchaseSignal) -> None:
        """The customer bought again: journeys that win customers back have done their job."""
        workflow.logger.info("purchase %s: ending the journey", signal.order_id)
        self._exit = self._exit or "purchased"

    @workflow.signal
    def opted_out(self, signal: OptOutSignal) -> None:
        """The customer opted out of a channel. Consent is checked at every send, so the remaining steps
        fall back to other channels; a journey left with no channel at all ends at once."""
        if signal.channel not in self._state.opted_out:
            self._state.opted_out.append(signal.channel)
        if self._channels and self._channels <= set(self._state.opted_out):
            self._exit = self._exit or "opted_out"

    @workflow.signal
    def clicked(self, signal: ClickedSignal) -> None:
        """The customer clicked a link of this journey's message (recorded by /r/{token})."""
        if signal.step not in self._state.clicked:
            self._state.clicked.append(signal.step)
        if self.ends_on_click:
            self._exit = self._exit or self.ends_on_click

    @workflow.signal
    def message_event(self, signal: MessageEventSignal) -> None:
        """A provider's report on one of this journey's messages; journeys that branch on opens read `state`."""
        event = f"{signal.step}: {signal.event}"
        if event not in self._state.events:  # an email opened ten times is one "open"
            self._state.events.append(event)

    @workflow.query
    def state(self) -> JourneyState:
        return self._state

    async def wait_until(self, when: datetime, next_step: str) -> bool:
        """Sleep until `when` (one timer); False when an exit signal ends the journey first."""
        self._state.next_step, self._state.next_wake_up = next_step, when
        workflow.set_current_details(f"Waiting until {when:%Y-%m-%d %H:%M:%S} UTC to send {next_step}.")
        delay = when - workflow.now()
        if self._exit is None and delay > timedelta(0):
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: self._exit is not None, timeout=delay)
        self._state.next_wake_up = None
        return self._exit is None

    async def send(self, request: SendRequest) -> SendResult | None:
        """Send one step through the send policy; a deferred step sleeps and tries again. None: journey ended."""
        while True:
            workflow.set_current_details(f"Sending {request.step}.")
            result: SendResult = await workflow.execute_activity(
                "send_message",
                request,
                result_type=SendResult,
                start_to_close_timeout=SEND_TIMEOUT,
                retry_policy=SEND_RETRY,
                summary=f"{request.step} ({'/'.join(request.channels)}) to customer {request.customer_id}",
            )
            if result.status != "deferred" or result.until is None:
                self._state.steps_done.append(StepOutcome(step=request.step, at=workflow.now(), outcome=result.summary))
                return result
            if not await self.wait_until(result.until, request.step):
                return None

    def enter_stage(self, stage: str) -> None:
        """Upsert JourneyStep only when the stage changes: each upsert is a billed action."""
        if stage != self._state.stage:
            self._state.stage = stage
            workflow.upsert_search_attributes([search.JOURNEY_STEP.value_set(stage)])

    def end(self, default: str = "completed") -> JourneyResult:
        self._state.ended = self._exit or default
        self._state.next_step = None
        self.enter_stage(self._state.ended)
        workflow.set_current_details(f"Ended: {self._state.ended}.")
        return JourneyResult(ended=self._state.ended, steps_done=self._state.steps_done)

    def step_request(
        self,
        step: StepPlan,
        customer_id: str,
        template: str | None = None,
        *,
        name: str | None = None,
        order_id: str | None = None,
        cart_id: str | None = None,
        products: list[str] | None = None,
        date_id: int | None = None,
        review_id: int | None = None,
    ) -> SendRequest:
        """The step's send. `name` overrides the step's name where a journey sends one step more than once under
        a workflow id (a yearly date, a re-run campaign): it is the message's idempotency key."""
        return SendRequest(
            customer_id=customer_id,
            journey=self.journey,
            step=name or step.name,
            template=template or step.template,
            channels=step.channels,
            kind=step.kind,
            priority=step.priority,
            order_id=order_id,
            cart_id=cart_id,
            products=products or [],
            date_id=date_id,
            review_id=review_id,
        )
