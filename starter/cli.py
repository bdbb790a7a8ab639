"""The `comeback` command."""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

import httpx
import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest

from activities import build_activities
from api.app import create_app
from channels import channels_from_settings
from models import search
from models.db import make_engine, migrate
from models.journeys import ConfigError, JourneysConfig, load_journeys
from models.settings import get_settings
from starter.campaigns import REENGAGE_SCHEDULE_ID, ensure_reengage_schedule, run_reengage_campaign
from starter.client import connect
from starter.demo import CATALOG, EVENT_KINDS, sample_event, sample_order, seed
from starter.dev import Ports, dev_api_token, run_dev
from worker import ACTIVITY_THREADS, create_worker

app = typer.Typer(help="Comeback: customer-retention journeys on Temporal.", no_args_is_help=True)
temporal_app = typer.Typer(help="Temporal cluster administration.", no_args_is_help=True)
app.add_typer(temporal_app, name="temporal")
campaign_app = typer.Typer(help="Campaigns: start a journey for a group of customers.", no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")
console = Console()
err = Console(stderr=True)


def _config() -> JourneysConfig:
    try:
        return load_journeys(get_settings().journeys_path)
    except ConfigError as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None


@app.callback()
def _logging(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@app.command()
def dev(
    temporal_port: Annotated[int, typer.Option(help="Temporal gRPC port.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal web UI port.")] = 8233,
    api_port: Annotated[int, typer.Option(help="Comeback API port.")] = 8000,
    demo: Annotated[bool, typer.Option(help="Seed demo data and post a sample order.")] = False,
) -> None:
    """Run everything on this machine: Temporal dev server + UI, worker, API, outbox channel."""
    _config()  # a broken journeys file is reported before anything starts
    try:
        asyncio.run(run_dev(get_settings(), Ports(temporal_port, ui_port, api_port), demo))
    except KeyboardInterrupt:
        console.print("stopped")


@app.command()
def worker() -> None:
    """Run a worker: upgrades the database schema, then runs every journey and activity."""
    settings, config = get_settings(), _config()
    engine = make_engine(settings.database_url)
    migrate(engine)

    async def run() -> None:
        client = await connect(settings)
        activities = build_activities(engine, config, channels_from_settings(settings), client=client)
        with ThreadPoolExecutor(ACTIVITY_THREADS, thread_name_prefix="activity") as executor:
            await create_worker(client, settings.temporal_task_queue, activities, executor).run()

    asyncio.run(run())


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Run the HTTP API: upgrades the database schema, then serves intake and the outbox."""
    settings, config = get_settings(), _config()
    if not settings.api_token:
        err.print("[red]error:[/red] COMEBACK_API_TOKEN is not set: the API needs a bearer token")
        raise typer.Exit(2)
    engine = make_engine(settings.database_url)
    migrate(engine)
    uvicorn.run(create_app(settings, engine=engine, config=config), host=host, port=port)


@app.command("seed")
def seed_command() -> None:
    """Load the demo catalog and customers (first-time Ava, repeat Ben, VIP Cleo)."""
    settings, config = get_settings(), _config()
    engine = make_engine(settings.database_url)
    migrate(engine)
    seed(engine, config)
    console.print(f"seeded: {len(CATALOG)} products, customers c_ava (first-time), c_ben (repeat), c_cleo (VIP)")


@app.command()
def order(
    customer: Annotated[str, typer.Option(help="Customer id (c_ava, c_ben, c_cleo after `comeback seed`).")] = "c_ava",
    order_id: Annotated[str | None, typer.Option(help="Order id (default: a new one).")] = None,
    cart: Annotated[str | None, typer.Option(help="The cart this order buys (ends its reminders).")] = None,
    coupon: Annotated[str | None, typer.Option(help="A coupon code from one of the customer's messages.")] = None,
    api_url: Annotated[str, typer.Option(help="Base URL of the Comeback API.")] = "http://localhost:8000",
) -> None:
    """Post a sample order to the API, as a shop's backend would."""
    _post(api_url, "/orders", sample_order(customer, order_id=order_id, cart_id=cart, coupon_code=coupon))


@app.command()
def event(
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(EVENT_KINDS)}.")],
    customer: Annotated[str, typer.Option(help="Customer id.")] = "c_ava",
    cart: Annotated[str | None, typer.Option(help="Cart id (cart, checkout; default: cart-<customer>).")] = None,
    order_id: Annotated[str | None, typer.Option("--order", help="Order id (shipped, delivered, review).")] = None,
    rating: Annotated[int, typer.Option(help="Review rating, 1-5 (review).")] = 5,
    text: Annotated[str | None, typer.Option(help="Review text (review).")] = None,
    api_url: Annotated[str, typer.Option(help="Base URL of the Comeback API.")] = "http://localhost:8000",
) -> None:
    """Post a sample event to the API, as a shop's backend would: a cart, a checkout, a visit, a shipment, a
    delivery or a review."""
    if kind not in EVENT_KINDS:
        err.print(f"[red]error:[/red] kind: {kind!r} is not one of {', '.join(EVENT_KINDS)}")
        raise typer.Exit(2)
    try:
        payload = sample_event(kind, customer, cart_id=cart, order_id=order_id, rating=rating, text=text)
    except ValueError as e:
        err.print(f"[red]error:[/red] --order: {e}")
        raise typer.Exit(2) from None
    _post(api_url, "/events", payload)


def _post(api_url: str, path: str, payload: dict[str, object]) -> None:
    token = dev_api_token(get_settings())
    try:
        response = httpx.post(
            f"{api_url}{path}", json=payload, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
    except httpx.HTTPError as e:
        err.print(f"[red]error:[/red] cannot reach the API at {api_url}: {e}")
        raise typer.Exit(1) from None
    console.print(f"{response.status_code} {response.text}")
    if response.is_error:
        raise typer.Exit(1)


@temporal_app.command("setup")
def temporal_setup() -> None:
    """Register Comeback's search attributes and create or update the daily re-engagement schedule on the cluster
    in TEMPORAL_ADDRESS (idempotent)."""
    settings, config = get_settings(), _config()

    async def run() -> None:
        client = await connect(settings)
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=settings.temporal_namespace)
        )
        missing = {key.name for key in search.ALL} - set(existing.custom_attributes)
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=settings.temporal_namespace,
                    search_attributes={name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in missing},
                )
            )
        console.print(f"search attributes: registered {sorted(missing) or 'none'}; all present")
        done = await ensure_reengage_schedule(client, config, settings.temporal_task_queue)
        console.print(f"schedule {REENGAGE_SCHEDULE_ID}: {done} (cron {config.journeys.reengage.schedule!r}, UTC)")

    asyncio.run(run())


