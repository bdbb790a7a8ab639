"""Throughput, as a ratio in one run on one dev server: bare Temporal (a workflow with one no-op activity)
against our intake (POST /orders → post-purchase journey → its first message in the outbox, no delay).

Both run as processes beside one dev server, in alternating rounds so that the machine's drift hits both;
the figures are the medians. `python -m bench.throughput [--orders N] [--concurrency C] [--rounds R]
[--database sqlite|postgresql]` (the app's database: SQLite, the embedded default, or a fresh PostgreSQL
database at 127.0.0.1, the production setup, whose server then shares the same cores).
"""

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from rich.console import Console
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from bench.baseline import TASK_QUEUE, NoopWorkflow
from bench.harness import (
    Stack,
    append_results,
    cpu_seconds,
    daytime_zone,
    dev_stack,
    free_port,
    journeys_with_delays,
    running,
    wait_http,
    while_alive,
)
from models.db import make_engine, migrate
from models.tables import Message, MessageStatus
from starter.demo import sample_order

console = Console()
PG = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Round:
    rate: float  # per second
    cpu_ms: dict[str, float]  # CPU milliseconds per workflow, by process


async def bounded(n: int, concurrency: int, job: Callable[[int], Awaitable[object]]) -> None:
    jobs = iter(range(n))

    async def lane() -> None:
        for i in jobs:
            await job(i)

    await asyncio.gather(*(lane() for _ in range(concurrency)))


async def measured(n: int, processes: dict[str, subprocess.Popen[bytes]], work: Awaitable[object]) -> Round:
    before = {name: cpu_seconds(p.pid) for name, p in processes.items()}
    started = time.monotonic()
    await while_alive(work, *processes.values())
    elapsed = time.monotonic() - started
    cpu = {name: (cpu_seconds(p.pid) - before[name]) * 1000 / n for name, p in processes.items()}
    return Round(n / elapsed, cpu)


class Baseline:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.worker = stack.spawn("baseline-worker", "bench.baseline")

    async def round(self, n: int, concurrency: int) -> Round:
        client, run = self.stack.client, uuid.uuid4().hex[:6]

        async def start_and_complete() -> None:
            handles = []

            async def start(i: int) -> None:
                handles.append(
                    await client.start_workflow(NoopWorkflow.run, id=f"noop-{run}-{i}", task_queue=TASK_QUEUE)
                )

            await bounded(n, concurrency, start)
            await asyncio.gather(*(h.result() for h in handles))

        return await measured(n, {"server": self.stack.server, "worker": self.worker}, start_and_complete())


class Intake:
    def __init__(self, stack: Stack, engine: Engine) -> None:
        self.stack, self.engine, self.port = stack, engine, free_port()
        self.worker = stack.spawn("worker", "starter.cli", "worker")
        self.api = stack.spawn("api", "starter.cli", "api", "--port", str(self.port))
        self.sent = 0

    async def round(self, n: int, concurrency: int) -> Round:
        run, zone = uuid.uuid4().hex[:6], daytime_zone()
        headers = {"Authorization": f"Bearer {self.stack.settings.api_token}"}
        limits = httpx.Limits(max_connections=concurrency)
        base = f"http://127.0.0.1:{self.port}"
        async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as http:

            async def post(i: int) -> None:
                order = sample_order("c_ava", order_id=f"{run}-{i}")  # a customer with consent and contacts
                order["customer"] = order["customer"] | {"id": f"c-{run}-{i}", "timezone": zone}
                response = await http.post("/orders", json=order)
                assert response.status_code == 202, response.text

            async def post_and_send() -> None:
                await bounded(n, concurrency, post)
                await self._until_sent(self.sent + n)

            processes = {"server": self.stack.server, "worker": self.worker, "api": self.api}
            result = await measured(n, processes, post_and_send())
        self.sent += n
        return result

    async def _until_sent(self, count: int) -> None:
        query = select(func.count()).select_from(Message).where(Message.status == MessageStatus.sent)
        while True:
            with Session(self.engine) as session:
                if session.exec(query).one() >= count:
                    return
            await asyncio.sleep(0.05)


def app_database(kind: str) -> str | None:
    """None: SQLite in the run's directory; "postgresql": a fresh database on the local server."""
    if kind == "sqlite":
        return None
    try:
        with psycopg.connect(PG, autocommit=True, connect_timeout=3) as conn:
            conn.execute("DROP DATABASE IF EXISTS bench_app WITH (FORCE)")
            conn.execute("CREATE DATABASE bench_app")
    except psycopg.OperationalError as e:
        console.print(f"PostgreSQL not reachable at {PG} ({e}); the app runs on SQLite instead")
        return None
    return "postgresql+psycopg://postgres@127.0.0.1:5432/bench_app"


def cpu_line(rounds: list[Round]) -> str:
    names = rounds[0].cpu_ms
    return ", ".join(f"{name} {statistics.median(r.cpu_ms[name] for r in rounds):.1f}" for name in names)


async def main(n: int, concurrency: int, rounds: int, database: str) -> None:
    database_url = app_database(database)
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        workdir = Path(tmp)
        journeys = journeys_with_delays(workdir, thank_you="0s")
        async with dev_stack(workdir, journeys, database_url=database_url) as stack:
            engine = make_engine(stack.settings.database_url)
            migrate(engine)
            baseline, intake = Baseline(stack), Intake(stack, engine)
            with running(baseline.worker, intake.worker, intake.api):
                await wait_http(f"http://127.0.0.1:{intake.port}/healthz", intake.api)
                await baseline.round(20, 10)  # warm up: connections, caches, the sandbox's first imports
                await intake.round(20, 10)
                bare, ours = [], []
                for i in range(rounds):
                    bare.append(await baseline.round(n, concurrency))
                    ours.append(await intake.round(n, concurrency))
                    console.print(f"round {i + 1}: bare {bare[-1].rate:,.1f}/s, ours {ours[-1].rate:,.1f}/s")
            database = engine.dialect.name
    bare_rate, our_rate = statistics.median(r.rate for r in bare), statistics.median(r.rate for r in ours)
    ratio = our_rate / bare_rate
    table = (
        "| | per second (median) | CPU ms per workflow (median) |\n|---|--:|---|\n"
        f"| bare Temporal: start → one no-op activity → complete | {bare_rate:,.1f} | {cpu_line(bare)} |\n"
        f"| our intake: POST /orders → journey → first message in the outbox | {our_rate:,.1f} | {cpu_line(ours)} |\n"
        f"| **ratio** (target ≥ 0.8) | **{ratio:.2f}** | |\n"
    )
    console.print(table)
    append_results(
        "Throughput",
        f"{rounds} alternating rounds of {n} workflows each, {concurrency} in flight; one dev server "
        f"(SQLite file, WAL); worker and API as separate processes; app database: {database}.\n\n{table}",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.concurrency, args.rounds, args.database))
