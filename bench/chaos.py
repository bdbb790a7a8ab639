"""Chaos: post-purchase journeys run to their end while the worker is SIGKILLed every few seconds and the dev
server is killed and restarted once on its database file; then every expected message (customer by step) is
counted where it lands, at a fake Twilio and SendGrid (`bench/fake_providers.py`).

Journeys use the demo timings (steps at 5, 15, 30 and 45 s; quiet hours and caps off) and distinct customers:
a third SMS only, a third email only, a third both (their steps alternate channels). They are started evenly
over the first half of the chaos, so sends are under way throughout it. The fake accepts each send before it
answers (after a random latency), and fails a few with 500: a kill can land before, during or after a send.

`python -m bench.chaos [--journeys 500] [--duration 90] [--kill-every 2:6] [--deadline 600]
[--latency-ms 0:20] [--error-rate 0.02] [--database sqlite|postgresql]`

Prints delivered (exactly once), lost and duplicated, and exits non-zero if any message was lost or duplicated
or a journey did not complete. A killed send is retried when its start-to-close timeout (60 s) expires, so the
run lasts about the chaos plus a minute or two.
"""

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.client import Client
from temporalio.service import RPCError

from api.intake import store_order
from api.schemas import OrderIn
from bench.fake_providers import Accepted, FakeProviders, Faults
from bench.harness import append_results, free_port, kill_group, spawn_group
from bench.throughput import app_database
from models.contracts import PostPurchaseInput
from models.db import make_engine, migrate
from models.journeys import JourneysConfig, load_journeys
from models.settings import ROOT, Settings
from models.tables import Channel, Customer, Message
from starter.dev import Ports, start_dev_server, wait_for_temporal
from starter.journeys import post_purchase_id, start_post_purchase

console = Console() if sys.stdout.isatty() else Console(width=130)  # piped to a log: no 80-column wrap
DEMO = ROOT / "config" / "journeys.demo.toml"
TASK_QUEUE = "comeback-chaos"
T = TypeVar("T")


@dataclass(frozen=True)
class ChaosOptions:
    journeys: int = 500
    duration: float = 90.0  # seconds of chaos: worker kills throughout, the server restart at half-time
    kill_every: tuple[float, float] = (2.0, 6.0)  # seconds between worker kills, uniformly drawn
    deadline: float = 600.0  # seconds after the chaos for every journey to complete
    latency: tuple[float, float] = (0.0, 0.02)  # the fake's, between accepting a send and answering it
    error_rate: float = 0.02  # sends answered 500 by the fake (not accepted)
    database_url: str | None = None  # the app's; None: SQLite in the run's directory
    seed: int | None = None


@dataclass
class ChaosReport:
    journeys: int
    completed: int = 0
    expected: int = 0  # messages: every step of every journey
    delivered: int = 0  # expected messages that reached a provider exactly once
    lost: int = 0  # ... never
    duplicated: int = 0  # ... more than once
    extra_requests: int = 0  # the requests beyond the first of the duplicated ones
    unexpected: int = 0  # accepted requests that match no expected message
    worker_kills: int = 0
    worker_exits: int = 0  # workers that died on their own (and were restarted)
    server_restarts: int = 0
    server_down: float = 0.0  # seconds from the server kill to its answering again
    anomalies: list[str] = field(default_factory=list)  # each lost or duplicated message: journey, step, channel
    provider_stats: dict[str, int] = field(default_factory=dict)
    outbox: dict[str, int] = field(default_factory=dict)  # outbox rows by status
    duration: float = 0.0  # seconds, first start to last completion
    database: str = "sqlite"

    @property
    def ok(self) -> bool:
        return self.completed == self.journeys and self.lost == self.duplicated == self.unexpected == 0

    def summary(self) -> str:
        return (
            f"{self.journeys} journeys ({self.completed} completed), {self.expected} messages expected: "
            f"delivered {self.delivered}, lost {self.lost}, duplicated {self.duplicated} "
            f"(+{self.extra_requests} requests), "
            f"unexpected {self.unexpected}; "
            f"{self.worker_kills} worker kills, {self.worker_exits} worker exits, "
            f"{self.server_restarts} server restart ({self.server_down:.1f}s down); {self.duration:.0f}s"
            + "".join(f"\n  {line}" for line in self.anomalies)
        )


