"""What a journey costs, counted from its real history: billable actions and history events.

Temporal Cloud bills a workflow start, each activity attempt, timer, signal, search-attribute upsert and
continue-as-new (all in history), and each query (not in history: whoever issues queries counts them).
Attributes set at start are free. A journey step should cost one activity and at most one timer.

Used by tests/test_cost.py (a journey over its budget fails CI) and by `python -m bench.cost` (the table).
"""

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from models.contracts import JourneyResult, PurchaseSignal
from models.journeys import JourneysConfig
from workflows import ALL_WORKFLOWS
from workflows.steps import Journey

if TYPE_CHECKING:  # tests.shop brings a worker and a database, which counting does not need
    from tests.shop import Shop


@dataclass(frozen=True)
class Cost:
    """Counts of one workflow run's history."""

    starts: int = 0
    activities: int = 0  # ActivityTaskScheduled
    activity_retries: int = 0  # attempts beyond the first, each billed like a new activity
    timers: int = 0
    signals: int = 0
    upserts: int = 0
    continue_as_new: int = 0
    events: int = 0
    deferrals: int = 0  # sends the policy deferred (quiet hours, cap): each costs one more activity and timer

    @property
    def actions(self) -> int:
        """Billable actions found in history (queries are not in it)."""
        return (
            self.starts
            + self.activities
            + self.activity_retries
            + self.timers
            + self.signals
            + self.upserts
            + self.continue_as_new
        )


_COUNTED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: "starts",
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activities",
    EventType.EVENT_TYPE_TIMER_STARTED: "timers",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signals",
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: "upserts",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continue_as_new",
}


def count_actions(history: WorkflowHistory) -> Cost:
    counts = dict.fromkeys(_COUNTED.values(), 0)
    retries = deferrals = 0
    for event in history.events:
        if event.event_type in _COUNTED:
            counts[_COUNTED[event.event_type]] += 1
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            # Written once, when the activity closes, with the attempt that closed it.
            retries += max(event.activity_task_started_event_attributes.attempt - 1, 0)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            result = _decode(event.activity_task_completed_event_attributes.result)
            deferrals += isinstance(result, dict) and result.get("status") == "deferred"
    return Cost(**counts, activity_retries=retries, events=len(history.events), deferrals=deferrals)


@dataclass(frozen=True)
class Budget:
    max_activities_per_step: int = 1
    max_timers_per_step: int = 1
    max_upserts: int = 3
    max_events: int | None = None  # required of a journey that loops (continue-as-new or a step repeated)
    extra_steps: int = 0  # steps beyond its plan's (re-engagement's sunset: one activity after one more wait)
    timers_per_signal: int = 0  # a signal that moves a wait's deadline back (a cart update) sets its timer again
    activities_per_signal: int = 0  # a signal that makes the journey read again (a dates change)
    upserts_per_step: int = 0  # a stage per step (dates: birthday, reminder, on the day), beyond max_upserts
    steps_are_sends: bool = False  # a looping journey: its steps are the sends it made, not its plan's


BUDGETS: dict[str, Budget] = {
    "post_purchase": Budget(),
    # A step reads the catalog (recommend_products), then sends: two activities (a trigger's only for code_purchase).
    "cross_sell": Budget(max_activities_per_step=2),
    "triggers": Budget(max_activities_per_step=2),
    "reengage": Budget(extra_steps=1),
    "cart": Budget(timers_per_signal=1),
    "follow_through": Budget(),
    # A year: one read of the dates, then one send (with its timer and stage) per date, and a wait for the next year.
    "dates": Budget(
        extra_steps=1, activities_per_signal=1, upserts_per_step=1, max_upserts=1, steps_are_sends=True, max_events=300
    ),
}


def over_budget(cost: Cost, steps: int, budget: Budget) -> list[str]:
    """Each excess, named; empty when the run is within budget. `steps`: steps the run reached; a deferred send
    is allowed its one more activity and timer."""
    excess = []
    allowance = f" + {cost.deferrals} deferrals" if cost.deferrals else ""
    reread = budget.activities_per_signal * cost.signals
    if cost.activities + cost.activity_retries > budget.max_activities_per_step * steps + cost.deferrals + reread:
        rereads = f" + {reread} for {cost.signals} signals" if reread else ""
        excess.append(
            f"activities: {cost.activities} scheduled + {cost.activity_retries} retries"
            f" > {budget.max_activities_per_step} per step x {steps} steps{allowance}{rereads}"
        )
    rearmed = budget.timers_per_signal * cost.signals
    if cost.timers > budget.max_timers_per_step * steps + cost.deferrals + rearmed:
        signals = f" + {rearmed} for {cost.signals} signals" if rearmed else ""
        excess.append(
            f"timers: {cost.timers} > {budget.max_timers_per_step} per step x {steps} steps{allowance}{signals}"
        )
    if cost.upserts > budget.max_upserts + budget.upserts_per_step * steps:
        per_step = f" + {budget.upserts_per_step} per step x {steps} steps" if budget.upserts_per_step else ""
        excess.append(f"search-attribute upserts: {cost.upserts} > {budget.max_upserts}{per_step}")
    if budget.max_events is not None and cost.events > budget.max_events:
        excess.append(f"history events: {cost.events} > {budget.max_events}")
    return excess


