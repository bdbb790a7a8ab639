"""The post-purchase journey on the time-skipping server, with the real send_message on SQLite."""

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio

from models.contracts import OptOutSignal, PurchaseSignal
from models.tables import Channel, MessageStatus
from tests.conftest import RecordingChannel
from tests.shop import Shop, decoded_history, running_shop
from workflows.post_purchase import PostPurchaseJourney

ALL_STEPS = ["thank_you", "loyalty_review", "win_back_soft", "win_back_incentive"]


@pytest_asyncio.fixture
async def shop(time_skipping, sqlite_engine, config, channels) -> AsyncIterator[Shop]:
    async with running_shop(time_skipping, sqlite_engine, config, channels) as shop:
        yield shop


async def test_full_path_sends_every_step_in_two_seconds(shop: Shop, recorder: RecordingChannel):
    handle = await shop.order()
    result = await handle.result()

    assert result.ended == "completed"
    assert [s.step for s in result.steps_done] == ALL_STEPS
    messages = shop.messages(handle.id)
    assert [(m.step, m.status, m.channel) for m in messages] == [
        ("thank_you", MessageStatus.sent, "sms"),
        ("loyalty_review", MessageStatus.sent, "email"),
        ("win_back_soft", MessageStatus.sent, "email"),
        ("win_back_incentive", MessageStatus.sent, "sms"),
    ]
    assert [m.template for m in messages][1] == "post_purchase/loyalty_first_time"
    assert [m.to for m in recorder.sent] == ["+14155550100", "john@example.com", "john@example.com", "+14155550100"]
    assert "John" in recorder.sent[0].body and "Slim jeans".lower() in recorder.sent[0].body


async def test_steps_are_sent_at_their_planned_times(shop: Shop):
    handle = await shop.order()
    started = (await handle.describe()).start_time
    result = await handle.result()
    sent = {s.step: s.at for s in result.steps_done}  # workflow time: the server's skipped clock
    for step in shop.config.journeys.post_purchase.steps:
        assert step.after <= sent[step.name] - started < step.after + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("earlier_totals", "total", "template"),
    [
        ([], "129.90", "post_purchase/loyalty_first_time"),
        (["40.00"], "50.00", "post_purchase/loyalty_repeat"),
        (["10.00"] * 4, "10.00", "post_purchase/loyalty_vip"),  # the 5th order: VIP by count
        (["40.00"], "480.00", "post_purchase/loyalty_vip"),  # 520 spent in all: VIP by lifetime value
    ],
)
async def test_loyalty_step_by_segment(shop: Shop, earlier_totals: list[str], total: str, template: str):
    customer = f"c_{uuid.uuid4().hex[:6]}"
    for earlier_total in earlier_totals:
        earlier = await shop.order(customer_id=customer, total=earlier_total)
        await earlier.signal("purchase", PurchaseSignal(order_id="next"))
        await earlier.result()
    handle = await shop.order(customer_id=customer, total=total)
    await handle.result()
    loyalty = next(m for m in shop.messages(handle.id) if m.step == "loyalty_review")
    assert loyalty.template == template


@pytest.mark.parametrize(
    ("purchase_after", "steps_sent"),
    [
        (timedelta(hours=1), []),
        (timedelta(days=3), ALL_STEPS[:1]),
        (timedelta(days=20), ALL_STEPS[:2]),
        (timedelta(days=60), ALL_STEPS[:3]),
    ],
    ids=["before-thank-you", "before-loyalty", "before-soft-win-back", "before-incentive"],
)
async def test_a_purchase_during_any_wait_ends_the_journey_at_once(
    shop: Shop, purchase_after: timedelta, steps_sent: list[str]
):
    handle = await shop.order()
    await shop.env.sleep(purchase_after)
    await handle.signal("purchase", PurchaseSignal(order_id="2002"))
    result = await handle.result()

    assert result.ended == "purchased"
    assert [m.step for m in shop.messages(handle.id)] == steps_sent
    state = await handle.query(PostPurchaseJourney.state)
    assert state.ended == "purchased" and state.next_step is None
    # Ended by the signal, not at the next wake-up: virtual time stopped right after it.
    description = await handle.describe()
    assert description.close_time is not None
    assert description.close_time - description.start_time < purchase_after + timedelta(minutes=1)
    assert description.search_attributes["JourneyStep"] == ["purchased"]


async def test_no_sms_consent_falls_back_to_email(shop: Shop):
    handle = await shop.order(customer_id="c_email_only", sms_consent=False)
    await handle.result()
    assert {m.channel for m in shop.messages(handle.id)} == {"email"}


async def test_preferred_channel_comes_first(shop: Shop):
    handle = await shop.order(customer_id="c_prefers_email", preferred_channel="email")
    await handle.result()
    assert {m.channel for m in shop.messages(handle.id)} == {"email"}


async def test_no_consent_at_all_is_skipped_and_recorded(shop: Shop, recorder: RecordingChannel):
    handle = await shop.order(customer_id="c_none", sms_consent=False, email_consent=False)
    result = await handle.result()

    assert result.ended == "completed"
    assert [s.outcome for s in result.steps_done] == ["skipped (no_consent)"] * 4
    assert [(m.status, m.reason) for m in shop.messages(handle.id)] == [(MessageStatus.skipped, "no_consent")] * 4
    assert recorder.sent == []


async def test_state_query_tells_the_operator_what_it_waits_for(shop: Shop):
    handle = await shop.order()
    await shop.env.sleep(timedelta(days=10))
    state = await handle.query(PostPurchaseJourney.state)
    assert state.stage == "win_back"
    assert state.next_step == "win_back_soft"
    assert state.next_wake_up == (await handle.describe()).start_time + timedelta(days=30)
    assert [s.step for s in state.steps_done] == ALL_STEPS[:2]
    description = await handle.describe()
    assert description.search_attributes["JourneyStep"] == ["win_back"]
    await handle.signal("purchase", PurchaseSignal(order_id="x"))
    await handle.result()


async def test_history_carries_no_personal_data(shop: Shop):
    handle = await shop.order(customer_id="c_pii", first_name="Zebulon", last_name="Quincey")
    await handle.result()
    history = decoded_history((await handle.fetch_history()).to_json())
    for secret in ("+14155550100", "john@example.com", "Zebulon", "Quincey", "Slim jeans"):
        assert secret not in history
    assert "c_pii" in history


async def test_opting_out_of_every_channel_ends_the_journey_at_once(shop: Shop):
    handle = await shop.order(customer_id="c_leaving")
    await shop.env.sleep(timedelta(days=3))
    await handle.signal(PostPurchaseJourney.opted_out, OptOutSignal(channel=Channel.sms))
    state = await handle.query(PostPurchaseJourney.state)
    assert state.opted_out == [Channel.sms] and state.ended is None  # email is left: the journey goes on
    await handle.signal(PostPurchaseJourney.opted_out, OptOutSignal(channel=Channel.email))
    result = await handle.result()

    assert result.ended == "opted_out"
    assert [m.step for m in shop.messages(handle.id)] == ["thank_you"]
