"""The `comeback` command, as an operator runs it."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner, Result

from models import search
from models.db import make_engine
from models.settings import ROOT, get_settings
from models.tables import Customer, Order, Product
from starter.binaries import temporal_cli
from starter.cli import app
from starter.demo import CATALOG

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A database of its own; settings are read afresh for every command."""
    values = {"COMEBACK_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "COMEBACK_API_TOKEN": "t"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield values
    get_settings.cache_clear()


def test_seed_loads_the_demo_shop_and_can_run_again(env: dict[str, str]):
    for _ in range(2):
        result = runner.invoke(app, ["seed"])
        assert result.exit_code == 0, result.output
    with Session(make_engine(env["COMEBACK_DATABASE_URL"])) as session:
        assert {c.id for c in session.exec(select(Customer))} == {"c_ava", "c_ben", "c_cleo"}
        assert len(session.exec(select(Product)).all()) == len(CATALOG)
        assert sorted(o.customer_id for o in session.exec(select(Order))) == ["c_ben"] + ["c_cleo"] * 3


def test_a_broken_journeys_file_stops_a_command_naming_the_field(env: dict[str, str], tmp_path: Path, monkeypatch):
    broken = tmp_path / "journeys.toml"
    broken.write_text((ROOT / "config" / "journeys.toml").read_text().replace('after = "7d"', 'after = "7 days"'))
    monkeypatch.setenv("COMEBACK_JOURNEYS", str(broken))
    get_settings.cache_clear()
    result = runner.invoke(app, ["seed"])
    assert result.exit_code == 2
    assert "journeys.post_purchase.steps.1.after" in result.output and "not a duration" in result.output


def test_order_without_an_api_says_where_it_looked(env: dict[str, str]):
    result = runner.invoke(app, ["order", "--api-url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "cannot reach the API at http://127.0.0.1:9" in result.output


def test_api_refuses_to_start_without_a_token(env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("COMEBACK_API_TOKEN")
    get_settings.cache_clear()
    result = runner.invoke(app, ["api"])
    assert result.exit_code == 2
    assert "COMEBACK_API_TOKEN" in result.output


async def test_temporal_setup_registers_the_search_attributes_once(env: dict[str, str], monkeypatch):
    # A cluster of our own, without the attributes (the shared dev server has them already).
    server = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(), data_converter=pydantic_data_converter, dev_server_log_level="error"
    )
    try:
        monkeypatch.setenv("TEMPORAL_ADDRESS", server.client.service_client.config.target_host)
        get_settings.cache_clear()
        first = await _invoke_in_thread(["temporal", "setup"])
        assert first.exit_code == 0, first.output
        assert "CustomerId" in first.output
        again = await _invoke_in_thread(["temporal", "setup"])
        assert again.exit_code == 0 and "registered none" in again.output
        listed = await server.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        assert {key.name for key in search.ALL} <= set(listed.custom_attributes)
    finally:
        await server.shutdown()


async def _invoke_in_thread(args: list[str]) -> Result:
    """The command runs its own event loop, so it runs beside the test's."""
    return await asyncio.to_thread(runner.invoke, app, args)