class Server:
    """The persisted dev server, which can be killed and started again on the same database file and port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = Ports(temporal=free_port(), ui=free_port(), api=free_port())
        self.settings = Settings(_env_file=None, TEMPORAL_ADDRESS=f"127.0.0.1:{self.ports.temporal}")  # type: ignore[call-arg]
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> Client:
        db_file, log = self.workdir / "temporal.db", self.workdir / "temporal.log"
        self.process = start_dev_server(self.ports, db_file, log, ui=False)
        return await wait_for_temporal(self.settings, self.process)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


class Worker:
    """One `comeback worker` process at a time, in its own process group."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = spawn_group(["starter.cli", "worker"], self.env, self.log)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.process:
            kill_group(self.process)


class Run:
    """One chaos run: its processes, its journeys, and what it counted."""

    def __init__(self, options: ChaosOptions, workdir: Path, fake: FakeProviders) -> None:
        self.options, self.workdir, self.fake = options, workdir, fake
        self.random = random.Random(options.seed)
        self.config = load_journeys(DEMO)
        self.database_url = options.database_url or f"sqlite:///{workdir / 'comeback.db'}"
        self.engine = make_engine(self.database_url)
        self.server = Server(workdir)
        self.worker = Worker(self._worker_env(), workdir / "worker.log")
        self.client: Client | None = None
        self.report = ChaosReport(options.journeys, database=self.engine.dialect.name)
        self.kills: list[float] = []  # when the worker was killed, monotonic

    def _worker_env(self) -> dict[str, str]:
        return (
            dict(os.environ)
            | self.fake.env()
            | {
                "TEMPORAL_ADDRESS": self.server.settings.temporal_address,
                "TEMPORAL_NAMESPACE": "default",
                "TEMPORAL_TASK_QUEUE": TASK_QUEUE,
                "COMEBACK_DATABASE_URL": self.database_url,
                "COMEBACK_JOURNEYS": str(DEMO),
            }
        )

    async def execute(self) -> ChaosReport:
        migrate(self.engine)
        journeys = await asyncio.to_thread(store_orders, self.engine, self.config, self.options.journeys)
        began = time.monotonic()
        starts: asyncio.Task[None] | None = None
        try:
            self.client = await self.server.start()
            self.worker.start()
            starts = asyncio.create_task(self._start_journeys(journeys))
            await self._chaos()
            await starts
            await self._until_completed(time.monotonic() + self.options.deadline)
        finally:
            if starts:
                starts.cancel()
            self.report.duration = time.monotonic() - began
            self.worker.kill()
            self.server.kill()
            self.fake.save(self.workdir / "accepted.jsonl")
        self._count(journeys)
        return self.report

    async def _start_journeys(self, journeys: list[PostPurchaseInput]) -> None:
        """Evenly over the first half of the chaos; a start refused while the server is down is tried again."""
        interval = self.options.duration / 2 / max(len(journeys), 1)
        began = time.monotonic()
        tasks = []
        for i, journey in enumerate(journeys):
            await asyncio.sleep(max(0.0, began + i * interval - time.monotonic()))
            tasks.append(asyncio.create_task(self._retried(partial(self._start, journey))))
        await asyncio.gather(*tasks)

    async def _start(self, journey: PostPurchaseInput) -> None:
        assert self.client is not None
        # None: it exists already; a start whose answer was lost with the server.
        await start_post_purchase(self.client, TASK_QUEUE, journey)

    async def _retried(self, call: Callable[[], Awaitable[T]], timeout: float = 120) -> T:
        """Temporal calls made while the server may be down: tried again until it is back."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await call()
            except RPCError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def _chaos(self) -> None:
        """Kill the worker every few seconds and start another; kill and restart the server at half-time."""
        began = time.monotonic()
        end, restart_at = began + self.options.duration, began + self.options.duration / 2
        while time.monotonic() < end:
            await asyncio.sleep(min(self.random.uniform(*self.options.kill_every), max(0.0, end - time.monotonic())))
            if self.report.server_restarts == 0 and time.monotonic() >= restart_at:
                await self._restart_server()
            if time.monotonic() < end:
                self.kills.append(time.monotonic())
                self.worker.kill()
                self.report.worker_kills += 1
                self.worker.start()
                console.print(f"  {time.monotonic() - began:5.1f}s  worker killed (#{self.report.worker_kills})")
        self._keep_worker_alive()

    async def _restart_server(self) -> None:
        down = time.monotonic()
        self.server.kill()
        console.print("  dev server killed; restarting it on its database file")
        self.client = await self.server.start()
        self.report.server_restarts += 1
        self.report.server_down = time.monotonic() - down

    def _keep_worker_alive(self) -> None:
        if not self.worker.alive():
            self.report.worker_exits += 1
            self.worker.start()

    async def _until_completed(self, deadline: float) -> None:
        while True:
            self.report.completed = await self._retried(self._completed)
            if self.report.completed >= self.options.journeys or time.monotonic() > deadline:
                return
            if self.server.process and self.server.process.poll() is not None:
                raise RuntimeError(f"the dev server exited; see {self.workdir / 'temporal.log'}")
            self._keep_worker_alive()
            await asyncio.sleep(1)

    async def _completed(self) -> int:
        assert self.client is not None
        query = "ExecutionStatus='Completed' AND Journey='post_purchase'"
        return (await self.client.count_workflows(query)).count

    def _count(self, journeys: list[PostPurchaseInput]) -> None:
        expected = expected_messages(self.engine, journeys, self.config)
        copies: dict[tuple[str, str], list[Accepted]] = defaultdict(list)
        for accepted in self.fake.accepted():
            copies[(accepted.to, accepted.body)].append(accepted)
        r = self.report
        r.expected = len(expected)
        for e in expected:
            got = copies.get(e.key, []) if e.key else []
            if len(got) == 1:
                r.delivered += 1
                continue
            if not got:
                r.lost += 1
            else:
                r.duplicated += 1
                r.extra_requests += len(got) - 1
            r.anomalies.append(f"{e.label} ({e.channel}): received {len(got)}x")
        known = {e.key for e in expected if e.key}
        for (to, body), got in copies.items():
            if (to, body) not in known:
                r.unexpected += len(got)
                r.anomalies.append(f"unexpected: {len(got)}x to {to}: {body[:80]!r}")
        r.provider_stats = self.fake.stats()
        with Session(self.engine) as session:
            r.outbox = dict(Counter(str(m.status) for m in session.exec(select(Message))))


def customer(i: int) -> dict[str, Any]:
    """A third SMS only, a third email only, a third both with no preference (their steps alternate channels)."""
    kind = ("sms", "email", "both")[i % 3]
    return {
        "id": f"c-chaos-{i}",
        "first_name": f"Customer{i}",
        "phone": f"+1415555{i:04d}" if kind != "email" else None,
        "email": f"customer{i}@example.com" if kind != "sms" else None,
        "timezone": "America/New_York",
        "sms_consent": kind != "email",
        "email_consent": kind != "sms",
    }


def store_orders(engine: Engine, config: JourneysConfig, n: int) -> list[PostPurchaseInput]:
    if n > 10_000:
        raise ValueError("at most 10,000 journeys: one phone number each in +1 415 555 xxxx")
    journeys = []
    with Session(engine) as session:
        for i in range(n):
            order = OrderIn.model_validate(
                {
                    "order_id": f"chaos-{i}",
                    "placed_at": datetime.now(UTC).isoformat(),
                    "currency": "USD",
                    "total": "83.95",
                    "customer": customer(i),
                    "items": [
                        {"sku": "JEANS-32", "name": "Slim jeans", "category": "jeans", "quantity": 1,
                         "unit_price": "83.95", "size": "32", "color": "indigo"},
                    ],
                }
            )  # fmt: skip
            stored = store_order(session, order, config)
            journeys.append(
                PostPurchaseInput(
                    customer_id=stored.customer_id,
                    order_id=order.order_id,
                    segment=stored.segment,
                    plan=config.journeys.post_purchase,
                )
            )
    return journeys


@dataclass(frozen=True)
class Expected:
    """One message a journey must send: where it must land, if its outbox row says."""

    label: str  # {workflow_id}/{step}
    channel: str | None
    key: tuple[str, str] | None  # (address, body); None: no outbox row with a body
    provider_id: str | None = None  # the provider's id the outbox recorded


def expected_messages(engine: Engine, journeys: list[PostPurchaseInput], config: JourneysConfig) -> list[Expected]:
    """Every journey's every step, with the address and body its outbox row recorded."""
    steps = [step.name for step in config.journeys.post_purchase.steps]
    with Session(engine) as session:
        rows = {m.idempotency_key: m for m in session.exec(select(Message))}
        customers = {c.id: c for c in session.exec(select(Customer))}
    expected: list[Expected] = []
    for journey in journeys:
        for step in steps:
            label = f"{post_purchase_id(journey.order_id)}/{step}"
            row = rows.get(label)
            if row is None or row.body is None or row.channel is None:
                expected.append(Expected(f"{label} ({row.status if row else 'no row'})", None, None))
                continue
            who = customers[row.customer_id]
            address = who.phone if row.channel == Channel.sms else who.email
            expected.append(Expected(label, str(row.channel), (address or "", row.body), row.provider_id))
    return expected


