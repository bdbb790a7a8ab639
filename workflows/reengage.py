"""Re-engagement (`reengage-{customer_id}`), started by a campaign for a customer inactive for `inactive_days`:
survey → contest to those who did not open the survey → unique coupon to those who opened neither. A click on any
of its messages ends it at once ("reactivated"), so do a purchase and opting out of every channel. No click by
`sunset_after` → the customer is unsubscribed from marketing (consent revoked, nothing deleted): "sunset".

The workflow id is reused by later campaigns once a run has closed, so every step's name carries the run's start
time (`survey_20261126T150000`): message keys are `{workflow_id}/{step}` and must never repeat.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.steps import SEND_RETRY, Journey

with workflow.unsafe.imports_passed_through():
    from models.contracts import (
        CampaignRequest,
        CampaignResult,
        JourneyResult,
        ReengageInput,
        StepOutcome,
        SunsetRequest,
        SunsetResult,
    )

# What a provider reports when the customer opened a message. A provider's own "click" is an open too, not a
# reactivation: it may be the unsubscribe link; our tracked links signal `clicked` themselves.
OPENED = ("open", "click", "read")
SUNSET_TIMEOUT = timedelta(seconds=30)
# The campaign may take hours for a large shop; a stuck attempt is noticed by its heartbeats, and all attempts end
# before the next day's run (the schedule skips a run while the previous one is still going).
CAMPAIGN_TIMEOUT = timedelta(hours=20)
CAMPAIGN_HEARTBEAT = timedelta(minutes=2)
CAMPAIGN_RETRY = RetryPolicy(initial_interval=timedelta(seconds=10), maximum_interval=timedelta(minutes=5))


@workflow.defn
class ReengageJourney(Journey):
    journey = "reengage"
    ends_on_click = "reactivated"

    @workflow.run
    async def run(self, journey: ReengageInput) -> JourneyResult:
        started = workflow.info().workflow_start_time
        cycle = f"{started:%Y%m%dT%H%M%S}"
        plan = journey.plan
        self._state.stage = plan.steps[0].stage  # set with the search attributes at start, which costs nothing
        self.uses({channel for step in plan.steps for channel in step.channels})
        names: list[str] = []
        for step in plan.steps:
            name = f"{step.name}_{cycle}"
            # Once the customer opened a message, every later step is for those who opened none: no need to wait.
            if not self._opened(names) and not await self.wait_until(started + step.after, name):
                return self.end()
            if opened := self._opened(names):
                self._record(name, f"skipped (opened {opened})")
            else:
                self.enter_stage(step.stage)
                if await self.send(self.step_request(step, journey.customer_id, name=name)) is None:
                    return self.end()
            names.append(name)
        sunset = f"sunset_{cycle}"
        if not await self.wait_until(started + plan.sunset_after, sunset):
            return self.end()
        workflow.set_current_details("No click: unsubscribing the customer from marketing.")
        result: SunsetResult = await workflow.execute_activity(
            "sunset_inactive_customer",
            SunsetRequest(customer_id=journey.customer_id, since=started),
            result_type=SunsetResult,
            start_to_close_timeout=SUNSET_TIMEOUT,
            retry_policy=SEND_RETRY,
            summary=f"unsubscribe customer {journey.customer_id} from marketing (no click)",
        )
        revoked = f": consent revoked on {', '.join(result.revoked)}" if result.revoked else ""
        self._record(sunset, f"{result.outcome}{revoked}")
        # What the activity did is the outcome, whatever signal came in meanwhile.
        self._exit = result.outcome
        return self.end()

    def _opened(self, names: list[str]) -> str | None:
        """The first of these steps whose message the customer opened, as the provider reported it."""
        return next((n for n in names for e in OPENED if f"{n}: {e}" in self._state.events), None)

    def _record(self, step: str, outcome: str) -> None:
        self._state.steps_done.append(StepOutcome(step=step, at=workflow.now(), outcome=outcome))


@workflow.defn
class ReengageCampaignWorkflow:
    """Started daily by the `reengage-daily` schedule: one activity finds the inactive customers and starts their
    journeys. Starting is idempotent by workflow id, so a retried activity only counts them as already running."""

    @workflow.run
    async def run(self, request: CampaignRequest) -> CampaignResult:
        workflow.set_current_details("Starting re-engagement journeys for inactive customers.")
        result: CampaignResult = await workflow.execute_activity(
            "run_reengage_campaign",
            request,
            result_type=CampaignResult,
            schedule_to_close_timeout=CAMPAIGN_TIMEOUT,
            heartbeat_timeout=CAMPAIGN_HEARTBEAT,
            retry_policy=CAMPAIGN_RETRY,
            summary="re-engagement campaign",
        )
        workflow.set_current_details(
            f"Found {result.found} inactive customers: started {result.started}, "
            f"{result.already_running} already running."
        )
        return result
