"""The re-engagement journey on the time-skipping server, with the real activities on SQLite."""

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
import pytest_asyncio
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.client import WorkflowHandle

from models.contracts import (
    ClickedSignal,
    JourneyResult,
    MessageEventSignal,
    OptOutSignal,
    PurchaseSignal,
    ReengageInput,
)
from models.store import consent_status
from models.tables import Channel, Click, Consent, ConsentStatus, Coupon, Customer, Link, LinkKind, Message, Order
from starter.campaigns import reengage_id, start_reengage
from tests.conftest import RecordingChannel
from tests.shop import Shop, decoded_history, running_shop
from workflows.reengage import ReengageJourney

PHONE, EMAIL = "+14155550123", "nora@example.com"
STEPS = ["survey", "contest", "coupon"]
Handle = WorkflowHandle[ReengageJourney, JourneyResult]


@pytest_asyncio.fixture
async def shop(time_skipping, sqlite_engine, config, channels) -> AsyncIterator[Shop]:
    async with running_shop(time_skipping, sqlite_engine, config, channels) as shop:
        yield shop


def add_customer(
    engine: Engine,
    *,
    phone: str | None = PHONE,
    email: str | None = EMAIL,
    sms: ConsentStatus | None = ConsentStatus.granted,
    email_consent: ConsentStatus | None = ConsentStatus.granted,
    first_name: str = "Nora",
    last_name: str = "Lindqvist",
) -> str:
    customer_id = f"c_{uuid.uuid4().hex[:8]}"
    with Session(engine) as session:
        session.add(Customer(id=customer_id, first_name=first_name, last_name=last_name, phone=phone, email=email))
        session.flush()  # the customer before the consent rows that point to it
        for channel, status in ((Channel.sms, sms), (Channel.email, email_consent)):
            if status is not None:
                session.add(Consent(customer_id=customer_id, channel=channel, status=status, source="checkout"))
        session.commit()
    return customer_id


async def start(shop: Shop, customer_id: str) -> Handle:
    journey = ReengageInput(customer_id=customer_id, plan=shop.config.journeys.reengage)
    handle = await start_reengage(shop.env.client, shop.task_queue, journey)
    assert handle is not None  # the time-skipping handle: awaiting its result skips time
    return handle


def cycle_of(started: datetime) -> str:
    return f"{started:%Y%m%dT%H%M%S}"


def consents(engine: Engine, customer_id: str) -> dict[Channel, ConsentStatus | None]:
    with Session(engine) as session:
        return {channel: consent_status(session, customer_id, channel) for channel in Channel}


def sunset_rows(engine: Engine, customer_id: str) -> list[Consent]:
    with Session(engine) as session:
        query = select(Consent).where(Consent.customer_id == customer_id, Consent.source == "reengage_sunset")
        return list(session.exec(query).all())


async def started_at(handle: Handle) -> datetime:
    return (await handle.describe()).start_time


async def test_no_open_no_click_gets_all_three_then_is_unsubscribed_from_marketing(
    shop: Shop, recorder: RecordingChannel
):
    customer_id = add_customer(shop.engine)
    handle = await start(shop, customer_id)
    began = await started_at(handle)
    result = await handle.result()

    cycle = cycle_of(began)
    assert result.ended == "sunset"
    assert [s.step for s in result.steps_done] == [f"{s}_{cycle}" for s in [*STEPS, "sunset"]]
    plan = shop.config.journeys.reengage
    for step, done in zip(plan.steps, result.steps_done, strict=False):
        assert step.after <= done.at - began < step.after + timedelta(minutes=1)
    assert plan.sunset_after <= result.steps_done[-1].at - began < plan.sunset_after + timedelta(minutes=1)
    assert result.steps_done[-1].outcome == "sunset: consent revoked on sms, email"

    messages = shop.messages(handle.id)
    assert [(m.step, m.status, m.channel) for m in messages] == [(f"{s}_{cycle}", "sent", "email") for s in STEPS]
    assert [m.template for m in messages] == [f"reengage/{s}" for s in STEPS]
    assert [m.to for m in recorder.sent] == [EMAIL] * 3
    assert "Nora" in recorder.sent[0].body and "/r/" in recorder.sent[0].body
    with Session(shop.engine) as session:  # the coupon message carries a unique code of its own
        (coupon,) = session.exec(select(Coupon).where(Coupon.message_id == messages[2].id)).all()
    assert coupon.code in recorder.sent[2].body and coupon.percent_off == 20

    # Unsubscribed from marketing on both channels, by appended records: the customer and their history stay.
    assert consents(shop.engine, customer_id) == {
        Channel.sms: ConsentStatus.revoked,
        Channel.email: ConsentStatus.revoked,
    }
    assert {(c.channel, c.status) for c in sunset_rows(shop.engine, customer_id)} == {
        (Channel.sms, ConsentStatus.revoked),
        (Channel.email, ConsentStatus.revoked),
    }
    with Session(shop.engine) as session:
        assert session.get(Customer, customer_id) is not None
        assert len(session.exec(select(Consent).where(Consent.customer_id == customer_id)).all()) == 4
    description = await handle.describe()
    assert description.search_attributes["JourneyStep"] == ["sunset"]
    assert description.search_attributes["Journey"] == ["reengage"]
    assert description.search_attributes["CustomerId"] == [customer_id]