async def run_chaos(options: ChaosOptions, workdir: Path) -> ChaosReport:
    """One run in `workdir` (its databases and logs); the fake providers in this process."""
    faults = Faults(latency=options.latency, error_rate=options.error_rate)
    with FakeProviders(faults=faults, seed=options.seed) as fake:
        return await Run(options, workdir, fake).execute()


def results_table(report: ChaosReport, options: ChaosOptions) -> str:
    stats = report.provider_stats
    errors = stats.get("twilio_errors", 0) + stats.get("sendgrid_errors", 0)
    kills, latency = options.kill_every, options.latency
    anomalies = "".join(f"\n- {line}" for line in report.anomalies)
    return (
        "| journeys completed | messages | delivered once | lost | duplicated | worker kills | server restarts "
        "| duration |\n|--:|--:|--:|--:|--:|--:|--:|--:|\n"
        f"| {report.completed} of {report.journeys} | {report.expected} | {report.delivered} | {report.lost} "
        f"| {report.duplicated} | {report.worker_kills} | {report.server_restarts} ({report.server_down:.1f}s down) "
        f"| {report.duration:.0f}s |\n\n"
        f"{options.duration:.0f}s of chaos: a worker SIGKILL every {kills[0]:g} to {kills[1]:g}s (and a new worker), "
        f"the dev server SIGKILLed and restarted on its database file at half-time; app database {report.database}. "
        f"Fake providers: latency {latency[0] * 1000:g} to {latency[1] * 1000:g} ms after accepting, "
        f"{options.error_rate:.0%} answered 500 ({errors}); accepted {stats.get('twilio_accepted', 0)} texts and "
        f"{stats.get('sendgrid_accepted', 0)} emails; {stats.get('twilio_lookups', 0)} Twilio and "
        f"{stats.get('sendgrid_lookups', 0)} SendGrid lookups after an unknown outcome; unexpected requests: "
        f"{report.unexpected}; outbox rows {report.outbox}.{anomalies}"
    )