# --- reading a finished journey's history ---------------------------------------------------------------


def _decode(payloads: Any, type_hint: type | None = None) -> Any:
    hints = [type_hint] if type_hint else None
    return pydantic_data_converter.payload_converter.from_payloads(payloads.payloads, hints)[0]


def _first(history: WorkflowHistory, event_type: "EventType.ValueType") -> HistoryEvent:
    event = next((e for e in history.events if e.event_type == event_type), None)
    if event is None:
        raise ValueError(f"{history.workflow_id}: no {EventType.Name(event_type)} in its history")
    return event


def journey_of(history: WorkflowHistory) -> str:
    """The journey name (`Journey.journey`) of the workflow type that made this history."""
    started = _first(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
    workflow_type = started.workflow_execution_started_event_attributes.workflow_type.name
    by_type = {w.__name__: w for w in ALL_WORKFLOWS}
    workflow = by_type.get(workflow_type)
    if workflow is None or not issubclass(workflow, Journey):
        raise ValueError(f"{history.workflow_id}: {workflow_type} is not a journey")
    return workflow.journey


def steps_reached(history: WorkflowHistory) -> int:
    """Steps whose wait began, from the run's own input and result: the steps done, plus the one an exit
    signal cut short (a journey that ended other than "completed"), never more than its plan has."""
    budget = BUDGETS[journey_of(history)]
    if budget.steps_are_sends:  # a looping journey: the sends it made (deferred attempts aside), and its extra
        sends = sum(
            1
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name == "send_message"
        )
        return sends - count_actions(history).deferrals + budget.extra_steps
    started = _first(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
    completed = _first(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
    arguments = _decode(started.workflow_execution_started_event_attributes.input)
    # Every step the input plans: in one list (`steps`), in several (follow-through), or one by one (a trigger's
    # `step`, dates): whatever holds a `template`.
    plan = arguments.get("plan", arguments)
    planned = [v for value in plan.values() for v in (value if isinstance(value, list) else [value])]
    plan_steps = sum(1 for v in planned if isinstance(v, dict) and "template" in v)
    plan_steps += budget.extra_steps
    result: JourneyResult = _decode(completed.workflow_execution_completed_event_attributes.result, JourneyResult)
    return min(len(result.steps_done) + (result.ended != "completed"), plan_steps)


# --- every path of a journey, run for real ----------------------------------------------------------


@dataclass(frozen=True)
class JourneyPath:
    name: str
    purchase_after: timedelta | None = None  # a purchase signal this long after the start
    customer: dict[str, Any] = field(default_factory=dict)


def post_purchase_paths(config: JourneysConfig) -> list[JourneyPath]:
    """The full path, a purchase halfway through each wait, and a customer with no consent at all."""
    steps = config.journeys.post_purchase.steps
    previous = [timedelta(0), *(s.after for s in steps[:-1])]
    return [
        JourneyPath("full"),
        *(
            JourneyPath(f"purchase before {s.name}", (before + s.after) / 2)
            for before, s in zip(previous, steps, strict=True)
        ),
        JourneyPath("no consent", customer={"sms_consent": False, "email_consent": False}),
    ]


@dataclass(frozen=True)
class PathRun:
    journey: str
    path: str
    history: WorkflowHistory
    cost: Cost
    steps: int  # steps the path reached
    queries: int  # `state` queries issued: billed, not in history

    @property
    def billable(self) -> int:
        return self.cost.actions + self.queries

    @property
    def history_bytes(self) -> int:
        return len(self.history.to_json().encode())

    def over_budget(self) -> list[str]:
        return over_budget(self.cost, self.steps, BUDGETS[self.journey])


async def run_paths(shop: "Shop") -> list[PathRun]:
    """Every post-purchase path, one after the other on the time-skipping server (concurrent waits on it
    unbalance its time-skipping lock), and one `state` query per path, to show what a query costs."""
    runs = []
    for i, path in enumerate(post_purchase_paths(shop.config)):
        handle = await shop.order(customer_id=f"c_cost_{i}", **path.customer)
        if path.purchase_after is not None:
            await shop.env.sleep(path.purchase_after)
            await handle.signal("purchase", PurchaseSignal(order_id=f"next-{handle.id}"))
        await handle.result()
        await handle.query("state")
        history = await handle.fetch_history()
        runs.append(PathRun(journey_of(history), path.name, history, count_actions(history), steps_reached(history), 1))
    return runs
