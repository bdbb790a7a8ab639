"""The send policy's timing and content rules: quiet hours, the frequency cap, the opt-out footer, links,
coupons and the unsubscribe link, through the real send_message on a real database."""

import dataclasses
import threading
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import parse as parse_number
from phonenumbers import timezone as phone_timezones
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.testing import ActivityEnvironment

from activities.messages import MessageActivities
from channels.base import Channels
from models.contracts import SendRequest, SendResult
from models.journeys import Cap, JourneysConfig
from models.links import COUPON_ALPHABET, COUPON_LENGTH
from models.tables import (
    Channel,
    Consent,
    ConsentStatus,
    Coupon,
    Customer,
    Link,
    LinkKind,
    Message,
    MessageStatus,
)
from tests.conftest import RecordingChannel
from tests.shop import running_shop

PUBLIC = "https://comeback.example.com"
NOON_NY = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)  # 12:00 in New York


def with_policy(config: JourneysConfig, **changes: object) -> JourneysConfig:
    return config.model_copy(update={"policy": config.policy.model_copy(update=changes)})


def add_customer(engine: Engine, *, phone: str | None = "+12125550100", timezone: str | None = None) -> str:
    customer_id = f"c_{uuid.uuid4().hex[:10]}"
    with Session(engine) as session:
        session.add(Customer(id=customer_id, first_name="Ada", phone=phone, email="ada@example.com", timezone=timezone))
        session.flush()
        for channel in Channel:
            session.add(Consent(customer_id=customer_id, channel=channel, status=ConsentStatus.granted, source="test"))
        session.commit()
    return customer_id


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def policy_activities(engine: Engine, config: JourneysConfig, recorder: RecordingChannel, clock: Clock):
    return MessageActivities(engine, Channels(recorder, recorder), config, public_url=PUBLIC, clock=clock)


def send(
    activities: MessageActivities,
    customer_id: str,
    *,
    workflow_id: str | None = None,
    step: str = "win_back_soft",
    template: str = "post_purchase/win_back_soft",
    channel: Channel = Channel.sms,
    kind: str = "marketing",
    priority: str = "high",
) -> SendResult:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=workflow_id or f"wf-{uuid.uuid4().hex[:8]}")
    request = SendRequest(
        customer_id=customer_id,
        journey="post_purchase",
        step=step,
        template=template,
        channels=[channel],
        kind=kind,
        priority=priority,
    )
    return env.run(activities.send_message, request)


def rows(engine: Engine, customer_id: str) -> list[Message]:
    with Session(engine) as session:
        return list(session.exec(select(Message).where(Message.customer_id == customer_id).order_by(Message.id)))


# Quiet hours --------------------------------------------------------------------------------------------------

ZONES = ["America/New_York", "America/Los_Angeles", "Europe/London", "Australia/Sydney", "Asia/Kolkata"]
PHONES = ["+14155550100", "+13055550100", "+14055550100", "+447911123456", "+12125550100"]


def oracle_zones(timezone: str | None, phone: str) -> list[ZoneInfo]:
    """The zones the recipient may be in, worked out independently of the send policy."""
    if timezone:
        return [ZoneInfo(timezone)]
    return [ZoneInfo(z) for z in phone_timezones.time_zones_for_number(parse_number(phone))]


def inside(instant: datetime, zones: list[ZoneInfo], kind: str) -> bool:
    start, end = (9, 20) if kind == "marketing" else (8, 21)
    return all(start <= instant.astimezone(zone).hour < end for zone in zones)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    instant=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
    timezone=st.sampled_from([None, *ZONES]),
    phone=st.sampled_from(PHONES),
    kind=st.sampled_from(["marketing", "transactional"]),
)
def test_no_text_is_sent_outside_the_recipients_window(sqlite_engine, shipped_config, instant, timezone, phone, kind):
    recorder, clock = RecordingChannel(), Clock(instant)
    activities = policy_activities(sqlite_engine, with_policy(shipped_config, frequency_caps=False), recorder, clock)
    customer = add_customer(sqlite_engine, phone=phone, timezone=timezone)
    zones = oracle_zones(timezone, phone)
    journey = f"wf-{customer}"

    result = send(activities, customer, kind=kind, workflow_id=journey)
    if result.status == "sent":
        assert inside(instant, zones, kind)
        return
    assert result.status == "deferred" and result.reason == "quiet_hours" and result.until is not None
    assert not inside(instant, zones, kind) and recorder.sent == []
    # The next allowed minute: inside the window, and the minute before it is not (or it is `now`'s own minute).
    assert result.until > instant and result.until.second == 0
    assert inside(result.until, zones, kind)
    assert result.until - timedelta(minutes=1) < instant or not inside(result.until - timedelta(minutes=1), zones, kind)

    clock.now = result.until  # the journey wakes up and tries the same step again
    again = send(activities, customer, kind=kind, workflow_id=journey)
    assert again.status == "sent" and len(recorder.sent) == 1


