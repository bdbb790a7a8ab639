"""Re-engagement campaigns: who is inactive (SQLite and PostgreSQL), the campaign and its command on 2,000
generated customers and the daily schedule (dev server), and the provider's rate: paced sends, 429s retried and
never doubled."""

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Engine, event
from sqlmodel import Session, func, select
from temporalio.client import Client, ScheduleActionStartWorkflow, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner, Result

from activities import build_activities
from activities.reengagement import inactive_customers
from bench.fake_providers import FakeProviders
from bench.reengage import insert_inactive_customers, phone
from channels.base import Channels, OutgoingMessage, ProviderUnavailable
from channels.twilio import RatePacer, TwilioChannel
from models import search
from models.contracts import CampaignResult, ReengageInput
from models.db import make_engine, migrate
from models.journeys import JourneysConfig
from models.settings import ROOT, get_settings
from models.tables import (
    Channel,
    Click,
    Consent,
    ConsentStatus,
    Customer,
    Event,
    Link,
    LinkKind,
    Message,
    MessageStatus,
    Order,
    utcnow,
)
from starter.campaigns import (
    REENGAGE_SCHEDULE_ID,
    ensure_reengage_schedule,
    reengage_id,
    run_reengage_campaign,
    start_reengage,
)
from starter.cli import app
from tests.conftest import RecordingChannel
from tests.shop import running_shop
from worker import ACTIVITY_THREADS, create_worker

CAMPAIGN_SIZE = 2000
runner = CliRunner()


def fast(config: JourneysConfig, starts_per_second: float = 5000) -> JourneysConfig:
    """The journeys with a campaign as fast as the test server takes it."""
    plan = config.journeys.reengage.model_copy(update={"starts_per_second": starts_per_second})
    return config.model_copy(update={"journeys": config.journeys.model_copy(update={"reengage": plan})})


# --- who is inactive -----------------------------------------------------------------------------------------


def _customer(session: Session, customer_id: str, created_at: datetime, **fields: Any) -> None:
    fields = {"phone": f"+1415555{abs(hash(customer_id)) % 10_000:04d}", "email": f"{customer_id}@example.com"} | fields
    session.add(Customer(id=customer_id, created_at=created_at, **fields))
    session.flush()


def _consent(session: Session, customer_id: str, channel: Channel, *history: tuple[ConsentStatus, datetime]) -> None:
    for status, at in history:
        session.add(Consent(customer_id=customer_id, channel=channel, status=status, source="test", recorded_at=at))
    session.flush()


def _message(session: Session, customer_id: str, **fields: Any) -> Message:
    message = Message(
        idempotency_key=f"test-{uuid.uuid4().hex}/step", customer_id=customer_id, journey="x", step="step", **fields
    )
    session.add(message)
    session.flush()
    return message


