"""Re-engagement campaign against a rate-limited Twilio: 20,000 generated inactive customers get their survey text
through the real Twilio channel, paced at TWILIO_MAX_RATE = N, against the fake Twilio enforcing N sends a second
(`bench/fake_providers.py`, 429 with error 20429 beyond it). Targets: achieved rate within 5 % of N, no 429, no
duplicate.

`python -m bench.reengage [--customers 20000] [--rate 20] [--starts-per-second N] [--database postgresql|sqlite]`

The campaign starts journeys twice as fast as texts may go, so that the pacer, not the campaign, sets the rate
measured. The default rate is what this 2-core machine sustains with room to spare: each customer costs about 40 ms
of worker CPU and 20 ms of dev server CPU, plus PostgreSQL's, so the whole pipeline tops out near 30 a second here;
20,000 texts take about 17 minutes.

A dev server and one `comeback worker` process, as in production; the campaign runs here, as `comeback campaign
reengage` would. The app database is a fresh PostgreSQL database on 127.0.0.1 (dropped afterwards), since SQLite
serializes every send on its one write lock. The survey goes out at once (its `after` set to 0); quiet hours and
caps are off for the run. Figures are appended to bench/RESULTS.md.
"""

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine, func, insert
from sqlmodel import Session, col, select
from temporalio.client import Client

from activities.reengagement import inactive_customers
from bench.fake_providers import FakeProviders
from bench.harness import append_results, cpu_seconds, dev_stack, journeys_with_delays, running, while_alive
from models.db import make_engine, migrate
from models.journeys import JourneysConfig, load_journeys
from models.tables import Channel, Consent, ConsentStatus, Customer, Message, MessageStatus
from starter.campaigns import run_reengage_campaign

console = Console() if sys.stdout.isatty() else Console(width=130)
PG = "postgresql://postgres@127.0.0.1:5432/test"
AREA_CODES = (415, 628, 650, 510, 408, 925, 707, 831, 209, 559)  # 10,000 numbers each in +1 AAA 555 xxxx
INSERT_BATCH = 5000
FAILED_LOG = Path(tempfile.gettempdir()) / "bench-reengage-worker.log"


def phone(i: int) -> str:
    return f"+1{AREA_CODES[i // 10_000]}555{i % 10_000:04d}"


def insert_inactive_customers(
    engine: Engine, n: int, *, prefix: str = "c-bench", inactive_for: timedelta = timedelta(days=200)
) -> list[str]:
    """`n` customers with a phone and SMS consent and nothing done since `inactive_for` ago, inserted in bulk;
    their ids."""
    if n > len(AREA_CODES) * 10_000:
        raise ValueError(f"at most {len(AREA_CODES) * 10_000:,} customers: one phone number each")
    since = datetime.now(UTC) - inactive_for
    ids = [f"{prefix}-{i}" for i in range(n)]
    with Session(engine) as session:
        for first in range(0, n, INSERT_BATCH):
            batch = range(first, min(first + INSERT_BATCH, n))
            customers = [
                {"id": ids[i], "first_name": f"Customer{i}", "phone": phone(i), "timezone": "America/New_York"}
                | {"preferred_channel": Channel.sms, "created_at": since, "updated_at": since}
                for i in batch
            ]
            consents = [
                {"customer_id": ids[i], "channel": Channel.sms, "status": ConsentStatus.granted}
                | {"source": "checkout", "recorded_at": since}
                for i in batch
            ]
            session.execute(insert(Customer), customers)
            session.execute(insert(Consent), consents)
        session.commit()
    return ids


@dataclass
class Report:
    customers: int
    rate: float  # N: the fake's limit and the worker's TWILIO_MAX_RATE
    found: int = 0
    query_seconds: float = 0.0  # the inactivity query alone
    started: int = 0
    start_seconds: float = 0.0
    messages: int = 0  # texts Twilio accepted
    window: float = 0.0  # seconds from the first accepted text to the last
    too_many: int = 0  # 429s answered
    duplicates: int = 0  # texts beyond the first to one number
    lookups: int = 0  # Twilio message lookups (a retry after a 429 looks first)
    outbox: dict[str, int] | None = None
    cpu_ms: dict[str, float] | None = None  # CPU milliseconds per customer, by process (PostgreSQL's not counted)
    database: str = "postgresql"

    @property
    def achieved(self) -> float:
        return (self.messages - 1) / self.window if self.window > 0 else 0.0

    def table(self) -> str:
        share = self.achieved / self.rate * 100
        return (
            "| customers | texts | achieved rate (target N ± 5 %) | 429s (target 0) | duplicates (target 0) |\n"
            "|--:|--:|--:|--:|--:|\n"
            f"| {self.customers:,} | {self.messages:,} | **{self.achieved:.2f}/s = {share:.1f} % of N = {self.rate:g}**"
            f" | **{self.too_many}** | **{self.duplicates}** |\n"
        )


def app_database() -> tuple[str, str | None]:
    """A fresh PostgreSQL database (URL, name to drop), or SQLite in the run's directory when unreachable."""
    name = f"bench_reengage_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(PG, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as e:
        console.print(f"PostgreSQL not reachable at {PG} ({e}): the app runs on SQLite, which serializes sends")
        return "", None
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", name


def drop_database(name: str) -> None:
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def journeys_file(workdir: Path, starts_per_second: float) -> Path:
    """The shipped journeys with the survey at once, a fast campaign, and quiet hours and caps off."""
    path = journeys_with_delays(workdir, survey="0s")
    text = path.read_text().replace("[policy]\n", "[policy]\nquiet_hours = false\nfrequency_caps = false\n", 1)
    head, sep, tail = text.partition("starts_per_second = ")
    assert sep, "no starts_per_second in the journeys file"
    path.write_text(head + sep + f"{starts_per_second:g}" + tail[tail.index("\n") :])
    return path