async def test_opening_the_survey_skips_the_contest_and_the_coupon(shop: Shop, recorder: RecordingChannel):
    customer_id = add_customer(shop.engine)
    handle = await start(shop, customer_id)
    await shop.env.sleep(timedelta(days=31))
    survey = (await handle.query(ReengageJourney.state)).steps_done[0].step
    await handle.signal(ReengageJourney.message_event, MessageEventSignal(step=survey, message_id=1, event="open"))
    result = await handle.result()

    cycle = survey.removeprefix("survey_")
    assert result.ended == "sunset"  # opened, never clicked
    assert [(s.step, s.outcome) for s in result.steps_done] == [
        (survey, "sent by email"),
        (f"contest_{cycle}", f"skipped (opened {survey})"),
        (f"coupon_{cycle}", f"skipped (opened {survey})"),
        (f"sunset_{cycle}", "sunset: consent revoked on sms, email"),
    ]
    assert [m.step for m in shop.messages(handle.id)] == [survey]
    assert len(recorder.sent) == 1


async def test_opening_the_contest_skips_the_coupon(shop: Shop):
    customer_id = add_customer(shop.engine)
    handle = await start(shop, customer_id)
    await shop.env.sleep(timedelta(days=61))
    contest = (await handle.query(ReengageJourney.state)).steps_done[1].step
    # SendGrid reports its own click tracking as a click event: an open, not a reactivation.
    await handle.signal(ReengageJourney.message_event, MessageEventSignal(step=contest, message_id=2, event="click"))
    result = await handle.result()

    assert result.ended == "sunset"
    assert [s.outcome for s in result.steps_done][:3] == [
        "sent by email",
        "sent by email",
        f"skipped (opened {contest})",
    ]
    assert [m.template for m in shop.messages(handle.id)] == ["reengage/survey", "reengage/contest"]


async def test_an_open_of_another_run_or_a_delivery_report_changes_nothing(shop: Shop):
    customer_id = add_customer(shop.engine)
    handle = await start(shop, customer_id)
    await shop.env.sleep(timedelta(days=31))
    survey = (await handle.query(ReengageJourney.state)).steps_done[0].step
    await handle.signal(ReengageJourney.message_event, MessageEventSignal(step=survey, message_id=1, event="delivered"))
    old = MessageEventSignal(step="survey_20250101T150000", message_id=1, event="open")
    await handle.signal(ReengageJourney.message_event, old)
    result = await handle.result()
    assert [m.template for m in shop.messages(handle.id)] == [f"reengage/{s}" for s in STEPS]
    assert result.ended == "sunset"