def test_quiet_hours_follow_the_clock_change(sqlite_engine, shipped_config, recorder):
    """New York springs forward on 8 March 2026: 08:30 local that morning is 12:30 UTC, not 13:30."""
    clock = Clock(datetime(2026, 3, 8, 12, 30, tzinfo=UTC))
    activities = policy_activities(sqlite_engine, shipped_config, recorder, clock)
    customer = add_customer(sqlite_engine, timezone="America/New_York")

    result = send(activities, customer)

    assert result.status == "deferred" and result.until == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)


def test_a_florida_number_gets_no_marketing_text_after_eight(sqlite_engine, shipped_config, recorder):
    config = with_policy(shipped_config, marketing_window="09:00-21:00")  # the shop asks for 21:00 ...
    clock = Clock(datetime(2026, 6, 11, 0, 30, tzinfo=UTC))  # 20:30 in Miami and in New York
    activities = policy_activities(sqlite_engine, config, recorder, clock)
    miami, new_york = add_customer(sqlite_engine, phone="+13055550100"), add_customer(sqlite_engine)

    assert send(activities, miami).status == "deferred"  # ... Florida's law says 20:00
    assert send(activities, new_york).status == "sent"


def test_transactional_texts_have_their_own_wider_window(sqlite_engine, shipped_config, recorder):
    clock = Clock(datetime(2026, 6, 10, 12, 30, tzinfo=UTC))  # 08:30 in New York
    activities = policy_activities(sqlite_engine, shipped_config, recorder, clock)
    customer = add_customer(sqlite_engine)

    assert send(activities, customer, step="shipped", kind="transactional").status == "sent"
    marketing = send(activities, customer)
    assert marketing.status == "deferred" and marketing.until == datetime(2026, 6, 10, 13, 0, tzinfo=UTC)


def test_email_is_not_held_by_quiet_hours(sqlite_engine, shipped_config, recorder):
    clock = Clock(datetime(2026, 6, 10, 7, 0, tzinfo=UTC))  # 03:00 in New York
    activities = policy_activities(sqlite_engine, shipped_config, recorder, clock)
    customer = add_customer(sqlite_engine)

    assert send(activities, customer, channel=Channel.email).status == "sent"


# The frequency cap --------------------------------------------------------------------------------------------


def test_capped_messages_wait_or_are_dropped_by_priority(sqlite_engine, shipped_config, recorder):
    clock = Clock(NOON_NY)
    activities = policy_activities(sqlite_engine, shipped_config, recorder, clock)
    customer = add_customer(sqlite_engine)

    assert send(activities, customer).status == "sent"
    waiting = send(activities, customer, priority="high")
    dropped = send(activities, customer, priority="low")
    update = send(activities, customer, step="shipped", kind="transactional")

    assert waiting.status == "deferred" and waiting.reason == "frequency_cap"
    assert waiting.until == NOON_NY + timedelta(hours=24)
    assert dropped.status == "skipped" and dropped.reason == "frequency_cap"
    assert update.status == "sent"  # order updates are never capped
    reasons = [(m.status, m.reason) for m in rows(sqlite_engine, customer)]
    assert reasons == [
        (MessageStatus.sent, None),
        (MessageStatus.deferred, "frequency_cap"),
        (MessageStatus.skipped, "frequency_cap"),
        (MessageStatus.sent, None),
    ]


