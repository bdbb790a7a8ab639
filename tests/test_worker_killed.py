"""A worker killed after the provider accepted a message and before the outbox row was marked sent: the restarted
worker's retry finds the row pending, looks the message up at the provider (Twilio's message list, SendGrid's
Email Activity API), and does not send it again.

A real `comeback worker` process on the dev server, a fake Twilio and SendGrid that hold back their answer to
the first message until the worker is dead, the demo journeys (steps seconds apart). The retry comes when the
killed attempt's start-to-close timeout (`workflows.steps.SEND_TIMEOUT`, 60 s) expires, so each case takes a
little over a minute.
"""

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from api.intake import store_order
from api.schemas import OrderIn
from bench.fake_providers import FakeProviders
from bench.harness import kill_group, spawn_group, while_alive
from models.contracts import PostPurchaseInput
from models.db import make_engine, migrate
from models.journeys import JourneysConfig, load_journeys
from models.settings import ROOT
from models.tables import Message, MessageStatus
from starter.journeys import start_post_purchase
from tests.factories import order_payload

DEMO = ROOT / "config" / "journeys.demo.toml"  # steps at 5, 15, 30 and 45 s; quiet hours and caps off
PHONE = "+14155550142"
EMAIL = "held@example.com"
# channel: (the customer's contact details and consent, the provider's name at the fake)
CUSTOMERS = {
    "sms": ({"phone": PHONE, "email_consent": False, "preferred_channel": "sms"}, "twilio"),
    "email": ({"email": EMAIL, "sms_consent": False, "preferred_channel": "email"}, "sendgrid"),
}


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    with FakeProviders() as fake:
        yield fake


@pytest.fixture
def app_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'comeback.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


class Workers:
    """`comeback worker` processes, one at a time, each killed with its process group at the end."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        self.started.append(spawn_group(["starter.cli", "worker"], self.env, self.log))
        return self.started[-1]

    def kill_all(self) -> None:
        for process in self.started:
            kill_group(process)


@pytest.fixture
def workers(dev_server: WorkflowEnvironment, fake: FakeProviders, tmp_path: Path) -> Iterator[Workers]:
    env = (
        os.environ
        | fake.env()
        | {
            "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
            "TEMPORAL_NAMESPACE": dev_server.client.namespace,
            "TEMPORAL_TASK_QUEUE": f"killed-{uuid.uuid4().hex[:8]}",
            "COMEBACK_DATABASE_URL": f"sqlite:///{tmp_path / 'comeback.db'}",
            "COMEBACK_JOURNEYS": str(DEMO),
        }
    )
    workers = Workers(env, tmp_path / "worker.log")
    try:
        yield workers
    finally:
        workers.kill_all()


def store_order_for(engine: Engine, config: JourneysConfig, channel: str) -> PostPurchaseInput:
    order_id = f"killed-{uuid.uuid4().hex[:8]}"
    payload = order_payload(order_id, f"c-{order_id}", **CUSTOMERS[channel][0])
    with Session(engine) as session:
        stored = store_order(session, OrderIn.model_validate(payload), config)
    plan = config.journeys.post_purchase
    return PostPurchaseInput(customer_id=stored.customer_id, order_id=order_id, segment=stored.segment, plan=plan)


def outbox(engine: Engine, workflow_id: str) -> dict[str, Message]:
    with Session(engine) as session:
        rows = session.exec(select(Message).where(col(Message.idempotency_key).startswith(f"{workflow_id}/")))
        return {row.step: row for row in rows}


@pytest.mark.parametrize("channel", ["sms", "email"])
async def test_a_message_accepted_before_the_worker_died_is_not_sent_again(
    dev_server: WorkflowEnvironment, fake: FakeProviders, app_engine: Engine, workers: Workers, channel: str
) -> None:
    config = load_journeys(DEMO)
    steps = [step.name for step in config.journeys.post_purchase.steps]
    journey = store_order_for(app_engine, config, channel)
    address, provider = (PHONE if channel == "sms" else EMAIL), CUSTOMERS[channel][1]
    held = fake.hold(lambda message: message.to == address)  # the first message: the thank-you
    first = workers.start()
    handle = await start_post_purchase(dev_server.client, workers.env["TEMPORAL_TASK_QUEUE"], journey)
    assert handle is not None

    # The provider has the message; the worker is still waiting for its answer, the outbox row still pending.
    assert await asyncio.to_thread(held.arrived.wait, 60), f"the thank-you never reached {provider}"
    kill_group(first)
    held.release()
    assert outbox(app_engine, handle.id)[steps[0]].status == MessageStatus.pending

    second = workers.start()
    result = await while_alive(handle.result(), second, timeout=150)

    assert [outcome.step for outcome in result.steps_done] == steps
    sent = outbox(app_engine, handle.id)
    assert {step: row.status for step, row in sent.items()} == dict.fromkeys(steps, MessageStatus.sent)
    accepted = fake.accepted(provider)
    assert sorted(m.body for m in accepted) == sorted(row.body or "" for row in sent.values()), "each step once"
    assert all(m.to == address for m in accepted)
    assert held.message is not None
    assert sent[steps[0]].provider_id == held.message.id  # the retry found the message the provider already had
    assert fake.stats().get(f"{provider}_lookups", 0) >= 1
    assert len(fake.accepted()) == len(steps)
