"""Intake load: POST /orders at a steady rate for a while on loopback; then every accepted order must have
exactly one workflow: none lost, none doubled. A few orders are posted twice, as a retrying shop would.

`python -m bench.intake_load [--rate 30] [--seconds 60] [--database sqlite|postgresql]`
"""

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
from rich.console import Console
from temporalio.client import Client

from bench.harness import append_results, dev_stack, free_port, running, wait_http, while_alive
from bench.throughput import app_database
from models.db import make_engine, migrate
from models.settings import ROOT
from starter.demo import sample_order

console = Console()
REPEAT_EVERY = 20  # every 20th request re-posts an order already accepted: it must answer 200 "exists"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def offer_load(base: str, token: str, run: str, rate: float, seconds: float) -> tuple[list, float]:
    """Open loop: request i leaves at start + i/rate whether or not earlier ones have answered."""
    results: list[tuple[str, int, float, bool]] = []  # order id, status, latency, repeat?
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, limits=limits) as http:

        async def post(i: int) -> None:
            repeat = i % REPEAT_EVERY == REPEAT_EVERY - 1 and i > REPEAT_EVERY
            order_id = f"{run}-{i - REPEAT_EVERY + 1 if repeat else i}"  # an index that is never a repeat
            order = sample_order("c_ava", order_id=order_id)
            order["customer"] = order["customer"] | {"id": f"c-{order_id}"}
            sent = time.monotonic()
            try:
                status = (await http.post("/orders", json=order, timeout=60)).status_code
            except httpx.HTTPError:
                status = 0
            results.append((order_id, status, time.monotonic() - sent, repeat))

        tasks = []
        start = time.monotonic()
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(post(i)))
        await asyncio.gather(*tasks)
        return results, time.monotonic() - start


async def main(rate: float, seconds: float, database: str) -> None:
    database_url = app_database(database)
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        workdir = Path(tmp)
        async with dev_stack(workdir, ROOT / "config" / "journeys.toml", database_url=database_url) as stack:
            migrate(make_engine(stack.settings.database_url))
            port = free_port()
            worker = stack.spawn("worker", "starter.cli", "worker")
            api = stack.spawn("api", "starter.cli", "api", "--port", str(port))
            with running(worker, api):
                base = f"http://127.0.0.1:{port}"
                await wait_http(f"{base}/healthz", api)
                run = uuid.uuid4().hex[:8]
                token = stack.settings.api_token or ""
                results, elapsed = await while_alive(offer_load(base, token, run, rate, seconds), worker, api)
                accepted = {oid for oid, status, _, repeat in results if status == 202 and not repeat}
                runs = await _runs_by_order(stack.client, run, len(accepted))
    first = [r for r in results if not r[3]]
    repeats = [r for r in results if r[3]]
    latencies = [r[2] * 1000 for r in results]
    lost = len(accepted - set(runs))
    doubled = sum(1 for n in runs.values() if n > 1)
    figures = {
        "offered": f"{rate:g}/s for {seconds:g} s ({len(results)} requests, {len(repeats)} of them repeats)",
        "accepted (202)": f"{len(accepted)} of {len(first)} new orders, {len(accepted) / elapsed:,.1f}/s",
        "repeats answered 200 exists": f"{sum(1 for r in repeats if r[1] == 200)} of {len(repeats)}",
        "errors": str(Counter(r[1] for r in results if r[1] not in (200, 202)) or 0),
        "latency p50 / p99 / max": f"{statistics.median(latencies):,.0f} / {percentile(latencies, 99):,.0f} / "
        f"{max(latencies):,.0f} ms",
        "lost (accepted, no workflow)": str(lost),
        "doubled (more than one run)": str(doubled),
    }
    table = "| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in figures.items())
    console.print(table)
    append_results(
        "Intake load",
        f"Open-loop POST /orders on loopback; one dev server; worker and API as processes; "
        f"app database: {'PostgreSQL' if database_url else 'SQLite'}.\n\n{table}",
    )


async def _runs_by_order(client: Client, run: str, expected: int, timeout: float = 120) -> Counter[str]:
    """Runs per order id, from visibility (eventually consistent: wait until it has caught up)."""
    deadline = time.monotonic() + timeout
    while True:
        query = f"Journey = 'post_purchase' AND OrderId STARTS_WITH '{run}-'"
        runs = Counter([wf.id.removeprefix("post-purchase-") async for wf in client.list_workflows(query)])
        if sum(runs.values()) >= expected or time.monotonic() > deadline:
            return runs
        await asyncio.sleep(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=30)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    args = parser.parse_args()
    asyncio.run(main(args.rate, args.seconds, args.database))