def test_inactive_customers_by_every_kind_of_activity(engine: Engine):
    now = utcnow()
    old, days = now - timedelta(days=400), timedelta(days=1)
    granted = (ConsentStatus.granted, old)
    expected = set()
    with Session(engine) as session:

        def customer(customer_id: str, inactive: bool, created_at: datetime = old, **fields: Any) -> str:
            _customer(session, customer_id, created_at, **fields)
            if inactive:
                expected.add(customer_id)
            return customer_id

        _consent(session, customer("quiet", True), Channel.sms, granted)
        _consent(session, customer("new", False, created_at=now - 10 * days), Channel.sms, granted)
        for c, placed, inactive in (("ordered", now - 5 * days, False), ("ordered_long_ago", now - 120 * days, True)):
            _consent(session, customer(c, inactive), Channel.email, granted)
            session.add(Order(id=f"o-{c}", customer_id=c, placed_at=placed, currency="USD", total=Decimal(10)))
        for c, at, inactive in (("visited", now - 3 * days, False), ("visited_long_ago", now - 100 * days, True)):
            _consent(session, customer(c, inactive), Channel.sms, granted)
            session.add(Event(customer_id=c, type="site_visit", occurred_at=at))
        for c, at, inactive in (("clicked", now - 2 * days, False), ("clicked_long_ago", now - 95 * days, True)):
            _consent(session, customer(c, inactive), Channel.sms, granted)
            message = _message(session, c, status=MessageStatus.sent)
            session.add(Link(token=f"t-{c}", message_id=message.id or 0, kind=LinkKind.click, url="https://x.example"))
            session.flush()
            session.add(Click(token=f"t-{c}", clicked_at=at))
        for c, status, at, inactive in (
            ("opened", "open", now - 1 * days, False),
            ("read", "read", now - 1 * days, False),
            ("opened_long_ago", "open", now - 91 * days, True),
            ("delivered", "delivered", now - 1 * days, True),  # delivered is not opened
        ):
            _consent(session, customer(c, inactive), Channel.email, granted)
            _message(session, c, status=MessageStatus.sent, delivery_status=status, delivery_updated_at=at)
        revoked = (ConsentStatus.revoked, now - 200 * days)
        _consent(session, customer("revoked", False), Channel.sms, granted, revoked)
        _consent(session, customer("denied", False), Channel.sms, (ConsentStatus.denied, old))
        _consent(session, customer("never_asked", False), Channel.sms)
        _consent(session, customer("regranted", True), Channel.sms, granted, revoked, (ConsentStatus.granted, now))
        _consent(session, customer("text_consent_no_phone", False, phone=None), Channel.sms, granted)
        _consent(session, customer("email_consent_no_email", False, email=None), Channel.email, granted)
        # One channel revoked, the other still granted: still reachable.
        _consent(session, customer("one_left", True), Channel.sms, granted, revoked)
        _consent(session, "one_left", Channel.email, granted)
        session.commit()

        assert set(inactive_customers(session, 90, now)) == expected
        # 0 days: everyone reachable, whatever they did.
        reachable = expected | {"new", "ordered", "visited", "clicked", "opened", "read"}
        assert set(inactive_customers(session, 0, now)) == reachable
        assert inactive_customers(session, 90, now) == sorted(expected)  # in a stable order


def test_the_inactivity_query_is_one_statement_fast_on_20000_customers(engine: Engine):
    insert_inactive_customers(engine, 20_000)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    with Session(engine) as session:
        session.exec(select(func.count()).select_from(Customer)).one()  # connected and warm
        event.listen(engine, "before_cursor_execute", count)
        began = time.perf_counter()
        found = inactive_customers(session, 90, utcnow())
        elapsed = time.perf_counter() - began
        event.remove(engine, "before_cursor_execute", count)
    assert len(found) == 20_000
    assert len(statements) == 1  # no per-customer round trip
    assert elapsed < 5, f"{elapsed:.2f}s for 20,000 customers"


# --- the campaign and its command, on the dev server -----------------------------------------------------------


async def _terminate(client: Client, customer_ids: list[str]) -> None:
    """Started journeys sleep for a month: end them, so the shared dev server does not carry them."""

    async def end(customer_id: str) -> None:
        with contextlib.suppress(RPCError):  # not started, or already closed
            await client.get_workflow_handle(reengage_id(customer_id)).terminate("test over")

    for first in range(0, len(customer_ids), 200):
        await asyncio.gather(*(end(c) for c in customer_ids[first : first + 200]))