def test_a_cap_that_ends_at_night_waits_for_the_morning(sqlite_engine, shipped_config, recorder):
    clock = Clock(datetime(2026, 6, 10, 23, 30, tzinfo=UTC))  # 19:30 in New York
    activities = policy_activities(sqlite_engine, shipped_config, recorder, clock)
    customer = add_customer(sqlite_engine)
    assert send(activities, customer).status == "sent"

    clock.now += timedelta(hours=20)  # 15:30 the next day: the cap holds until 19:30, and 19:30 is fine
    assert send(activities, customer).until == datetime(2026, 6, 11, 23, 30, tzinfo=UTC)
    with_quiet_end = with_policy(shipped_config, marketing_window="09:00-19:00")
    later = policy_activities(sqlite_engine, with_quiet_end, recorder, clock)
    held = send(later, customer)  # the cap frees at 19:30, after the window: the next morning at 09:00
    assert held.until == datetime(2026, 6, 12, 13, 0, tzinfo=UTC)
    assert held.reason == "frequency_cap + quiet_hours"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    attempts=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=72 * 60),  # minute of the first attempt within three days
            st.sampled_from([Channel.sms, Channel.email]),
            st.sampled_from(["high", "low"]),
        ),
        min_size=1,
        max_size=12,
    ),
    sms_cap=st.sampled_from(
        [(1, timedelta(hours=24)), (2, timedelta(hours=24)), (3, timedelta(hours=24)), (2, timedelta(hours=6))]
    ),
)
def test_the_cap_never_lets_more_through_than_configured(sqlite_engine, shipped_config, attempts, sms_cap):
    """Journeys asking at random times, each trying again when told to wait: within any window of the cap's
    length no more than its count are sent, never more than 3 texts a day, and nothing is lost."""
    count, per = sms_cap
    config = with_policy(shipped_config, quiet_hours=False, sms_cap=Cap(count=count, per=per))
    recorder, clock = RecordingChannel(), Clock(NOON_NY)
    activities = policy_activities(sqlite_engine, config, recorder, clock)
    customer = add_customer(sqlite_engine)

    run = uuid.uuid4().hex[:6]  # examples share the database: their journeys must not
    queue = [
        (NOON_NY + timedelta(minutes=m), f"wf-{run}-{i}", channel, priority)
        for i, (m, channel, priority) in enumerate(attempts)
    ]
    outcomes: dict[str, str] = {}
    while queue:
        queue.sort()
        at, workflow_id, channel, priority = queue.pop(0)
        clock.now = at
        result = send(activities, customer, workflow_id=workflow_id, channel=channel, priority=priority)
        if result.status == "deferred":
            assert result.until is not None and result.until > at
            queue.append((result.until, workflow_id, channel, priority))
        outcomes[workflow_id] = f"{result.status} {result.reason or ''}".strip()

    assert all(o in ("sent", "skipped frequency_cap") for o in outcomes.values())
    assert all(outcomes[f"wf-{run}-{i}"] == "sent" for i, a in enumerate(attempts) if a[2] == "high")
    sent = [m for m in rows(sqlite_engine, customer) if m.status == MessageStatus.sent]
    for channel, (limit, window) in [
        (Channel.sms, (count, config.policy.sms_cap.per)),
        (Channel.sms, (3, timedelta(hours=24))),
        (Channel.email, (1, timedelta(hours=16))),
    ]:
        times = sorted(m.sent_at for m in sent if m.channel == channel and m.sent_at)
        for i, start in enumerate(times):
            assert sum(1 for t in times[i:] if t < start + window) <= limit, (channel, times)


