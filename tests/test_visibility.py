"""An operator finds journeys started through the API by customer, journey, order and step (dev server)."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import Engine
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from models import search
from models.journeys import JourneysConfig
from models.settings import Settings
from tests.factories import order_payload

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
POLL_SECONDS = 10


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def http(
    sqlite_engine: Engine, dev_server: WorkflowEnvironment, config: JourneysConfig
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(COMEBACK_API_TOKEN=TOKEN, TEMPORAL_TASK_QUEUE=unique("tq"))
    app = create_app(settings, engine=sqlite_engine, client=dev_server.client, config=config)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://comeback.test") as http:
        yield http


async def find(client: Client, query: str, expected: set[str]) -> set[str]:
    """The workflow ids a visibility query lists, polled (visibility is eventually consistent) until they are
    `expected` or the time is up; then what was last seen, for the assertion to show."""
    deadline = asyncio.get_running_loop().time() + POLL_SECONDS
    while True:
        found = {wf.id async for wf in client.list_workflows(query)}
        if found == expected or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.1)


async def post_order(http: httpx.AsyncClient, order_id: str, customer_id: str) -> str:
    response = await http.post("/orders", json=order_payload(order_id, customer_id), headers=AUTH)
    assert response.status_code == 202, response.text
    return response.json()["workflow_id"]


async def test_a_journey_started_through_the_api_is_found_by_customer_journey_and_order(
    http: httpx.AsyncClient, dev_server: WorkflowEnvironment
):
    client = dev_server.client
    customer_id, order_id = unique("c"), unique("o")

    workflow_id = await post_order(http, order_id, customer_id)

    assert workflow_id == f"post-purchase-{order_id}"
    cross_sell = f"cross-sell-{order_id}"  # the order's other journey
    assert await find(client, f"CustomerId = '{customer_id}'", {workflow_id, cross_sell}) == {workflow_id, cross_sell}
    assert await find(client, f"OrderId = '{order_id}'", {workflow_id, cross_sell}) == {workflow_id, cross_sell}
    by_journey = f"Journey = 'post_purchase' AND CustomerId = '{customer_id}'"
    assert await find(client, by_journey, {workflow_id}) == {workflow_id}
    by_step = f"JourneyStep = 'nurture' AND OrderId = '{order_id}' AND ExecutionStatus = 'Running'"
    assert await find(client, by_step, {workflow_id}) == {workflow_id}

    # What the listing shows an operator, without opening the run.
    (listed,) = [wf async for wf in client.list_workflows(f"OrderId = '{order_id}' AND Journey = 'post_purchase'")]
    assert listed.workflow_type == "PostPurchaseJourney"
    assert listed.status == WorkflowExecutionStatus.RUNNING
    assert listed.typed_search_attributes.get(search.CUSTOMER_ID) == customer_id
    assert listed.typed_search_attributes.get(search.JOURNEY) == "post_purchase"


async def test_queries_list_only_their_own_runs(http: httpx.AsyncClient, dev_server: WorkflowEnvironment):
    client = dev_server.client
    customer_id, other_customer = unique("c"), unique("c")
    post_purchase = "Journey = 'post_purchase' AND "
    first = await post_order(http, unique("o"), customer_id)
    assert await find(client, f"{post_purchase}CustomerId = '{customer_id}'", {first}) == {first}
    second = await post_order(http, unique("o"), customer_id)
    other = await post_order(http, unique("o"), other_customer)

    assert await find(client, f"{post_purchase}CustomerId = '{customer_id}'", {first, second}) == {first, second}
    assert await find(client, f"{post_purchase}CustomerId = '{other_customer}'", {other}) == {other}
    other_order = other.removeprefix("post-purchase-")
    both_of_the_order = {other, f"cross-sell-{other_order}"}
    assert await find(client, f"OrderId = '{other_order}'", both_of_the_order) == both_of_the_order
    journey_of_both = f"Journey = 'post_purchase' AND CustomerId IN ('{customer_id}', '{other_customer}')"
    assert await find(client, journey_of_both, {first, second, other}) == {first, second, other}