@campaign_app.command("reengage")
def campaign_reengage(
    inactive_days: Annotated[
        int | None,
        typer.Option(min=0, help="No purchase, visit, open or click for this many days (default: journeys file)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count the inactive customers; start nothing.")] = False,
) -> None:
    """Start a re-engagement journey for every inactive customer with consent, in rate-limited batches. A customer
    whose re-engagement is running is counted, never started twice."""
    settings, config = get_settings(), _config()
    engine = make_engine(settings.database_url)
    migrate(engine)
    days = config.journeys.reengage.inactive_days if inactive_days is None else inactive_days
    columns = (TextColumn("starting journeys"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())

    async def run() -> None:
        client = await connect(settings)
        with Progress(*columns, console=console, disable=dry_run) as progress:
            task = progress.add_task("start", total=None)
            result = await run_reengage_campaign(
                client,
                engine,
                config,
                settings.temporal_task_queue,
                inactive_days=inactive_days,
                dry_run=dry_run,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        found = f"{result.found} inactive customers with consent (no activity for {days} days)"
        if dry_run:
            console.print(f"dry run: {found}; nothing was started")
        else:
            console.print(f"{found}: started {result.started}, already running {result.already_running}")

    try:
        asyncio.run(run())
    except RuntimeError as e:  # Temporal unreachable: the client's connect error says where it looked
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()