@pytest.mark.parametrize(
    ("click_after", "sent"),
    [(timedelta(days=35), STEPS[:1]), (timedelta(days=65), STEPS[:2]), (timedelta(days=95), STEPS)],
    ids=["after-survey", "after-contest", "after-coupon"],
)
async def test_a_click_ends_it_at_once_and_the_customer_stays_subscribed(
    shop: Shop, click_after: timedelta, sent: list[str]
):
    customer_id = add_customer(shop.engine)
    handle = await start(shop, customer_id)
    await shop.env.sleep(click_after)
    step = (await handle.query(ReengageJourney.state)).steps_done[-1].step
    await handle.signal(ReengageJourney.clicked, ClickedSignal(step=step, message_id=1))
    result = await handle.result()

    assert result.ended == "reactivated"
    assert [m.template for m in shop.messages(handle.id)] == [f"reengage/{s}" for s in sent]
    assert consents(shop.engine, customer_id) == {
        Channel.sms: ConsentStatus.granted,
        Channel.email: ConsentStatus.granted,
    }
    state = await handle.query(ReengageJourney.state)
    assert state.ended == "reactivated" and state.clicked == [step] and state.next_step is None
    description = await handle.describe()
    assert description.close_time is not None
    assert description.close_time - description.start_time < click_after + timedelta(minutes=1)
    assert description.search_attributes["JourneyStep"] == ["reactivated"]


async def test_a_click_before_the_first_message_ends_it_too(shop: Shop):
    """A click on a message of an earlier run (an old email) also shows the customer is back."""
    handle = await start(shop, add_customer(shop.engine))
    await shop.env.sleep(timedelta(days=3))
    await handle.signal(ReengageJourney.clicked, ClickedSignal(step="coupon_20250101T150000", message_id=1))
    assert (await handle.result()).ended == "reactivated"
    assert shop.messages(handle.id) == []


async def test_a_purchase_ends_it_at_once(shop: Shop):
    handle = await start(shop, add_customer(shop.engine))
    await shop.env.sleep(timedelta(days=45))
    await handle.signal(ReengageJourney.purchase, PurchaseSignal(order_id="o-back"))
    result = await handle.result()
    assert result.ended == "purchased"
    assert [m.template for m in shop.messages(handle.id)] == ["reengage/survey"]
    description = await handle.describe()
    assert description.close_time is not None
    assert description.close_time - description.start_time < timedelta(days=45, minutes=1)


async def test_opting_out_of_every_channel_ends_it(shop: Shop):
    customer_id = add_customer(shop.engine)
    handle = await start(shop, customer_id)
    await shop.env.sleep(timedelta(days=31))
    await handle.signal(ReengageJourney.opted_out, OptOutSignal(channel=Channel.email))
    assert (await handle.query(ReengageJourney.state)).ended is None  # SMS is left
    await handle.signal(ReengageJourney.opted_out, OptOutSignal(channel=Channel.sms))
    result = await handle.result()
    assert result.ended == "opted_out"
    assert sunset_rows(shop.engine, customer_id) == []


async def test_a_text_only_customer_gets_every_step_by_sms(shop: Shop, recorder: RecordingChannel):
    """Texts report no opens: only a click tells that one was read."""
    customer_id = add_customer(shop.engine, email=None, email_consent=None)
    handle = await start(shop, customer_id)
    result = await handle.result()
    assert [(m.channel, m.status) for m in shop.messages(handle.id)] == [("sms", "sent")] * 3
    assert [m.to for m in recorder.sent] == [PHONE] * 3
    assert "Reply STOP" in recorder.sent[0].body  # the first marketing text carries the opt-out footer
    assert result.steps_done[-1].outcome == "sunset: consent revoked on sms"
    assert consents(shop.engine, customer_id) == {Channel.sms: ConsentStatus.revoked, Channel.email: None}


async def test_a_channel_never_granted_is_left_as_it_was(shop: Shop):
    customer_id = add_customer(shop.engine, sms=ConsentStatus.denied)
    handle = await start(shop, customer_id)
    result = await handle.result()
    assert result.steps_done[-1].outcome == "sunset: consent revoked on email"
    assert [c.channel for c in sunset_rows(shop.engine, customer_id)] == [Channel.email]
    assert consents(shop.engine, customer_id)[Channel.sms] == ConsentStatus.denied


