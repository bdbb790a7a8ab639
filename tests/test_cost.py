"""What each journey costs in billable actions and history events, from real histories: a journey over its
budget (one activity and at most one timer per step, at most 3 search-attribute upserts, bounded history
for a journey that loops) fails here. `python -m bench.cost` prints the same figures."""

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from channels.base import Channels
from models.db import make_engine, migrate
from models.journeys import load_journeys
from models.settings import ROOT
from tests.conftest import RecordingChannel
from tests.journey_cost import (
    BUDGETS,
    Budget,
    Cost,
    PathRun,
    count_actions,
    journey_of,
    over_budget,
    post_purchase_paths,
    run_paths,
    steps_reached,
)
from tests.shop import running_shop

PATHS = [p.name for p in post_purchase_paths(load_journeys(ROOT / "config" / "journeys.toml"))]
HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))

# (steps reached, activities, timers, signals, upserts) of each path: a change in what a journey costs is seen
# here even while it stays within budget.
EXPECTED = {
    "full": (4, 4, 4, 0, 2),  # upserts: stage nurture → win_back, then "completed"
    "purchase before thank_you": (1, 0, 1, 1, 1),  # upsert: "purchased"
    "purchase before loyalty_review": (2, 1, 2, 1, 1),
    "purchase before win_back_soft": (3, 2, 3, 1, 2),
    "purchase before win_back_incentive": (4, 3, 4, 1, 2),
    "no consent": (4, 4, 4, 0, 2),  # every step is still checked at send time: consent may be given later
}


@pytest_asyncio.fixture(scope="module")
async def runs(time_skipping, config, tmp_path_factory) -> AsyncIterator[dict[str, PathRun]]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('cost') / 'comeback.db'}")
    migrate(engine)
    recorder = RecordingChannel()
    async with running_shop(time_skipping, engine, config, Channels(sms=recorder, email=recorder)) as shop:
        yield {run.path: run for run in await run_paths(shop)}
    engine.dispose()


def test_every_path_is_measured():
    assert set(PATHS) == set(EXPECTED)


@pytest.mark.parametrize("path", PATHS)
def test_path_is_within_budget(runs: dict[str, PathRun], path: str):
    run = runs[path]
    excess = run.over_budget()
    assert not excess, f"{run.journey} / {path} over budget: " + "; ".join(excess)


@pytest.mark.parametrize("path", PATHS)
def test_path_costs_what_it_did(runs: dict[str, PathRun], path: str):
    run = runs[path]
    cost = run.cost
    assert (run.steps, cost.activities, cost.timers, cost.signals, cost.upserts) == EXPECTED[path]
    assert (cost.starts, cost.activity_retries, cost.continue_as_new) == (1, 0, 0)
    assert run.queries == 1 and run.billable == cost.actions + 1


def test_full_path_figures(runs: dict[str, PathRun]):
    run = runs["full"]
    assert run.cost.activities == 4 and run.cost.timers == 4 and run.cost.upserts <= 3
    assert run.cost.actions == 11  # start + 4 activities + 4 timers + 2 upserts
    assert run.cost.events <= 51, "the full path's history grew"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_recorded_history_is_within_budget(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    excess = over_budget(count_actions(history), steps_reached(history), BUDGETS[journey_of(history)])
    assert not excess, f"{path.name} over budget: " + "; ".join(excess)


def test_a_deferral_is_allowed_one_activity_and_one_timer_more():
    path = Path(__file__).parent / "histories" / "post_purchase_deferred_clicked.json"
    cost = count_actions(WorkflowHistory.from_json(path.stem, path.read_text()))
    assert (cost.deferrals, cost.activities, cost.timers) == (2, 6, 6)
    assert over_budget(cost, 4, Budget()) == []
    assert over_budget(replace(cost, deferrals=1), 4, Budget())[0].startswith("activities: 6 scheduled")


def test_over_budget_names_each_excess():
    cost = Cost(starts=1, activities=3, activity_retries=1, timers=5, upserts=4, events=120)
    excess = over_budget(cost, steps=3, budget=Budget(max_events=100))
    assert [e.split(":")[0] for e in excess] == ["activities", "timers", "search-attribute upserts", "history events"]
    assert over_budget(cost, steps=5, budget=Budget(max_upserts=4)) == []


def test_an_activity_retry_is_billed_and_can_break_the_budget():
    path = Path(__file__).parent / "histories" / "post_purchase_full.json"
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    started = next(e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
    retried = type(started)()
    retried.CopyFrom(started)
    retried.activity_task_started_event_attributes.attempt = 3
    events = [retried if e is started else e for e in history.events]
    cost = count_actions(replace(history, events=events))

    assert cost.activity_retries == 2 and cost.actions == count_actions(history).actions + 2
    assert over_budget(cost, steps_reached(history), Budget())[0].startswith("activities: 4 scheduled + 2 retries")
