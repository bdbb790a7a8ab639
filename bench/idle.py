"""Idle scale: post-purchase journeys asleep on one dev server (persisted with --db-filename), our worker as a
process. At each milestone: worker and server memory, database bytes per journey, the start rate; then the time
for a purchase signal to end some of them. Target: worker memory flat beyond its workflow cache size.

`python -m bench.idle [--counts 10000 50000] [--signal 10000] [--concurrency 100]`

On the 2-core bench machine journeys fall asleep at about 100/s (the server accepts starts faster than one
worker runs their first workflow task), so the defaults take about 12 minutes.
"""

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from bench.harness import Stack, append_results, cpu_seconds, dev_stack, mib, rss_bytes, running, while_alive
from models.contracts import PostPurchaseInput, PurchaseSignal, Segment
from models.journeys import load_journeys
from models.settings import ROOT
from starter.journeys import post_purchase_id, start_post_purchase

console = Console() if sys.stdout.isatty() else Console(width=130)  # piped to a log: no 80-column table
JOURNEYS = ROOT / "config" / "journeys.toml"
WORKFLOW_CACHE = 1000  # the SDK's default max_cached_workflows; worker.create_worker does not change it
ASLEEP_EVENTS = 5  # Started, WorkflowTask Scheduled/Started/Completed, TimerStarted: waiting for the first step
FLAT = 0.15  # worker memory counts as flat when it grows less than this between the first and last milestone


@dataclass
class Milestone:
    journeys: int
    start_rate: float  # start calls answered per second, for the journeys added since the last milestone
    asleep_rate: float  # the same journeys, until all of them sleep on their first timer
    worker_rss: int
    server_rss: int
    db_bytes: int

    @property
    def per_journey(self) -> float:
        return self.db_bytes / self.journeys


async def bounded(items: Iterable[int], concurrency: int, job: Callable[[int], Awaitable[object]]) -> None:
    queue = iter(items)

    async def lane() -> None:
        for i in queue:
            await job(i)

    await asyncio.gather(*(lane() for _ in range(concurrency)))


def db_bytes(workdir: Path) -> int:
    return sum(p.stat().st_size for p in workdir.glob("temporal.db*"))


async def _task_queue(stack: Stack) -> tuple[int, int]:
    """(pollers, approximate backlog) of the workflow task queue."""
    response = await stack.client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=stack.client.namespace,
            task_queue=TaskQueue(name=stack.settings.temporal_task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            report_stats=True,
        )
    )
    return len(response.pollers), response.stats.approximate_backlog_count


async def wait_for_poller(stack: Stack) -> None:
    while (await _task_queue(stack))[0] == 0:
        await asyncio.sleep(0.5)


async def wait_asleep(stack: Stack, ids: list[str], timeout: float = 600) -> None:
    """Until the workflow task backlog is empty and a sample of the journeys (the last 100 started, which the
    worker reaches last, and 50 at random) all sleep on their first timer."""
    deadline = time.monotonic() + timeout
    while True:
        backlog = (await _task_queue(stack))[1]
        if backlog == 0:
            sample = ids[-100:] + random.sample(ids, min(50, len(ids)))
            lengths = await asyncio.gather(*(stack.client.get_workflow_handle(i).describe() for i in sample))
            awake = [d.id for d in lengths if d.history_length < ASLEEP_EVENTS]
            if not awake:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"journeys not asleep after {timeout:.0f}s (backlog {backlog})")
        await asyncio.sleep(1)


async def wait_completed(stack: Stack, count: int, timeout: float = 600) -> None:
    query = "ExecutionStatus='Completed' AND Journey='post_purchase'"
    deadline = time.monotonic() + timeout
    while (await stack.client.count_workflows(query)).count < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} journeys completed after {timeout:.0f}s")
        await asyncio.sleep(0.5)