async def test_a_click_whose_signal_was_lost_keeps_the_customer_subscribed(shop: Shop):
    """The redirect stored the click, the signal never arrived: the sunset reads the database first."""
    customer_id = add_customer(shop.engine)
    handle = await start(shop, customer_id)
    began = await started_at(handle)
    await shop.env.sleep(timedelta(days=31))
    with Session(shop.engine) as session:
        survey = session.exec(select(Message).where(Message.customer_id == customer_id)).one()
        link = session.exec(select(Link).where(Link.message_id == survey.id, Link.kind == LinkKind.click)).one()
        session.add(Click(token=link.token, clicked_at=began + timedelta(days=31)))
        session.commit()
    result = await handle.result()

    assert result.ended == "reactivated"
    assert result.steps_done[-1].outcome == "reactivated"
    assert consents(shop.engine, customer_id)[Channel.email] == ConsentStatus.granted


async def test_an_order_whose_signal_was_lost_keeps_the_customer_subscribed(shop: Shop):
    customer_id = add_customer(shop.engine)
    handle = await start(shop, customer_id)
    began = await started_at(handle)
    with Session(shop.engine) as session:
        placed = began + timedelta(days=50)
        session.add(Order(id=f"o-{customer_id}", customer_id=customer_id, placed_at=placed, currency="USD", total=10))
        session.commit()
    result = await handle.result()
    assert result.ended == "purchased"
    assert sunset_rows(shop.engine, customer_id) == []


async def test_state_tells_the_operator_what_it_waits_for(shop: Shop):
    handle = await start(shop, add_customer(shop.engine))
    began = await started_at(handle)
    cycle = cycle_of(began)
    state = await handle.query(ReengageJourney.state)
    assert (state.stage, state.next_step, state.next_wake_up) == (
        "survey",
        f"survey_{cycle}",
        began + timedelta(days=30),
    )

    await shop.env.sleep(timedelta(days=61))
    state = await handle.query(ReengageJourney.state)
    assert state.stage == "contest"
    assert state.next_step == f"coupon_{cycle}" and state.next_wake_up == began + timedelta(days=90)
    assert [s.step for s in state.steps_done] == [f"survey_{cycle}", f"contest_{cycle}"]
    assert (await handle.describe()).search_attributes["JourneyStep"] == ["contest"]

    await shop.env.sleep(timedelta(days=30))
    state = await handle.query(ReengageJourney.state)
    assert (state.stage, state.next_step) == ("coupon", f"sunset_{cycle}")
    assert state.next_wake_up == began + timedelta(days=97)
    await handle.signal(ReengageJourney.purchase, PurchaseSignal(order_id="x"))
    await handle.result()


async def test_the_id_is_reused_by_a_later_campaign_with_steps_of_its_own(shop: Shop, recorder: RecordingChannel):
    customer_id = add_customer(shop.engine)
    first = await start(shop, customer_id)
    journey = ReengageInput(customer_id=customer_id, plan=shop.config.journeys.reengage)
    assert await start_reengage(shop.env.client, shop.task_queue, journey) is None  # never two at once
    await shop.env.sleep(timedelta(days=35))
    survey = (await first.query(ReengageJourney.state)).steps_done[0].step
    await first.signal(ReengageJourney.clicked, ClickedSignal(step=survey, message_id=1))
    assert (await first.result()).ended == "reactivated"

    await shop.env.sleep(timedelta(days=200))  # inactive again
    second = await start(shop, customer_id)
    await shop.env.sleep(timedelta(days=31))
    await second.signal(ReengageJourney.purchase, PurchaseSignal(order_id="y"))
    assert (await second.result()).ended == "purchased"

    messages = shop.messages(reengage_id(customer_id))
    assert len(messages) == 2 and len({m.idempotency_key for m in messages}) == 2
    assert [m.template for m in messages] == ["reengage/survey"] * 2
    assert len(recorder.sent) == 2


async def test_history_carries_no_personal_data(shop: Shop):
    customer_id = add_customer(shop.engine, first_name="Zebulon", last_name="Quincey")
    handle = await start(shop, customer_id)
    await handle.result()
    history = decoded_history((await handle.fetch_history()).to_json())
    for secret in (PHONE, EMAIL, "Zebulon", "Quincey"):
        assert secret not in history
    assert customer_id in history
    with Session(shop.engine) as session:  # the codes and links stay in the database too
        codes = session.exec(select(Coupon.code).where(col(Coupon.customer_id) == customer_id)).all()
    assert codes and not any(code in history for code in codes)
