"""A shop with a worker on a Temporal test server: orders go in, journeys run, messages come out."""

import base64
import json
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities import build_activities
from api.intake import store_order
from api.schemas import OrderIn
from channels.base import Channels
from models.contracts import JourneyResult, PostPurchaseInput
from models.journeys import JourneysConfig
from models.tables import Message
from starter.journeys import start_post_purchase
from tests.factories import order_payload
from worker import ACTIVITY_THREADS, create_worker
from workflows.post_purchase import PostPurchaseJourney


def decoded_history(history_json: str) -> str:
    """The history as JSON with every payload's base64 data decoded: what an operator can read."""
    decoded: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "data" and isinstance(value, str):
                    decoded.append(base64.b64decode(value).decode(errors="replace"))
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(history_json))
    return history_json + "\n".join(decoded)


class Shop:
    """A shop with a worker on the time-skipping server: orders go in, journeys run, messages come out."""

    def __init__(self, env: WorkflowEnvironment, engine: Engine, config: JourneysConfig, task_queue: str) -> None:
        self.env, self.engine, self.config, self.task_queue = env, engine, config, task_queue

    async def order(
        self, order_id: str | None = None, customer_id: str = "c_42", total: str = "129.90", **customer
    ) -> WorkflowHandle[PostPurchaseJourney, JourneyResult]:
        order_id = order_id or uuid.uuid4().hex[:8]
        order = OrderIn.model_validate(order_payload(order_id, customer_id, total, **customer))
        with Session(self.engine) as session:
            stored = store_order(session, order, self.config)
        journey = PostPurchaseInput(
            customer_id=customer_id,
            order_id=order_id,
            segment=stored.segment,
            plan=self.config.journeys.post_purchase,
        )
        handle = await start_post_purchase(self.env.client, self.task_queue, journey)
        assert handle is not None  # the time-skipping handle: awaiting its result skips time
        return handle

    def messages(self, workflow_id: str) -> list[Message]:
        with Session(self.engine) as session:
            rows = session.exec(
                select(Message).where(col(Message.idempotency_key).startswith(workflow_id + "/")).order_by(Message.id)
            ).all()
            return list(rows)


@asynccontextmanager
async def running_shop(
    env: WorkflowEnvironment, engine: Engine, config: JourneysConfig, channels: Channels
) -> AsyncIterator[Shop]:
    task_queue = f"tq-{uuid.uuid4()}"
    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        activities = build_activities(engine, config, channels, client=env.client)
        async with create_worker(env.client, task_queue, activities, executor):
            yield Shop(env, engine, config, task_queue)
