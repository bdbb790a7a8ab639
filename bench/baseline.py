"""Bare Temporal: a workflow with one no-op activity. The yardstick our intake is measured against.
`python -m bench.baseline` runs its worker (same tuning as ours) against TEMPORAL_ADDRESS."""

import asyncio
from datetime import timedelta

from temporalio import activity, workflow

TASK_QUEUE = "baseline"


@activity.defn
def noop() -> None:
    return None


@workflow.defn
class NoopWorkflow:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))


async def main() -> None:
    # Imported here, not at the top: the workflow sandbox re-imports this module and must not see them.
    from concurrent.futures import ThreadPoolExecutor

    from temporalio.worker import Worker

    from models.settings import get_settings
    from starter.client import connect
    from worker import ACTIVITY_THREADS

    client = await connect(get_settings())
    with ThreadPoolExecutor(ACTIVITY_THREADS) as executor:
        worker = Worker(
            client,
            task_queue=TASK_QUEUE,
            workflows=[NoopWorkflow],
            activities=[noop],
            activity_executor=executor,
            max_concurrent_activities=ACTIVITY_THREADS,
        )
        await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
