"""The Temporal worker: registers every workflow and activity, nothing else."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from workflows import ALL_WORKFLOWS

ACTIVITY_THREADS = 32  # activities are blocking (database, provider SDKs) and run in this pool
# The SDK's default of 5 workflow-task polls, mostly on the worker's sticky queue, leaves about one poller
# for new journeys: a burst of orders then waits in the task queue while the worker idles.
WORKFLOW_TASK_POLLS = 20


def create_worker(
    client: Client, task_queue: str, activities: list[Callable[..., Any]], executor: ThreadPoolExecutor
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=ALL_WORKFLOWS,
        activities=activities,
        activity_executor=executor,
        max_concurrent_activities=ACTIVITY_THREADS,
        max_concurrent_workflow_task_polls=WORKFLOW_TASK_POLLS,
        nonsticky_to_sticky_poll_ratio=1,
    )