def test_concurrent_journeys_count_each_other(engine, shipped_config):
    """Eight journeys decide at the same moment for one customer: the customer's lock makes them take turns, so
    exactly one text goes and the others wait a day."""
    recorder = RecordingChannel()
    activities = policy_activities(engine, with_policy(shipped_config, quiet_hours=False), recorder, Clock(NOON_NY))
    customer = add_customer(engine)
    results: list[SendResult] = []
    start = threading.Barrier(8)

    def journey(i: int) -> None:
        start.wait()
        results.append(send(activities, customer, workflow_id=f"wf-{i}"))

    threads = [threading.Thread(target=journey, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(r.status for r in results) == ["deferred"] * 7 + ["sent"]
    assert {r.until for r in results if r.status == "deferred"} == {NOON_NY + timedelta(hours=24)}
    assert len(recorder.sent) == 1


# Content: footer, links, coupons, unsubscribe -----------------------------------------------------------------


def test_the_first_marketing_text_carries_the_opt_out_footer(sqlite_engine, config, recorder):
    activities = policy_activities(sqlite_engine, config, recorder, Clock(NOON_NY))
    customer = add_customer(sqlite_engine)

    send(activities, customer, step="update", kind="transactional")
    send(activities, customer, step="first")
    send(activities, customer, step="second")

    footer = config.policy.sms_footer
    assert [footer in m.body for m in recorder.sent] == [False, True, False]


def test_links_and_coupons_are_made_once_per_message(sqlite_engine, config, recorder):
    activities = policy_activities(sqlite_engine, config, recorder, Clock(NOON_NY))
    customer = add_customer(sqlite_engine)
    incentive = {"step": "win_back_incentive", "template": "post_purchase/win_back_incentive", "workflow_id": "wf-1"}

    first = send(activities, customer, **incentive)
    again = send(activities, customer, **incentive)

    assert again == first and len(recorder.sent) == 1
    with Session(sqlite_engine) as session:
        [coupon] = session.exec(select(Coupon)).all()
        [link] = session.exec(select(Link)).all()
    body = recorder.sent[0].body
    assert coupon.code in body and f"{PUBLIC}/r/{link.token}" in body
    assert len(coupon.code) == COUPON_LENGTH and set(coupon.code) <= set(COUPON_ALPHABET)
    assert (coupon.customer_id, coupon.message_id, coupon.journey) == (customer, first.message_id, "post_purchase")
    assert coupon.expires_at == NOON_NY + timedelta(days=14) and coupon.redeemed_order_id is None
    assert (link.message_id, link.kind, link.url) == (first.message_id, LinkKind.click, "https://northwind.example")
    assert len(link.token) == 14  # 80 random bits, URL-safe base64


def test_marketing_email_carries_a_one_click_unsubscribe_link(sqlite_engine, config, recorder):
    activities = policy_activities(sqlite_engine, config, recorder, Clock(NOON_NY))
    customer = add_customer(sqlite_engine)

    send(activities, customer, channel=Channel.email)
    send(activities, customer, channel=Channel.email, step="receipt", kind="transactional")

    marketing, receipt = recorder.sent
    with Session(sqlite_engine) as session:
        [token] = session.exec(select(Link.token).where(Link.kind == LinkKind.unsubscribe)).all()
    assert marketing.unsubscribe_url == f"{PUBLIC}/u/{token}" and marketing.body.endswith(
        f"Unsubscribe: {PUBLIC}/u/{token}"
    )
    assert receipt.unsubscribe_url is None and "Unsubscribe" not in receipt.body


def test_a_deferred_step_is_pending_while_the_provider_is_called(sqlite_engine, shipped_config):
    """Should a worker die inside the provider call of a deferred step, the next attempt must know the provider
    may have the message (and look before sending)."""
    recorder, clock = RecordingChannel(), Clock(datetime(2026, 6, 10, 7, 0, tzinfo=UTC))  # 03:00 in New York
    activities = policy_activities(sqlite_engine, shipped_config, recorder, clock)
    customer = add_customer(sqlite_engine)
    assert send(activities, customer, workflow_id="wf-1").status == "deferred"

    class Dies(RecordingChannel):
        def send(self, message, *, maybe_sent=False):
            raise ConnectionError("the worker died here")

    clock.now = datetime(2026, 6, 10, 13, 0, tzinfo=UTC)
    dying = MessageActivities(sqlite_engine, Channels(Dies(), Dies()), shipped_config, public_url=PUBLIC, clock=clock)
    with pytest.raises(ConnectionError):
        send(dying, customer, workflow_id="wf-1")
    assert rows(sqlite_engine, customer)[0].status == MessageStatus.pending

    assert send(activities, customer, workflow_id="wf-1").status == "sent"
    assert recorder.maybe_sent == [True]


# In a journey ---------------------------------------------------------------------------------------------------


async def test_a_journey_sleeps_through_quiet_hours_and_sends_at_nine(time_skipping, sqlite_engine, shipped_config):
    """On the time-skipping server: the thank-you falls due at 03:00 in the customer's zone, is deferred, and the
    journey wakes up and sends it at 09:00 there; the deferral costs one more activity and one more timer."""
    due = await time_skipping.get_current_time() + shipped_config.journeys.post_purchase.steps[0].after
    offset = (3 - due.hour) % 24  # the zone where the thank-you falls due at about 03:00
    offset = offset - 24 if offset > 14 else offset
    zone = f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"  # POSIX-style names: Etc/GMT-3 is UTC+3
    recorder = RecordingChannel()
    channels = Channels(recorder, recorder)
    async with running_shop(time_skipping, sqlite_engine, shipped_config, channels) as shop:
        handle = await shop.order(customer_id=f"c_{uuid.uuid4().hex[:6]}", timezone=zone)
        result = await handle.result()
        history = await handle.fetch_history()

    # Every step falls due at about 03:00 there; the texts (thank-you, incentive) wait, the emails need not.
    messages = shop.messages(handle.id)
    assert [(m.step, m.channel, m.status, m.reason) for m in messages] == [
        ("thank_you", "sms", MessageStatus.sent, "quiet_hours"),
        ("loyalty_review", "email", MessageStatus.sent, None),
        ("win_back_soft", "email", MessageStatus.sent, None),
        ("win_back_incentive", "sms", MessageStatus.sent, "quiet_hours"),
    ]
    for text in (messages[0], messages[3]):
        assert text.sent_at is not None
        local = text.sent_at.astimezone(ZoneInfo(zone))
        assert (local.hour, local.minute) == (9, 0)
    assert [s.outcome for s in result.steps_done] == ["sent by sms", "sent by email", "sent by email", "sent by sms"]
    scheduled = [e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")]
    assert len(scheduled) == len(messages) + 2  # one more activity per deferral