async def _running(client: Client, query: str, expected: int, timeout: float = 30) -> int:
    """How many journeys visibility lists (eventually consistent: polled until `expected` or the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        found = (await client.count_workflows(query)).count
        if found == expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture
async def campaign_customers(
    sqlite_engine: Engine, dev_server: WorkflowEnvironment
) -> AsyncIterator[tuple[Engine, list[str]]]:
    prefix = f"c-{uuid.uuid4().hex[:6]}"
    ids = insert_inactive_customers(sqlite_engine, CAMPAIGN_SIZE, prefix=prefix)
    with Session(sqlite_engine) as session:  # and some who are not: active lately, or no consent
        _customer(session, f"{prefix}-active", utcnow() - timedelta(days=3))
        _consent(session, f"{prefix}-active", Channel.sms, (ConsentStatus.granted, utcnow()))
        _customer(session, f"{prefix}-no-consent", utcnow() - timedelta(days=300))
        session.commit()
    # Their journeys sleep a month on a task queue no worker polls, and go with the session's dev server.
    yield sqlite_engine, ids


async def test_two_campaigns_at_once_start_one_journey_per_customer(
    campaign_customers: tuple[Engine, list[str]], dev_server: WorkflowEnvironment, config: JourneysConfig
):
    engine, ids = campaign_customers
    client, task_queue = dev_server.client, f"tq-{uuid.uuid4()}"
    config = fast(config)

    first, second = await asyncio.gather(
        run_reengage_campaign(client, engine, config, task_queue),
        run_reengage_campaign(client, engine, config, task_queue),
    )
    assert first.found == second.found == CAMPAIGN_SIZE
    assert first.started + second.started == CAMPAIGN_SIZE
    assert first.already_running + second.already_running == CAMPAIGN_SIZE
    again = await run_reengage_campaign(client, engine, config, task_queue)
    assert (again.started, again.already_running) == (0, CAMPAIGN_SIZE)

    query = f"TaskQueue = '{task_queue}' AND WorkflowType = 'ReengageJourney'"
    assert await _running(client, query, CAMPAIGN_SIZE) == CAMPAIGN_SIZE  # one run per customer, no more
    listed = [wf async for wf in client.list_workflows(f"{query} AND CustomerId = '{ids[7]}'")]
    assert [(wf.id, wf.status) for wf in listed] == [(reengage_id(ids[7]), WorkflowExecutionStatus.RUNNING)]
    assert listed[0].typed_search_attributes.get(search.JOURNEY) == "reengage"


async def test_a_campaign_is_paced_at_its_starts_per_second(
    sqlite_engine: Engine, dev_server: WorkflowEnvironment, config: JourneysConfig
):
    insert_inactive_customers(sqlite_engine, 100, prefix=f"c-{uuid.uuid4().hex[:6]}")
    progress: list[tuple[int, int]] = []
    began = time.monotonic()
    result = await run_reengage_campaign(
        dev_server.client,
        sqlite_engine,
        fast(config, starts_per_second=50),
        f"tq-{uuid.uuid4()}",
        on_progress=lambda done, total: progress.append((done, total)),
    )
    elapsed = time.monotonic() - began
    assert result.started == 100
    assert elapsed >= 1.8  # the last batch of 10 goes out 1.8 s after the first
    assert progress[0] == (0, 100) and progress[-1] == (100, 100)
    assert len(progress) == 100 / 10 + 1  # batches of a fifth of a second's starts


@pytest.fixture
def cli_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dev_server: WorkflowEnvironment
) -> Iterator[dict[str, str]]:
    journeys = tmp_path / "journeys.toml"
    text = (ROOT / "config" / "journeys.toml").read_text()
    journeys.write_text(text.replace("starts_per_second = 50 ", "starts_per_second = 5000 ", 1))
    values = {
        "COMEBACK_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "COMEBACK_JOURNEYS": str(journeys),
        "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "TEMPORAL_TASK_QUEUE": f"tq-{uuid.uuid4()}",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield values
    get_settings.cache_clear()


async def _invoke(*args: str) -> str:
    """The command's output, one line; it runs its own event loop, so it runs beside the test's."""
    result: Result = await asyncio.to_thread(runner.invoke, app, list(args))
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


async def test_the_command_dry_run_starts_and_sends_nothing_and_a_real_run_starts_each_once(
    cli_env: dict[str, str], dev_server: WorkflowEnvironment
):
    engine = make_engine(cli_env["COMEBACK_DATABASE_URL"])
    migrate(engine)
    insert_inactive_customers(engine, CAMPAIGN_SIZE, prefix="c-cli")
    client, query = dev_server.client, f"TaskQueue = '{cli_env['TEMPORAL_TASK_QUEUE']}'"

    dry = await _invoke("campaign", "reengage", "--dry-run")
    assert "dry run: 2000 inactive customers with consent (no activity for 90 days); nothing was started" in dry
    await asyncio.sleep(1)  # visibility would have listed a start by now
    assert (await client.count_workflows(query)).count == 0
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Message)).one() == 0

    lapsed_longer = await _invoke("campaign", "reengage", "--inactive-days", "365")
    assert "0 inactive customers with consent (no activity for 365 days): started 0" in lapsed_longer

    real = await _invoke("campaign", "reengage")
    assert "2000 inactive customers with consent (no activity for 90 days): started 2000, already running 0" in real
    again = await _invoke("campaign", "reengage", "--inactive-days", "90")
    assert "started 0, already running 2000" in again
    assert await _running(client, query, CAMPAIGN_SIZE) == CAMPAIGN_SIZE  # one journey each, no more


def test_the_command_says_when_temporal_is_unreachable(cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:9")
    get_settings.cache_clear()
    result = runner.invoke(app, ["campaign", "reengage", "--dry-run"])
    assert result.exit_code == 1
    assert "error" in result.output


# --- the daily schedule ----------------------------------------------------------------------------------------


async def test_the_daily_schedule_runs_the_campaign_and_keeps_a_pause(
    sqlite_engine: Engine, dev_server: WorkflowEnvironment, config: JourneysConfig, channels: Channels
):
    client, task_queue = dev_server.client, f"tq-{uuid.uuid4()}"
    ids = insert_inactive_customers(sqlite_engine, 5, prefix=f"c-{uuid.uuid4().hex[:6]}")
    handle = client.get_schedule_handle(REENGAGE_SCHEDULE_ID)
    activities = build_activities(sqlite_engine, config, channels, client=client)
    try:
        with ThreadPoolExecutor(ACTIVITY_THREADS) as executor:
            async with create_worker(client, task_queue, activities, executor):
                assert await ensure_reengage_schedule(client, config, task_queue) == "created"
                described = await handle.describe()
                # The cron "0 15 * * *" (UTC), as the server reads it: every day at 15:00.
                next_runs = described.info.next_action_times[:2]
                assert [(t.hour, t.minute, t.tzinfo) for t in next_runs] == [(15, 0, UTC)] * 2
                assert next_runs[1] - next_runs[0] == timedelta(days=1)
                action = described.schedule.action
                assert isinstance(action, ScheduleActionStartWorkflow) and action.task_queue == task_queue

                await handle.trigger()
                campaign = await _first_run(client, handle)
                result = await client.get_workflow_handle(campaign, result_type=CampaignResult).result()
                assert (result.found, result.started, result.already_running) == (5, 5, 0)
                for customer_id in ids:
                    journey = await client.get_workflow_handle(reengage_id(customer_id)).describe()
                    assert journey.status == WorkflowExecutionStatus.RUNNING
                    assert journey.search_attributes["CustomerId"] == [customer_id]

                await handle.pause(note="paused by the operator")
                assert await ensure_reengage_schedule(client, config, task_queue) == "updated"
                assert (await handle.describe()).schedule.state.paused
    finally:
        await handle.delete()
        await _terminate(client, ids)


async def _first_run(client: Client, handle: Any, timeout: float = 30) -> str:
    """The workflow id of the schedule's first action, once it has started."""
    deadline = time.monotonic() + timeout
    while True:
        actions = (await handle.describe()).info.recent_actions
        if actions:
            return str(actions[0].action.workflow_id)
        assert time.monotonic() < deadline, "the schedule started nothing"
        await asyncio.sleep(0.2)