async def main(counts: list[int], signal_n: int, concurrency: int, record: bool = True) -> None:
    began = time.monotonic()
    counts = sorted(set(counts))
    signal_n = min(signal_n, counts[-1])
    plan = load_journeys(JOURNEYS).journeys.post_purchase
    run = uuid.uuid4().hex[:6]
    ids = [post_purchase_id(f"idle-{run}-{i}") for i in range(counts[-1])]
    milestones: list[Milestone] = []
    peak = 0

    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        workdir = Path(tmp)
        async with dev_stack(workdir, JOURNEYS) as stack:
            worker = stack.spawn("worker", "starter.cli", "worker")
            with running(worker):

                async def sample_peak() -> None:
                    nonlocal peak
                    while True:
                        peak = max(peak, rss_bytes(worker.pid))
                        await asyncio.sleep(0.5)

                sampler = asyncio.create_task(sample_peak())
                await while_alive(wait_for_poller(stack), worker, timeout=120)
                await asyncio.sleep(2)
                worker_idle, server_idle = rss_bytes(worker.pid), rss_bytes(stack.server.pid)
                db_empty = db_bytes(workdir)
                console.print(f"worker up: {mib(worker_idle)}; server {mib(server_idle)}; database {mib(db_empty)}")

                async def start(i: int) -> None:
                    journey = PostPurchaseInput(
                        customer_id=f"c-{i}", order_id=f"idle-{run}-{i}", segment=Segment.first_time, plan=plan
                    )
                    handle = await start_post_purchase(stack.client, stack.settings.temporal_task_queue, journey)
                    assert handle is not None, f"journey {i} already existed"

                started = 0
                for count in counts:
                    t = time.monotonic()
                    await while_alive(bounded(range(started, count), concurrency, start), worker, timeout=1800)
                    start_rate = (count - started) / (time.monotonic() - t)
                    console.print(f"started {count - started:,} journeys at {start_rate:,.0f}/s; waiting for sleep")
                    await while_alive(wait_asleep(stack, ids[:count]), worker, timeout=900)
                    asleep_rate = (count - started) / (time.monotonic() - t)
                    await asyncio.sleep(3)  # let the last completions and the database settle
                    m = Milestone(
                        count,
                        start_rate,
                        asleep_rate,
                        rss_bytes(worker.pid),
                        rss_bytes(stack.server.pid),
                        db_bytes(workdir),
                    )
                    milestones.append(m)
                    console.print(
                        f"{count:,} asleep (all asleep at {asleep_rate:,.0f}/s): worker {mib(m.worker_rss)}, "
                        f"server {mib(m.server_rss)}, database {mib(m.db_bytes)} ({m.per_journey:,.0f} B/journey)"
                    )
                    started = count

                purchase = PurchaseSignal(order_id="bench")

                async def signal(i: int) -> None:
                    await stack.client.get_workflow_handle(ids[i]).signal("purchase", purchase)

                # The oldest journeys: long evicted from the worker's cache, so each signal means a replay.
                t = time.monotonic()
                await while_alive(bounded(range(signal_n), concurrency, signal), worker, timeout=900)
                signalled = time.monotonic() - t
                console.print(f"signalled {signal_n:,} journeys in {signalled:.1f}s; waiting for them to complete")
                await while_alive(wait_completed(stack, signal_n), worker, timeout=900)
                ended = time.monotonic() - t
                worker_after, server_after = rss_bytes(worker.pid), rss_bytes(stack.server.pid)
                cpu = {"worker": cpu_seconds(worker.pid), "server": cpu_seconds(stack.server.pid)}
                sampler.cancel()
                peak = max(peak, worker_after)
    total = time.monotonic() - began

    first, last = milestones[0], milestones[-1]
    growth = last.worker_rss / first.worker_rss - 1
    if len(milestones) > 1:
        verdict = "flat" if abs(growth) < FLAT else "not flat"
        flat_line = (
            f"Worker memory from {first.journeys:,} to {last.journeys:,} journeys asleep: "
            f"{mib(first.worker_rss)} → {mib(last.worker_rss)} ({growth:+.1%}): {verdict} "
            f"(flat: less than {FLAT:.0%} growth)."
        )
    else:
        flat_line = "Only one milestone: no memory growth measured."

    columns = (
        "journeys asleep",
        "starts/s",
        "starts/s until all asleep",
        "worker RSS",
        "server RSS",
        "database",
        "bytes/journey",
        "bytes/journey added",
    )
    rows = [["0 (worker up)", "", "", mib(worker_idle), mib(server_idle), mib(db_empty), "", ""]]
    previous = Milestone(0, 0, 0, worker_idle, server_idle, db_empty)
    for m in milestones:
        added = (m.db_bytes - previous.db_bytes) / (m.journeys - previous.journeys)
        rows.append(
            [
                f"{m.journeys:,}",
                f"{m.start_rate:,.0f}",
                f"{m.asleep_rate:,.0f}",
                mib(m.worker_rss),
                mib(m.server_rss),
                mib(m.db_bytes),
                f"{m.per_journey:,.0f}",
                f"{added:,.0f}",
            ]
        )
        previous = m
    table = Table(title=f"Idle scale ({total:.0f}s in all)")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    signal_line = (
        f"purchase signal to {signal_n:,} of them (the oldest, {concurrency} in flight): signals sent in "
        f"{signalled:.1f}s, all completed (visibility count) after {ended:.1f}s = {signal_n / ended:,.0f} journeys/s; "
        f"then worker {mib(worker_after)}, server {mib(server_after)}"
    )
    console.print(signal_line)
    console.print(
        f"worker peak {mib(peak)}; CPU seconds: worker {cpu['worker']:.0f}, server {cpu['server']:.0f}; "
        f"workflow cache {WORKFLOW_CACHE} (SDK default)"
    )
    console.print(flat_line)
    if not record:
        return

    append_results(
        "Idle scale",
        f"Post-purchase journeys asleep on their first 2h timer, one dev server (`--db-filename`, SQLite WAL), our "
        f"worker as a process, {concurrency} starts in flight; milestones cumulative. Database: temporal.db with "
        f"its -wal and -shm files. Whole run {total:.0f}s.\n\n"
        f"| {' | '.join(columns)} |\n|{'---|' * len(columns)}\n"
        + "".join(f"| {' | '.join(row)} |\n" for row in rows)
        + "\n"
        f"- {signal_line[0].upper() + signal_line[1:]}.\n"
        f"- Worker peak RSS {mib(peak)}; CPU seconds over the run: worker {cpu['worker']:.0f}, "
        f"server {cpu['server']:.0f}.\n"
        f"- Worker workflow cache: {WORKFLOW_CACHE} workflows (the SDK default `max_cached_workflows`).\n"
        f"- {flat_line}\n",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 50_000], help="journeys asleep at each step")
    parser.add_argument("--signal", type=int, default=10_000, help="journeys to end with a purchase signal")
    parser.add_argument("--concurrency", type=int, default=100, help="starts and signals in flight")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = parser.parse_args()
    asyncio.run(main(args.counts, args.signal, args.concurrency, record=not args.no_record))