async def run(customers: int, rate: float, starts_per_second: float, database: str) -> Report:
    report = Report(customers, rate)
    url, dropped = app_database() if database == "postgresql" else ("", None)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-reengage-") as tmp, FakeProviders(rate=rate) as fake:
            workdir = Path(tmp)
            journeys = journeys_file(workdir, starts_per_second)
            config = load_journeys(journeys)
            async with dev_stack(workdir, journeys, database_url=url or None) as stack:
                engine = make_engine(stack.settings.database_url)
                migrate(engine)
                report.database = engine.dialect.name
                began = time.monotonic()
                insert_inactive_customers(engine, customers)
                console.print(f"{customers:,} inactive customers inserted in {time.monotonic() - began:.1f}s")
                worker = stack.spawn("worker", "starter.cli", "worker", **fake.env(), TWILIO_MAX_RATE=f"{rate:g}")
                with running(worker):
                    processes = {"worker": worker.pid, "dev server": stack.server.pid}
                    cpu = {name: cpu_seconds(pid) for name, pid in processes.items()} | {"bench": time.process_time()}
                    queue, starting = stack.settings.temporal_task_queue, customers / starts_per_second * 2 + 300
                    await while_alive(campaign(report, stack.client, engine, config, queue), worker, timeout=starting)
                    try:
                        await while_alive(until_sent(fake, customers), worker, timeout=customers / rate * 3 + 300)
                    except RuntimeError:
                        shutil.copy(workdir / "worker.log", FAILED_LOG)
                        console.print(f"the texts did not all arrive: {fake.stats()}; worker log in {FAILED_LOG}")
                        raise
                    used = {name: cpu_seconds(pid) for name, pid in processes.items()} | {"bench": time.process_time()}
                    report.cpu_ms = {name: (used[name] - cpu[name]) * 1000 / customers for name in used}
                count(report, fake, engine)
                engine.dispose()
    finally:
        if dropped:
            drop_database(dropped)
    return report


async def campaign(report: Report, client: Client, engine: Engine, config: JourneysConfig, task_queue: str) -> None:
    with Session(engine) as session:
        began = time.monotonic()
        report.found = len(inactive_customers(session, config.journeys.reengage.inactive_days, datetime.now(UTC)))
        report.query_seconds = time.monotonic() - began
    columns = (TextColumn("starting journeys"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("start", total=report.found)
        began = time.monotonic()
        result = await run_reengage_campaign(
            client,
            engine,
            config,
            task_queue,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
        report.start_seconds = time.monotonic() - began
    report.started = result.started
    console.print(
        f"inactivity query: {report.found:,} customers in {report.query_seconds * 1000:.0f} ms; "
        f"{result.started:,} journeys started in {report.start_seconds:.1f}s"
    )


async def until_sent(fake: FakeProviders, expected: int) -> None:
    columns = (
        TextColumn("texts accepted by Twilio"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[stats]}"),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("texts", total=expected, stats="")
        while (accepted := len(fake.accepted("twilio"))) < expected:
            stats = fake.stats()
            line = f"429s {stats.get('twilio_429', 0)}, lookups {stats.get('twilio_lookups', 0)}"
            progress.update(task, completed=accepted, stats=line)
            await asyncio.sleep(0.5)
        progress.update(task, completed=accepted)
    await asyncio.sleep(2)  # any late duplicate would arrive now


def count(report: Report, fake: FakeProviders, engine: Engine) -> None:
    texts = fake.accepted("twilio")
    report.messages = len(texts)
    if texts:
        report.window = max(t.at for t in texts) - min(t.at for t in texts)
    report.duplicates = sum(n - 1 for n in Counter(t.to for t in texts).values() if n > 1)
    stats = fake.stats()
    report.too_many, report.lookups = stats.get("twilio_429", 0), stats.get("twilio_lookups", 0)
    with Session(engine) as session:
        rows = session.exec(select(Message.status, func.count(col(Message.id))).group_by(col(Message.status))).all()
        report.outbox = {str(status): n for status, n in rows}
        assert report.outbox.get(MessageStatus.sent, 0) <= report.messages


async def main(customers: int, rate: float, starts_per_second: float, database: str) -> None:
    report = await run(customers, rate, starts_per_second, database)
    table = report.table()
    console.print(table)
    cpu = ", ".join(f"{name} {ms:.1f}" for name, ms in (report.cpu_ms or {}).items())
    console.print(f"outbox: {report.outbox}; Twilio lookups: {report.lookups}; CPU ms per customer: {cpu}")
    append_results(
        "Re-engagement campaign at a provider rate",
        f"{report.customers:,} generated inactive customers (SMS only), app database {report.database}; one dev "
        f"server, one worker process with TWILIO_MAX_RATE={rate:g}; the fake Twilio allows {rate:g} sends a second "
        f"(a token bucket of one second) and answers 429 (20429) beyond it. Inactivity query: {report.found:,} "
        f"customers in {report.query_seconds * 1000:.0f} ms; {report.started:,} journeys started in "
        f"{report.start_seconds:.0f}s (campaign at {starts_per_second:g}/s); send window {report.window:.0f}s; "
        f"Twilio lookups {report.lookups}; outbox {report.outbox}; CPU ms per customer: {cpu}.\n\n{table}",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=20, help="N: Twilio sends per second (fake and pacer)")
    parser.add_argument("--starts-per-second", type=float, default=None, help="the campaign's (default: 2 N)")
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    args = parser.parse_args()
    # Journeys start twice as fast as texts may go: the pacer, not the campaign, sets the rate measured.
    asyncio.run(main(args.customers, args.rate, args.starts_per_second or 2 * args.rate, args.database))