# --- the provider's rate ---------------------------------------------------------------------------------------


def test_the_pacer_gives_each_call_the_next_slot_and_saves_no_burst():
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)

    pacer = RatePacer(10, clock=lambda: now[0], sleep=sleep)
    waits = [pacer.wait() for _ in range(4)]
    assert waits == pytest.approx([0, 0.1, 0.2, 0.3]) and slept == pytest.approx([0.1, 0.2, 0.3])
    now[0] += 60  # idle for a minute: the next calls are spaced again, not sent at once
    assert [pacer.wait() for _ in range(3)] == pytest.approx([0, 0.1, 0.2])


def test_the_last_step_holds_back_requests_that_bunched_after_their_slots():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)

    pacer = RatePacer(10, burst=2, clock=lambda: now[0], sleep=sleep)
    # Five threads got their slots 0.1 s apart, then a stall woke them all at once at t=1.
    now[0] = 1.0
    assert [pacer.admit() for _ in range(5)] == pytest.approx([0, 0, 0.1, 0.2, 0.3])
    now[0] = 10.0  # in steady state, spaced as the slots are, nothing waits
    assert [pacer.admit() for _ in range(1)] == [0]
    assert RatePacer(100).burst == 25 and RatePacer(1).burst == 1


def _send_all(
    channel: TwilioChannel, texts: int, *, paced: bool, stall: threading.Event | None = None
) -> list[Exception]:
    """`texts` sends from 32 threads (the worker's activity threads); with `stall`, sends wait between their slot
    and their request while it is cleared, as they would for a database that hangs or a process short of CPU."""
    errors: list[Exception] = []

    def send(i: int) -> None:
        if paced:
            channel.pace()
            if stall:
                stall.wait()
        try:
            channel.send(OutgoingMessage(message_id=i, channel=Channel.sms, to=f"+1415555{i:04d}", body=f"hi {i}"))
        except ProviderUnavailable as e:
            errors.append(e)

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(send, range(texts)))
    return errors


