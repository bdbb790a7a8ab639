"""Campaigns: a journey for every customer of a group, started at a pace the cluster takes in its stride.

The re-engagement campaign finds every inactive customer (`activities.reengagement.inactive_customers`) and starts
their `reengage-{customer_id}` journey. `comeback campaign reengage` runs one now; the `reengage-daily` Temporal
Schedule runs one every day, through `ReengageCampaignWorkflow` and its activity. Two campaigns at once, or a
retried one, are harmless: a customer whose re-engagement is running is counted, never started twice.
"""

import asyncio
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Literal

from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.reengagement import inactive_customers
from models import search
from models.contracts import CampaignRequest, CampaignResult, JourneyResult, ReengageInput, ReengagePlan
from models.journeys import JourneysConfig
from models.tables import utcnow
from workflows.reengage import ReengageCampaignWorkflow, ReengageJourney

REENGAGE_SCHEDULE_ID = "reengage-daily"
CAMPAIGN_WORKFLOW_ID = "reengage-campaign"  # the schedule appends each run's time
BATCHES_PER_SECOND = 5  # starts go out in small concurrent batches: smooth for the server, fast for the campaign
CATCHUP_WINDOW = timedelta(hours=12)  # a run missed while the cluster was down is made up within this

Progress = Callable[[int, int], None]  # (customers handled, customers found)


def reengage_id(customer_id: str) -> str:
    return f"reengage-{customer_id}"


async def start_reengage(
    client: Client, task_queue: str, journey: ReengageInput
) -> WorkflowHandle[ReengageJourney, JourneyResult] | None:
    """Start the customer's re-engagement; None when one is running. The id is reused once a run has closed (a
    customer may lapse again), never while one runs: never two at once."""
    try:
        return await client.start_workflow(
            ReengageJourney.run,
            journey,
            id=reengage_id(journey.customer_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=search.journey_attributes(
                journey.customer_id, ReengageJourney.journey, journey.plan.steps[0].stage
            ),
            static_summary=(
                f"Re-engagement of customer {journey.customer_id}, inactive for {journey.plan.inactive_days} days"
            ),
        )
    except WorkflowAlreadyStartedError:
        return None


async def run_reengage_campaign(
    client: Client,
    engine: Engine,
    config: JourneysConfig,
    task_queue: str,
    *,
    inactive_days: int | None = None,
    dry_run: bool = False,
    on_progress: Progress | None = None,
) -> CampaignResult:
    """Start a re-engagement for every customer inactive for `inactive_days` (default: the journeys file's), in
    concurrent batches paced at the plan's `starts_per_second`. A dry run only counts them."""
    plan = config.journeys.reengage
    if inactive_days is not None:
        plan = plan.model_copy(update={"inactive_days": inactive_days})
    customers = await asyncio.to_thread(_find, engine, plan)
    result = CampaignResult(found=len(customers), dry_run=dry_run)
    report = on_progress or (lambda done, total: None)
    report(0, len(customers))
    if dry_run:
        return result
    batch = math.ceil(plan.starts_per_second / BATCHES_PER_SECOND)
    loop = asyncio.get_running_loop()
    began = loop.time()
    for first in range(0, len(customers), batch):
        # Each batch waits for its turn: `done` starts may have gone out `done / rate` seconds after the first.
        await asyncio.sleep(max(0.0, began + first / plan.starts_per_second - loop.time()))
        chunk = customers[first : first + batch]
        handles = await asyncio.gather(
            *(start_reengage(client, task_queue, ReengageInput(customer_id=c, plan=plan)) for c in chunk)
        )
        started = sum(handle is not None for handle in handles)
        result.started += started
        result.already_running += len(chunk) - started
        report(first + len(chunk), len(customers))
    return result


def _find(engine: Engine, plan: ReengagePlan) -> list[str]:
    with Session(engine) as session:
        return inactive_customers(session, plan.inactive_days, utcnow())


async def ensure_reengage_schedule(
    client: Client, config: JourneysConfig, task_queue: str
) -> Literal["created", "updated"]:
    """Create the `reengage-daily` schedule, or bring an existing one up to the journeys file's cron and this task
    queue. An operator's pause (and its note) is kept."""
    plan = config.journeys.reengage
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            ReengageCampaignWorkflow.run,
            CampaignRequest(),
            id=CAMPAIGN_WORKFLOW_ID,
            task_queue=task_queue,
            typed_search_attributes=TypedSearchAttributes([SearchAttributePair(search.JOURNEY, "reengage_campaign")]),
            static_summary="Daily re-engagement campaign: a journey for every inactive customer",
        ),
        spec=ScheduleSpec(cron_expressions=[plan.schedule]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP_WINDOW),
    )
    try:
        await client.create_schedule(REENGAGE_SCHEDULE_ID, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        pass

    def keep_state(current: ScheduleUpdateInput) -> ScheduleUpdate:
        schedule.state = current.description.schedule.state
        return ScheduleUpdate(schedule=schedule)

    await client.get_schedule_handle(REENGAGE_SCHEDULE_ID).update(keep_state)
    return "updated"
