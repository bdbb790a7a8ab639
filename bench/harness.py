"""What every benchmark needs: a dev server, our worker and API as separate processes (as in production),
memory readings, and a place for the figures."""

import asyncio
import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx
from temporalio.client import Client

from models.settings import ROOT, Settings
from starter.dev import Ports, start_dev_server, wait_for_temporal

RESULTS = ROOT / "bench" / "RESULTS.md"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (the dev server's UI runs beside it)."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) * 1024
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else []:
        total += rss_bytes(int(child))
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


@dataclass
class Stack:
    """A dev server and the settings that point our processes at it."""

    settings: Settings
    client: Client
    server: subprocess.Popen[bytes]
    workdir: Path

    def env(self, **extra: str) -> dict[str, str]:
        s = self.settings
        return (
            os.environ
            | {
                "TEMPORAL_ADDRESS": s.temporal_address,
                "TEMPORAL_TASK_QUEUE": s.temporal_task_queue,
                "COMEBACK_DATABASE_URL": s.database_url,
                "COMEBACK_JOURNEYS": str(s.journeys_path),
                "COMEBACK_API_TOKEN": s.api_token or "",
            }
            | extra
        )

    def spawn(self, name: str, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", *args], env=self.env(**extra_env), stdout=log, stderr=log, cwd=ROOT
            )


@asynccontextmanager
async def dev_stack(
    workdir: Path,
    journeys: Path,
    *,
    persisted: bool = True,
    database_url: str | None = None,
) -> AsyncIterator[Stack]:
    workdir.mkdir(parents=True, exist_ok=True)
    ports = Ports(temporal=free_port(), ui=free_port(), api=free_port())
    db_file = workdir / "temporal.db" if persisted else None
    server = start_dev_server(ports, db_file, workdir / "temporal.log", ui=False)
    settings = Settings(
        _env_file=None,
        TEMPORAL_ADDRESS=f"127.0.0.1:{ports.temporal}",
        COMEBACK_DATABASE_URL=database_url or f"sqlite:///{workdir / 'comeback.db'}",
        COMEBACK_JOURNEYS=str(journeys),
        COMEBACK_API_TOKEN="bench",
    )
    try:
        client = await wait_for_temporal(settings, server)
        yield Stack(settings, client, server, workdir)
    finally:
        server.terminate()
        server.wait(timeout=60)


@contextmanager
def running(*processes: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


async def while_alive(work: Awaitable[T], *processes: subprocess.Popen[bytes], timeout: float = 900) -> T:
    """Await `work`, failing at once if one of our processes dies instead of waiting for nothing."""
    task = asyncio.ensure_future(work)
    deadline = time.monotonic() + timeout
    while not task.done():
        dead = [p.args for p in processes if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            task.cancel()
            raise RuntimeError(f"exited: {dead}" if dead else "timed out")
        await asyncio.wait([task], timeout=0.5)
    return task.result()


async def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while True:
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up")
            await asyncio.sleep(0.2)


def journeys_with_delays(workdir: Path, **afters: str) -> Path:
    """The shipped journeys file with some steps' delays changed, e.g. thank_you="0s"."""
    text = (ROOT / "config" / "journeys.toml").read_text()
    for step, after in afters.items():
        head, sep, tail = text.partition(f'name = "{step}"\nafter = "')
        assert sep, f"no step {step}"
        text = head + sep + after + tail[tail.index('"') :]
    path = workdir / "journeys.toml"
    path.write_text(text)
    return path


def daytime_zone(hour: int = 13) -> str:
    """An IANA zone where it is now about `hour` o'clock: customers who may be texted whenever a benchmark runs
    (quiet hours are on in the shipped journeys file)."""
    offset = (hour - datetime.now(UTC).hour) % 24
    offset = offset - 24 if offset > 14 else offset
    return f"Etc/GMT{-offset:+d}"  # POSIX sign: Etc/GMT-3 is three hours ahead of UTC


def machine_line() -> str:
    mem = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    gib = int(mem.split()[1]) / 2**20
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor() or platform.machine(),
    )
    return (
        f"{cpu}, {os.cpu_count()} cores, {gib:.0f} GiB, Linux {platform.release()}, Python {platform.python_version()}"
    )


def append_results(title: str, body: str) -> None:
    """Every run appends its figures with the machine and the date."""
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nEach `make bench` run appends its figures here.\n")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with RESULTS.open("a") as f:
        f.write(f"\n## {title} — {stamp}\n\n{machine_line()}\n\n{body.strip()}\n")


def spawn_group(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m *args` in a session of its own, so that `kill_group` ends it and anything it started."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args], env=env, stdout=out, stderr=out, cwd=ROOT, start_new_session=True
        )


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL, as a crash or the OOM killer would: no cleanup runs, nothing is flushed or acknowledged."""
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