def test_paced_threads_send_at_the_rate_and_meet_no_429_where_unpaced_ones_do():
    rate, texts = 50, 100
    with FakeProviders(rate=rate) as fake:
        unpaced = _send_all(_twilio(fake), texts, paced=False)
        assert unpaced and fake.stats()["twilio_429"] == len(unpaced)  # the fake enforces the rate
        assert all("429" in str(e) and "20429" in str(e) for e in unpaced)

    with FakeProviders(rate=rate) as fake:
        assert _send_all(_twilio(fake, max_rate=rate), texts, paced=True) == []
        accepted = fake.accepted("twilio")
        assert len(accepted) == texts and fake.stats().get("twilio_429", 0) == 0
        achieved = (texts - 1) / (max(a.at for a in accepted) - min(a.at for a in accepted))
        assert rate * 0.95 <= achieved <= rate * 1.05


def test_sends_that_stalled_after_their_slot_are_held_back_not_bunched():
    """A stall between slots and requests (a database that hangs, a process short of CPU) releases a clump of sends
    at once, one per thread: 32, over the fake's burst of a second's worth. The pacer's last step spaces them
    again. (Without it, this test meets about a dozen 429s.)"""
    rate, texts = 20, 80
    stall = threading.Event()
    stall.set()
    timers = [threading.Timer(0.3, stall.clear), threading.Timer(2.5, stall.set)]
    for timer in timers:
        timer.start()
    with FakeProviders(rate=rate) as fake:
        assert _send_all(_twilio(fake, max_rate=rate), texts, paced=True, stall=stall) == []
        assert len(fake.accepted("twilio")) == texts and fake.stats().get("twilio_429", 0) == 0


def test_twilio_max_rate_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch):
    from models.settings import Settings

    settings = Settings(TWILIO_ACCOUNT_SID="AC" + "0" * 32, TWILIO_AUTH_TOKEN="t", TWILIO_FROM_NUMBER="+15005550006")
    assert TwilioChannel.from_settings(settings).pacer is None
    paced = TwilioChannel.from_settings(settings.model_copy(update={"twilio_max_rate": 3.0}))
    assert paced.pacer is not None and paced.pacer.interval == pytest.approx(1 / 3)


async def test_a_429_is_retried_never_failed_and_never_sent_twice(
    time_skipping: WorkflowEnvironment, sqlite_engine: Engine, config: JourneysConfig, recorder: RecordingChannel
):
    with FakeProviders(rate=5, burst=1) as fake:
        twilio = _twilio(fake)
        twilio.send(OutgoingMessage(message_id=0, channel=Channel.sms, to="+12125550199", body="takes the slot"))
        customer_id = insert_inactive_customers(sqlite_engine, 1, prefix=f"c-{uuid.uuid4().hex[:6]}")[0]
        async with running_shop(time_skipping, sqlite_engine, config, Channels(sms=twilio, email=recorder)) as shop:
            journey = ReengageInput(customer_id=customer_id, plan=config.journeys.reengage)
            handle = await start_reengage(shop.env.client, shop.task_queue, journey)
            assert handle is not None
            result = await handle.result()

        assert result.ended == "sunset"
        texts = [a for a in fake.accepted("twilio") if a.to == phone(0)]
        assert len(texts) == 3 and len({t.body for t in texts}) == 3  # survey, contest, coupon: once each
        assert fake.stats()["twilio_429"] >= 1  # the first attempt met the limit
        with Session(sqlite_engine) as session:
            rows = session.exec(select(Message).where(Message.customer_id == customer_id)).all()
        assert [(m.status, m.provider) for m in rows] == [(MessageStatus.sent, "twilio")] * 3
        assert {m.provider_id for m in rows} == {t.id for t in texts}


def _twilio(fake: FakeProviders, max_rate: float | None = None) -> TwilioChannel:
    env = fake.env()
    return TwilioChannel(
        env["TWILIO_ACCOUNT_SID"],
        env["TWILIO_AUTH_TOKEN"],
        public_url="https://comeback.example",
        from_number=env["TWILIO_FROM_NUMBER"],
        api_base_url=fake.url,
        max_rate=max_rate,
    )
