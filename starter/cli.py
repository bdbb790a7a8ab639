"""The `comeback` command."""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

import httpx
import typer
import uvicorn
from rich.console import Console
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest

from activities import build_activities
from api.app import create_app
from channels import channels_from_settings
from models import search
from models.db import make_engine, migrate
from models.journeys import ConfigError, JourneysConfig, load_journeys
from models.settings import get_settings
from starter.client import connect
from starter.demo import sample_order, seed
from starter.dev import Ports, dev_api_token, run_dev
from worker import ACTIVITY_THREADS, create_worker

app = typer.Typer(help="Comeback: customer-retention journeys on Temporal.", no_args_is_help=True)
temporal_app = typer.Typer(help="Temporal cluster administration.", no_args_is_help=True)
app.add_typer(temporal_app, name="temporal")
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
        activities = build_activities(engine, config, channels_from_settings(settings))
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
    console.print("seeded: 6 products, customers c_ava (first-time), c_ben (repeat), c_cleo (VIP)")


@app.command()
def order(
    customer: Annotated[str, typer.Option(help="Customer id (c_ava, c_ben, c_cleo after `comeback seed`).")] = "c_ava",
    order_id: Annotated[str | None, typer.Option(help="Order id (default: a new one).")] = None,
    api_url: Annotated[str, typer.Option(help="Base URL of the Comeback API.")] = "http://localhost:8000",
) -> None:
    """Post a sample order to the API, as a shop's backend would."""
    token = dev_api_token(get_settings())
    try:
        response = httpx.post(
            f"{api_url}/orders",
            json=sample_order(customer, order_id=order_id),
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
    except httpx.HTTPError as e:
        err.print(f"[red]error:[/red] cannot reach the API at {api_url}: {e}")
        raise typer.Exit(1) from None
    console.print(f"{response.status_code} {response.text}")
    if response.is_error:
        raise typer.Exit(1)


@temporal_app.command("setup")
def temporal_setup() -> None:
    """Register Comeback's search attributes on the cluster in TEMPORAL_ADDRESS (idempotent)."""
    settings = get_settings()

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

    asyncio.run(run())


if __name__ == "__main__":
    app()
