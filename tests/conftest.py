"""Shared fixtures: real Temporal servers from the wheels, real databases, a channel that counts its calls."""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
import pytest_asyncio
from sqlalchemy import Engine
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from channels.base import Channels, OutgoingMessage
from models import search
from models.db import make_engine, migrate
from models.journeys import JourneysConfig, load_journeys
from models.settings import ROOT
from starter.binaries import temporal_cli, temporal_test_server

PG_ADMIN_URL = os.environ.get("COMEBACK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class RecordingChannel:
    """A provider that records what reaches it: to count calls, not to stand in for a real one."""

    name: str = "recording"
    sent: list[OutgoingMessage] = field(default_factory=list)
    maybe_sent: list[bool] = field(default_factory=list)

    def send(self, message: OutgoingMessage, *, maybe_sent: bool = False) -> str:
        self.sent.append(message)
        self.maybe_sent.append(maybe_sent)
        return f"rec-{len(self.sent)}"


class NoJourneys:
    """Temporal where no journey runs: a start is accepted and nothing runs, a signal finds no journey (as the
    server answers for one that has ended). For API tests about what is stored, not about journeys."""

    async def start_workflow(self, *args: object, **kwargs: object) -> None:
        return None

    def get_workflow_handle(self, workflow_id: str) -> "NoJourneys":
        return self

    async def signal(self, *args: object, **kwargs: object) -> None:
        raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")


@pytest.fixture
def recorder() -> RecordingChannel:
    return RecordingChannel()


@pytest.fixture
def channels(recorder: RecordingChannel) -> Channels:
    return Channels(sms=recorder, email=recorder)


@pytest.fixture(scope="session")
def shipped_config() -> JourneysConfig:
    """config/journeys.toml as shipped: quiet hours and caps on."""
    return load_journeys(ROOT / "config" / "journeys.toml")


@pytest.fixture(scope="session")
def config(shipped_config: JourneysConfig) -> JourneysConfig:
    """The shipped journeys with quiet hours and caps off, so that tests about something else do not depend on
    the hour they run at. The tests of quiet hours and caps use `shipped_config`."""
    policy = shipped_config.policy.model_copy(update={"quiet_hours": False, "frequency_caps": False})
    return shipped_config.model_copy(update={"policy": policy})


@pytest.fixture
def sqlite_engine(tmp_path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'comeback.db'}")
    migrate(engine)
    return engine


def _pg_reachable() -> bool:
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
        return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this run, dropped at the end. With CI=true it must be reachable."""
    if not _pg_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI and is not reachable at {PG_ADMIN_URL}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    name = f"comeback_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path) -> Iterator[Engine]:
    """The same store test against SQLite and PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'comeback.db'}"
    else:
        url = request.getfixturevalue("pg_database")
        _reset_postgres(url)
    engine = make_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()


def _reset_postgres(url: str) -> None:
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


async def register_search_attributes(client: Client) -> None:
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in search.ALL},
        )
    )


@pytest_asyncio.fixture(scope="session")
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server(), data_converter=pydantic_data_converter
    )
    await register_search_attributes(env.client)  # the test server does not know them otherwise
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=pydantic_data_converter,
        search_attributes=search.ALL,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()