def _range(text: str) -> tuple[float, float]:
    low, _, high = text.partition(":")
    return float(low), float(high or low)


async def main(options: ChaosOptions) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-chaos-"))
    console.print(f"chaos: {options.journeys} journeys, {options.duration:.0f}s of kills; logs in {workdir}")
    report = await run_chaos(options, workdir)
    console.print(report.summary())
    table = results_table(report, options)
    console.print(table)
    append_results("Chaos", table)
    if report.ok:
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    console.print(f"[red]FAILED[/red]: logs and databases kept in {workdir}")
    return 1


def _options() -> ChaosOptions:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--journeys", type=int, default=500)
    parser.add_argument("--duration", type=float, default=90.0, help="seconds of chaos")
    parser.add_argument("--kill-every", type=_range, default=(2.0, 6.0), help="seconds, e.g. 2:6")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds after the chaos to complete")
    parser.add_argument("--latency-ms", type=_range, default=(0.0, 20.0), help="the fake's, e.g. 0:20")
    parser.add_argument("--error-rate", type=float, default=0.02)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    low, high = args.latency_ms
    return ChaosOptions(
        journeys=args.journeys,
        duration=args.duration,
        kill_every=args.kill_every,
        deadline=args.deadline,
        latency=(low / 1000, high / 1000),
        error_rate=args.error_rate,
        database_url=app_database(args.database),  # None: SQLite in the run's directory
        seed=args.seed,
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main(_options())))
