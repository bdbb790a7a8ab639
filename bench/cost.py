"""Cost per journey: `python -m bench.cost`.

Runs every path of every journey on a time-skipping server with the real activities on SQLite, counts the
billable actions and history events of each run from its history, prints the table and appends it to
bench/RESULTS.md. The same paths and budgets are checked by tests/test_cost.py.
"""

import asyncio
import sys
import tempfile

from rich.console import Console
from rich.table import Table
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from bench.harness import append_results
from channels.base import Channels
from models.db import make_engine, migrate
from models.journeys import load_journeys
from models.settings import ROOT
from starter.binaries import temporal_test_server
from tests.conftest import RecordingChannel, register_search_attributes
from tests.journey_cost import PathRun, run_paths
from tests.shop import running_shop

COLUMNS = (
    "journey",
    "path",
    "starts",
    "activities",
    "timers",
    "signals",
    "upserts",
    "queries",
    "billable actions",
    "history events",
    "history bytes",
    "budget",
)


def rows(runs: list[PathRun]) -> list[list[str]]:
    return [
        [
            run.journey,
            run.path,
            str(run.cost.starts),
            f"{run.cost.activities} (+{run.cost.activity_retries} retries)"
            if run.cost.activity_retries
            else str(run.cost.activities),
            str(run.cost.timers),
            str(run.cost.signals),
            str(run.cost.upserts),
            str(run.queries),
            str(run.billable),
            str(run.cost.events),
            f"{run.history_bytes:,}",
            "; ".join(run.over_budget()) or f"ok ({run.steps} step{'s' if run.steps != 1 else ''})",
        ]
        for run in runs
    ]


def markdown(table: list[list[str]]) -> str:
    align = ["---" if column in ("journey", "path", "budget") else "--:" for column in COLUMNS]
    lines = ["| " + " | ".join(row) + " |" for row in [list(COLUMNS), align, *table]]
    return "\n".join(lines)


async def measure() -> list[PathRun]:
    shipped = load_journeys(ROOT / "config" / "journeys.toml")
    # Quiet hours off: the cost of each path, not of the hour it is measured at (a deferral adds one activity
    # and one timer, as tests/test_cost.py checks on a recorded history).
    config = shipped.model_copy(update={"policy": shipped.policy.model_copy(update={"quiet_hours": False})})
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server(), data_converter=pydantic_data_converter
    )
    try:
        await register_search_attributes(env.client)  # the test server does not know them otherwise
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(f"sqlite:///{tmp}/cost.db")
            migrate(engine)
            recorder = RecordingChannel()
            async with running_shop(env, engine, config, Channels(sms=recorder, email=recorder)) as shop:
                return await run_paths(shop)
    finally:
        await env.shutdown()


def main() -> None:
    runs = asyncio.run(measure())
    table = rows(runs)
    rich_table = Table(title="Cost per journey (billable actions = history actions + queries)")
    for column in COLUMNS:
        rich_table.add_column(column, justify="left" if column in ("journey", "path", "budget") else "right")
    for row in table:
        rich_table.add_row(*row)
    Console(width=None if sys.stdout.isatty() else 200).print(rich_table)  # piped: no 80-column wrap
    append_results(
        "Cost per journey",
        "Billable actions: start + activities (and retries) + timers + signals + upserts + continue-as-new"
        " + queries (one `state` query per path).\n\n" + markdown(table),
    )


if __name__ == "__main__":
    main()
