"""Birthdays and told dates: when each send is due (pure), the journey on the time-skipping server with the real
send_message on SQLite, and the intake of dates (SQLite and PostgreSQL)."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.dates import DatesActivities, YearlyDate, day_in, occurrences
from api.app import create_app
from api.intake import customer_has_dates, upsert_customer
from api.schemas import CustomerIn
from channels.base import Channels
from models.contracts import DatesInput, DatesPlan, JourneyResult, OptOutSignal, PurchaseSignal, UpcomingDatesRequest
from models.journeys import JourneysConfig
from models.settings import Settings
from models.tables import Channel, Customer, CustomerDate, DateKind, Message, MessageStatus
from starter.dates import dates_changed, dates_id
from tests.conftest import RecordingChannel
from tests.factories import order_payload
from tests.shop import Shop, decoded_history, running_shop
from workflows.dates import DatesJourney

PHONE, EMAIL = "+14155550100", "ava@example.com"
NEW_YORK = ZoneInfo("America/New_York")
TEN = time(10)
TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def unique(prefix: str = "c") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def ten_am(day: date, zone: ZoneInfo = NEW_YORK) -> datetime:
    return datetime.combine(day, TEN, tzinfo=zone).astimezone(UTC)


def told(date_id: int, month: int, day: int, year: int | None = None) -> YearlyDate:
    return YearlyDate(date_id, DateKind.anniversary, month, day, year)


# --- when the sends are due ----------------------------------------------------------------------------------------


def test_29_february_is_28_february_in_other_years():
    assert [day_in(year, 2, 29) for year in (2027, 2028, 2100)] == [
        date(2027, 2, 28),
        date(2028, 2, 29),
        date(2100, 2, 28),
    ]
    assert day_in(2027, 4, 30) == date(2027, 4, 30)


def test_a_told_date_has_a_reminder_a_week_ahead_and_a_message_on_the_day_at_ten_local():
    since, until = datetime(2027, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC)
    found = occurrences([told(7, 3, 14)], NEW_YORK, TEN, timedelta(days=7), since, until)
    [anniversary] = found
    assert (anniversary.date_id, anniversary.kind, anniversary.day) == (7, DateKind.anniversary, date(2027, 3, 14))
    # DST begins on 14 March 2027 in New York: the reminder goes at 10:00 EST, the message on the day at 10:00 EDT.
    assert anniversary.reminder_at == datetime(2027, 3, 7, 15, tzinfo=UTC)
    assert anniversary.on_the_day_at == datetime(2027, 3, 14, 14, tzinfo=UTC)


def test_the_own_birthday_gets_no_reminder_and_dates_are_in_the_order_they_are_due():
    since, until = datetime(2027, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC)
    dates = [told(1, 12, 20), YearlyDate(None, DateKind.birthday, 6, 1), told(2, 6, 3)]
    found = occurrences(dates, ZoneInfo("Asia/Tokyo"), TEN, timedelta(days=7), since, until)
    assert [(o.date_id, o.day) for o in found] == [
        (2, date(2027, 6, 3)),
        (None, date(2027, 6, 1)),
        (1, date(2027, 12, 20)),
    ]
    birthday = found[1]
    assert birthday.reminder_at is None and birthday.on_the_day_at == datetime(2027, 6, 1, 1, tzinfo=UTC)  # 10:00 JST


def test_a_window_holds_every_occurrence_with_a_send_in_it_and_no_other():
    since, until = datetime(2027, 3, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC)
    found = occurrences([told(1, 2, 29), told(2, 3, 4)], NEW_YORK, TEN, timedelta(days=7), since, until)
    # 4 March 2027: its reminder was before the window, its day is in it. 4 March 2028: its reminder is in it.
    assert [(o.date_id, o.day) for o in found] == [(2, date(2027, 3, 4)), (1, date(2028, 2, 29)), (2, date(2028, 3, 4))]
    leap = found[1]
    assert (leap.reminder_at, leap.on_the_day_at) == (ten_am(date(2028, 2, 22)), ten_am(date(2028, 2, 29)))


def test_a_date_is_not_celebrated_before_its_year():
    since, until = datetime(2027, 1, 1, tzinfo=UTC), datetime(2029, 1, 1, tzinfo=UTC)
    found = occurrences([told(1, 6, 12, year=2028)], NEW_YORK, TEN, timedelta(days=7), since, until)
    assert [o.day for o in found] == [date(2028, 6, 12)]


def test_upcoming_dates_reads_the_profile_in_its_zone_and_names_dates_by_id_only(sqlite_engine, config):
    customer_id = unique()
    store(sqlite_engine, config, customer_id, timezone=None, birthday="1992-07-04", dates=[sams_birthday(7, 20)])
    activities = DatesActivities(sqlite_engine, config)
    since = datetime(2027, 1, 1, tzinfo=UTC)
    request = UpcomingDatesRequest(
        customer_id=customer_id, since=since, until=since + timedelta(days=365), send_at="10:00",
        reminder_before=timedelta(days=7),
    )  # fmt: skip
    upcoming = ActivityEnvironment().run(activities.upcoming_dates, request)
    assert upcoming.dates == 2
    assert [(o.kind, o.day, o.on_the_day_at) for o in upcoming.occurrences] == [
        (DateKind.birthday, date(2027, 7, 4), ten_am(date(2027, 7, 4))),  # no zone of its own: policy.default_timezone
        (DateKind.partner_birthday, date(2027, 7, 20), ten_am(date(2027, 7, 20))),
    ]
    assert "Sam" not in upcoming.model_dump_json()
    nobody = ActivityEnvironment().run(activities.upcoming_dates, request.model_copy(update={"customer_id": "nobody"}))
    assert (nobody.dates, nobody.occurrences) == (0, [])


# --- the journey -------------------------------------------------------------------------------------------------


def customer(customer_id: str, **fields: Any) -> CustomerIn:
    profile = {
        "id": customer_id,
        "first_name": "Ava",
        "last_name": "Stone",
        "phone": PHONE,
        "email": EMAIL,
        "timezone": "America/New_York",
        "sms_consent": True,
        "email_consent": True,
    }
    return CustomerIn.model_validate(profile | fields)


def sams_birthday(month: int, day: int, label: str = "Sam's birthday") -> dict[str, Any]:
    return {"kind": "partner_birthday", "label": label, "month": month, "day": day}


def store(engine: Engine, config: JourneysConfig, customer_id: str, **fields: Any) -> None:
    with Session(engine) as session:
        upsert_customer(session, customer(customer_id, **fields), config, source="test")
        session.commit()


def date_ids(engine: Engine, customer_id: str) -> list[int]:
    with Session(engine) as session:
        rows = session.exec(select(CustomerDate.id).where(CustomerDate.customer_id == customer_id)).all()
        return [row for row in rows if row is not None]


class Dates:
    """The shop's dates journeys: profiles stored as the API stores them, journeys told as the API tells them."""

    def __init__(self, shop: Shop) -> None:
        self.shop, self.env, self.client = shop, shop.env, shop.env.client
        self.started: list[str] = []

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def tell(
        self, customer_id: str, plan: DatesPlan | None = None, **fields: Any
    ) -> WorkflowHandle[DatesJourney, JourneyResult]:
        """Store the profile (with dates), then tell the customer's journey, starting it when they have dates."""
        store(self.shop.engine, self.shop.config, customer_id, **fields)
        with Session(self.shop.engine) as session:
            start = customer_has_dates(session, customer_id)
        journey = DatesInput(customer_id=customer_id, plan=plan or self.shop.config.journeys.dates)
        await dates_changed(self.client, self.shop.task_queue, journey, start=start)
        self.started.append(dates_id(customer_id))
        await self.env.sleep(timedelta(seconds=1))  # skipped once the journey has read the dates
        return self.client.get_workflow_handle_for(DatesJourney.run, dates_id(customer_id))

    def messages(self, customer_id: str) -> list[Message]:
        return self.shop.messages(dates_id(customer_id))

    async def stop(self) -> None:
        """A dates journey runs forever: left running, its timers would keep firing for workers long gone. The
        test server stops skipping time for good when a run is terminated with a task in flight: let them finish."""
        await self.env.sleep(timedelta(seconds=1))
        for workflow_id in set(self.started):
            try:
                await self.client.get_workflow_handle(workflow_id).terminate("test over")
            except RPCError as e:
                if e.status != RPCStatusCode.NOT_FOUND:
                    raise


@asynccontextmanager
async def dates_shop(
    env: WorkflowEnvironment, engine: Engine, config: JourneysConfig, channels: Channels
) -> AsyncIterator[Dates]:
    async with running_shop(env, engine, config, channels) as shop:
        dates = Dates(shop)
        try:
            yield dates
        finally:
            await dates.stop()


@pytest_asyncio.fixture
async def dates(time_skipping, sqlite_engine, config, channels) -> AsyncIterator[Dates]:
    async with dates_shop(time_skipping, sqlite_engine, config, channels) as dates:
        yield dates


@pytest_asyncio.fixture
async def capped(time_skipping, sqlite_engine, shipped_config, channels) -> AsyncIterator[Dates]:
    """The shipped send policy: quiet hours, and one marketing text a day."""
    async with dates_shop(time_skipping, sqlite_engine, shipped_config, channels) as dates:
        yield dates


def local_day(now: datetime, days: int, zone: ZoneInfo = NEW_YORK) -> date:
    return (now.astimezone(zone) + timedelta(days=days)).date()


async def test_the_birthday_reward_goes_on_the_day_at_ten_in_the_customers_zone(
    dates: Dates, recorder: RecordingChannel
):
    tokyo, customer_id = ZoneInfo("Asia/Tokyo"), unique()
    birthday = local_day(await dates.now(), 5, tokyo)
    handle = await dates.tell(customer_id, timezone="Asia/Tokyo", birthday=f"1992-{birthday:%m-%d}")
    due = ten_am(birthday, tokyo)

    await dates.env.sleep(due - await dates.now() - timedelta(minutes=1))
    assert dates.messages(customer_id) == []
    state = await handle.query(DatesJourney.state)
    assert (state.stage, state.next_step, state.next_wake_up) == ("birthday", f"birthday_{birthday.year}", due)
    await dates.env.sleep(timedelta(minutes=2))

    [message] = dates.messages(customer_id)
    assert (message.step, message.status, message.channel) == (f"birthday_{birthday.year}", MessageStatus.sent, "sms")
    assert message.template == "dates/birthday"
    [sent] = recorder.sent
    assert sent.to == PHONE and sent.body.startswith("Happy birthday, Ava!") and "15% off with code" in sent.body
    [step] = (await handle.query(DatesJourney.state)).steps_done
    assert due <= step.at < due + timedelta(minutes=1)  # the workflow's clock: the server's skipped time
    assert message.sent_at is not None and due <= message.sent_at < due + timedelta(minutes=1)


async def test_a_told_date_gets_a_reminder_a_week_ahead_with_its_label_and_a_message_on_the_day(dates: Dates, recorder):
    customer_id = unique()
    day = local_day(await dates.now(), 20)
    handle = await dates.tell(customer_id, dates=[sams_birthday(day.month, day.day)])
    [date_id] = date_ids(dates.shop.engine, customer_id)

    # 10:00 local a week ahead, on the local calendar: a DST change within the week moves it an hour in UTC.
    await dates.env.sleep(ten_am(day - timedelta(days=7)) - await dates.now() - timedelta(minutes=1))
    assert dates.messages(customer_id) == []
    await dates.env.sleep(timedelta(minutes=2))
    [reminder] = dates.messages(customer_id)
    assert (reminder.step, reminder.channel, reminder.status) == (f"reminder_{date_id}_{day}", "email", "sent")
    assert reminder.subject == "Sam's birthday is a week away: gift ideas inside"
    assert "Sam's birthday is a week away" in recorder.sent[0].body and recorder.sent[0].to == EMAIL
    assert (await handle.describe()).search_attributes["JourneyStep"] == ["on_the_day"]  # what it waits for

    await dates.env.sleep(ten_am(day) - await dates.now() + timedelta(minutes=1))
    steps = [(m.step, m.channel, m.status) for m in dates.messages(customer_id)]
    assert steps[1:] == [(f"on_the_day_{date_id}_{day}", "sms", "sent")]
    assert recorder.sent[1].body.startswith("Ava, today is the day: Sam's birthday!")
    done = (await handle.query(DatesJourney.state)).steps_done
    for step, due in zip(done, [ten_am(day - timedelta(days=7)), ten_am(day)], strict=True):
        assert due <= step.at < due + timedelta(minutes=1)
    assert (await handle.describe()).search_attributes["JourneyStep"] == ["scheduled"]  # until next year's dates


async def run_chain(client: Client, workflow_id: str, first_run_id: str) -> list[str]:
    """The runs of a workflow id from `first_run_id` on, following each continue-as-new."""
    runs = [first_run_id]
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=runs[-1]).fetch_history()
        last = history.events[-1]
        if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            return runs
        runs.append(last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id)


async def test_29_february_every_year_continuing_as_new_each_year(dates: Dates):
    customer_id = unique()
    start = await dates.now()
    handle = await dates.tell(customer_id, dates=[sams_birthday(2, 29, "Leap day")])
    [date_id] = date_ids(dates.shop.engine, customer_id)
    first_run = (await handle.describe()).run_id
    assert first_run is not None

    await dates.env.sleep(timedelta(days=5 * 365 + 2))  # at least one leap year and one other
    end = await dates.now()

    days = {year: day_in(year, 2, 29) for year in range(start.year, end.year + 1)}
    expected = {
        f"{step}_{date_id}_{day}": sent_on
        for year, day in days.items()
        for step, sent_on in (("reminder", day - timedelta(days=7)), ("on_the_day", day))
        if start < ten_am(sent_on) < end
    }
    sent = {m.step: m.sent_at.astimezone(NEW_YORK).date() for m in dates.messages(customer_id) if m.sent_at}
    assert sent == expected  # each year's once, on its day, however many runs there were
    assert {day.day for step, day in expected.items() if step.startswith("on_the_day")} == {28, 29}

    runs = await run_chain(dates.client, dates_id(customer_id), first_run)
    assert len(runs) == 6  # the first run and one per year since
    assert (await handle.describe()).run_id == runs[-1]
    first = await dates.client.get_workflow_handle(dates_id(customer_id), run_id=first_run).describe()
    assert first.status == WorkflowExecutionStatus.CONTINUED_AS_NEW


async def test_a_moved_date_is_sent_on_its_new_day_and_not_on_its_old_one(dates: Dates):
    customer_id = unique()
    now = await dates.now()
    old, new = local_day(now, 10), local_day(now, 20)
    handle = await dates.tell(customer_id, dates=[sams_birthday(old.month, old.day)])
    [date_id] = date_ids(dates.shop.engine, customer_id)
    await dates.env.sleep(timedelta(days=4))  # its reminder has gone
    assert [m.step for m in dates.messages(customer_id)] == [f"reminder_{date_id}_{old}"]

    await dates.tell(customer_id, dates=[sams_birthday(new.month, new.day)])
    assert date_ids(dates.shop.engine, customer_id) == [date_id]  # the same date, on another day
    state = await handle.query(DatesJourney.state)
    assert (state.next_step, state.next_wake_up) == (f"reminder_{date_id}_{new}", ten_am(new - timedelta(days=7)))

    await dates.env.sleep(timedelta(days=20))
    assert [m.step for m in dates.messages(customer_id)] == [
        f"reminder_{date_id}_{old}",
        f"reminder_{date_id}_{new}",
        f"on_the_day_{date_id}_{new}",
    ]
    sent_days = [s.at.astimezone(NEW_YORK).date() for s in (await handle.query(DatesJourney.state)).steps_done]
    assert sent_days == [old - timedelta(days=7), new - timedelta(days=7), new]


async def test_a_birthday_told_on_the_day_after_ten_still_gets_its_reward_at_once(dates: Dates):
    now = await dates.now()
    offset = (15 - now.hour) % 24  # a zone where it is 15:00 now
    offset = offset - 24 if offset > 14 else offset
    zone = f"Etc/GMT{-offset:+d}"
    today = now.astimezone(ZoneInfo(zone)).date()
    customer_id = unique()
    await dates.tell(customer_id, timezone=zone, birthday=f"1990-{today:%m-%d}")

    [message] = dates.messages(customer_id)
    assert (message.step, message.status) == (f"birthday_{today.year}", MessageStatus.sent)
    assert message.sent_at is not None and message.sent_at - now < timedelta(minutes=1)


def test_catching_up_sends_a_message_of_the_day_since_falls_on_at_since():
    since = datetime(2027, 3, 14, 20, tzinfo=UTC)  # 16:00 in New York, on the day, after ten
    until = datetime(2028, 3, 20, tzinfo=UTC)
    caught_up = occurrences([told(1, 3, 14)], NEW_YORK, TEN, timedelta(days=7), since, until, catch_up=True)
    assert [(o.day, o.on_the_day_at) for o in caught_up] == [
        (date(2027, 3, 14), since),
        (date(2028, 3, 14), ten_am(date(2028, 3, 14))),
    ]
    later = occurrences([told(1, 3, 14)], NEW_YORK, TEN, timedelta(days=7), since, until)
    assert [o.day for o in later] == [date(2028, 3, 14)]


async def test_a_date_told_less_than_a_week_ahead_gets_only_its_message_on_the_day(dates: Dates):
    customer_id = unique()
    day = local_day(await dates.now(), 3)
    await dates.tell(customer_id, dates=[sams_birthday(day.month, day.day)])
    await dates.env.sleep(timedelta(days=4))
    [date_id] = date_ids(dates.shop.engine, customer_id)
    assert [m.step for m in dates.messages(customer_id)] == [f"on_the_day_{date_id}_{day}"]


async def test_telling_the_same_dates_again_sends_nothing_twice(dates: Dates, recorder):
    customer_id = unique()
    day = local_day(await dates.now(), 2)
    handle = await dates.tell(customer_id, birthday=f"1992-{day:%m-%d}")
    await dates.env.sleep(timedelta(days=3))
    await dates.tell(customer_id, birthday=f"1992-{day:%m-%d}")
    await dates.env.sleep(timedelta(days=1))
    assert [m.step for m in dates.messages(customer_id)] == [f"birthday_{day.year}"]
    assert len(recorder.sent) == 1
    state = await handle.query(DatesJourney.state)
    assert state.next_step == "next_year" and state.stage == "scheduled"


async def test_the_birthday_goes_first_and_a_capped_message_on_the_day_is_dropped(capped: Dates):
    customer_id = unique()
    day = local_day(await capped.now(), 10)
    await capped.tell(customer_id, birthday=f"1992-{day:%m-%d}", dates=[sams_birthday(day.month, day.day)])
    [date_id] = date_ids(capped.shop.engine, customer_id)
    await capped.env.sleep(timedelta(days=11))
    # "Today is the day" sent the day after would be untrue: the step is low priority, dropped over the cap.
    assert [(m.step, m.channel, m.status, m.reason) for m in capped.messages(customer_id)] == [
        (f"reminder_{date_id}_{day}", "email", "sent", None),
        (f"birthday_{day.year}", "sms", "sent", None),
        (f"on_the_day_{date_id}_{day}", "sms", "skipped", "frequency_cap"),
    ]


async def test_a_profile_change_brings_the_plan_as_it_is_now_for_this_year_and_the_next(dates: Dates):
    customer_id, evening = unique(), time(18, 30)
    day = local_day(await dates.now(), 10)
    handle = await dates.tell(customer_id, birthday=f"1992-{day:%m-%d}")
    later = dates.shop.config.journeys.dates.model_copy(update={"send_at": "18:30"})  # the journeys file edited
    await dates.tell(customer_id, plan=later, birthday=f"1992-{day:%m-%d}")
    due = datetime.combine(day, evening, tzinfo=NEW_YORK).astimezone(UTC)
    assert (await handle.query(DatesJourney.state)).next_wake_up == due

    await dates.env.sleep(timedelta(days=366 + 11))  # this year's birthday, and next year's in the next run
    sent = [(m.step, m.sent_at.astimezone(NEW_YORK)) for m in dates.messages(customer_id) if m.sent_at]
    next_day = day_in(day.year + 1, day.month, day.day)
    assert [step for step, _ in sent] == [f"birthday_{day.year}", f"birthday_{next_day.year}"]
    assert [(at.date(), at.time().replace(second=0, microsecond=0)) for _, at in sent] == [
        (day, evening),
        (next_day, evening),
    ]


async def test_removing_every_date_ends_the_journey_at_once(dates: Dates):
    customer_id = unique()
    day = local_day(await dates.now(), 30)
    handle = await dates.tell(customer_id, dates=[sams_birthday(day.month, day.day)])
    await dates.env.sleep(timedelta(days=2))
    await dates.tell(customer_id, dates=[])
    result = await handle.result()

    assert result.ended == "no_dates" and result.steps_done == []
    description = await handle.describe()
    assert description.close_time is not None and description.close_time - description.start_time < timedelta(days=3)
    assert description.search_attributes["JourneyStep"] == ["no_dates"]
    assert dates.messages(customer_id) == []


async def test_a_customer_with_no_dates_is_not_started_and_a_started_one_ends(dates: Dates):
    customer_id = unique()
    await dates.tell(customer_id, dates=[])  # nothing to start
    with pytest.raises(RPCError):
        await dates.client.get_workflow_handle(dates_id(customer_id)).describe()
    journey = DatesInput(customer_id=customer_id, plan=dates.shop.config.journeys.dates)
    await dates_changed(dates.client, dates.shop.task_queue, journey)  # started all the same: it finds nothing
    assert (
        await dates.client.get_workflow_handle_for(DatesJourney.run, dates_id(customer_id)).result()
    ).ended == "no_dates"


async def test_opting_out_of_every_channel_ends_it_and_a_purchase_does_not(dates: Dates):
    customer_id = unique()
    day = local_day(await dates.now(), 10)
    handle = await dates.tell(customer_id, birthday=f"1992-{day:%m-%d}")
    await handle.signal(DatesJourney.purchase, PurchaseSignal(order_id="o-1"))
    await handle.signal(DatesJourney.opted_out, OptOutSignal(channel=Channel.sms))
    state = await handle.query(DatesJourney.state)
    assert state.ended is None and state.opted_out == [Channel.sms]
    await handle.signal(DatesJourney.opted_out, OptOutSignal(channel=Channel.email))
    result = await handle.result()
    assert result.ended == "opted_out" and dates.messages(customer_id) == []


async def test_history_carries_no_personal_data(dates: Dates):
    customer_id = unique()
    day = local_day(await dates.now(), 8)
    handle = await dates.tell(
        customer_id, first_name="Zebulon", last_name="Quincey", birthday=f"1992-{day:%m-%d}",
        dates=[sams_birthday(day.month, day.day, "Wilhelmina's birthday")],
    )  # fmt: skip
    await dates.env.sleep(timedelta(days=9))
    assert len(dates.messages(customer_id)) == 3  # the reminder, the birthday and the message on the day
    history = decoded_history((await handle.fetch_history()).to_json())
    for secret in (PHONE, EMAIL, "Zebulon", "Quincey", "Wilhelmina"):
        assert secret not in history
    assert customer_id in history


# --- intake --------------------------------------------------------------------------------------------------------


def told_rows(engine: Engine, customer_id: str) -> list[tuple[int | None, str, str, int, int, int | None]]:
    with Session(engine) as session:
        rows = session.exec(
            select(CustomerDate).where(CustomerDate.customer_id == customer_id).order_by(col(CustomerDate.id))
        ).all()
        return [(r.id, r.kind, r.label, r.month, r.day, r.year) for r in rows]


def test_given_dates_replace_the_told_ones_and_a_date_told_again_keeps_its_id(engine: Engine, config):
    anniversary = {"kind": "anniversary", "label": "Our wedding", "month": 6, "day": 12, "year": 2015}
    store(engine, config, "c_1", dates=[sams_birthday(2, 29), anniversary])
    [(sam, *_), (wedding, *_)] = told_rows(engine, "c_1")

    store(engine, config, "c_1", first_name="Ava")  # dates left out: kept
    assert [row[0] for row in told_rows(engine, "c_1")] == [sam, wedding]

    moved = sams_birthday(3, 1, label="sam's birthday")  # the same date (its label's case aside), on another day
    other = {"kind": "other", "label": "Graduation", "month": 7, "day": 1}
    store(engine, config, "c_1", dates=[other, moved])
    rows = told_rows(engine, "c_1")
    assert rows[0] == (sam, "partner_birthday", "sam's birthday", 3, 1, None)
    assert rows[1][1:] == ("other", "Graduation", 7, 1, None) and rows[1][0] not in (sam, wedding)

    store(engine, config, "c_1", dates=[])
    assert told_rows(engine, "c_1") == []


class Told:
    """Temporal as the API sees it: which dates journeys were started (or told), and which only told."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.signalled: list[str] = []

    async def start_workflow(self, workflow: Any, arg: Any, *, id: str, start_signal: str, **options: Any) -> None:
        assert start_signal == "dates_changed"
        self.started.append(id)

    def get_workflow_handle(self, workflow_id: str) -> "Told":
        self.signalled.append(workflow_id)
        return self

    async def signal(self, signal: Any, *args: Any) -> None:
        assert signal.__name__ == "dates_changed"


@pytest.fixture
def told_journeys() -> Told:
    return Told()


@pytest.fixture
async def http(sqlite_engine: Engine, config: JourneysConfig, told_journeys: Told) -> AsyncIterator[httpx.AsyncClient]:
    client = cast(Client, told_journeys)
    app = create_app(Settings(COMEBACK_API_TOKEN=TOKEN), engine=sqlite_engine, client=client, config=config)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://comeback.test") as http:
        yield http


async def test_the_api_tells_the_dates_journeys_and_exports_and_erases_the_dates(http, sqlite_engine, told_journeys):
    batch = [
        {"id": "c_1", "dates": [sams_birthday(5, 1)]},
        {"id": "c_2", "birthday": "1990-05-17"},
        {"id": "c_3", "dates": []},  # no dates: a running journey is told, none is started
        {"id": "c_4", "first_name": "Ben"},  # no dates given: nothing to tell
    ]
    assert (await http.post("/customers", json=batch, headers=AUTH)).status_code == 200
    assert (told_journeys.started, told_journeys.signalled) == (["dates-c_1", "dates-c_2"], ["dates-c_3"])

    export = (await http.get("/customers/c_1/export", headers=AUTH)).json()
    [sam] = export["profile"]["dates"]
    assert (sam["kind"], sam["label"], sam["month"], sam["day"], sam["year"]) == (
        "partner_birthday",
        "Sam's birthday",
        5,
        1,
        None,
    )

    assert (await http.delete("/customers/c_1", headers=AUTH)).status_code == 204
    assert told_rows(sqlite_engine, "c_1") == [] and told_journeys.signalled[-1] == "dates-c_1"  # it ends: no dates
    assert (await http.get("/customers/c_1/export", headers=AUTH)).json()["profile"]["dates"] == []


@pytest.mark.parametrize(
    ("told_date", "field"),
    [
        ({"month": 4, "day": 31}, "day"),
        ({"month": 2, "day": 30}, "day"),
        ({"month": 13, "day": 1}, "month"),
        ({"month": 2, "day": 29, "year": 2027}, "year"),
        ({"kind": "birthday"}, "kind"),
        ({"label": ""}, "label"),
        ({"label": "x" * 101}, "label"),
    ],
)
async def test_a_bad_date_is_a_422_naming_its_field(http, sqlite_engine, told_date: dict[str, Any], field: str):
    bad = sams_birthday(5, 1) | told_date
    good = sams_birthday(2, 29, "Leap day") | {"year": 2028}
    payload = {"id": "c_1", "dates": [good, bad]}
    answer = await http.post("/customers", json=payload, headers=AUTH)
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == [f"dates.1.{field}"]
    answer = await http.post("/orders", json=order_payload(dates=[bad]), headers=AUTH)
    assert [e["field"] for e in answer.json()["errors"]] == [f"customer.dates.0.{field}"]
    assert told_rows(sqlite_engine, "c_1") == []


async def test_the_same_date_twice_is_refused(http):
    payload = {"id": "c_1", "dates": [sams_birthday(5, 1), sams_birthday(6, 1, "SAM'S BIRTHDAY")]}
    answer = await http.post("/customers", json=payload, headers=AUTH)
    assert answer.status_code == 422 and [e["field"] for e in answer.json()["errors"]] == ["dates"]


async def test_post_customers_starts_the_dates_journey_of_a_customer_with_dates(dates: Dates, recorder):
    settings = Settings(COMEBACK_API_TOKEN=TOKEN, TEMPORAL_TASK_QUEUE=dates.shop.task_queue)
    app = create_app(settings, engine=dates.shop.engine, client=dates.client, config=dates.shop.config)
    customer_id, undated = unique(), unique()
    day = local_day(await dates.now(), 9)
    profile = customer(customer_id).model_dump(mode="json", exclude_none=True)
    batch = [profile | {"dates": [sams_birthday(day.month, day.day)]}, {"id": undated, "first_name": "Ben"}]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://comeback.test") as http:
        answer = await http.post("/customers", json=batch, headers=AUTH)
    assert answer.status_code == 200
    dates.started.append(dates_id(customer_id))

    await dates.env.sleep(timedelta(days=10))
    [date_id] = date_ids(dates.shop.engine, customer_id)
    assert [m.step for m in dates.messages(customer_id)] == [
        f"reminder_{date_id}_{day}",
        f"on_the_day_{date_id}_{day}",
    ]
    with pytest.raises(RPCError):  # a customer without dates has no dates journey
        await dates.client.get_workflow_handle(dates_id(undated)).describe()


class Unreachable:
    async def start_workflow(self, *args: Any, **kwargs: Any) -> None:
        raise RPCError("failed to connect: connection refused", RPCStatusCode.UNAVAILABLE, b"")


async def test_post_customers_is_a_503_when_temporal_is_unreachable_and_the_dates_are_stored(sqlite_engine, config):
    client = cast(Client, Unreachable())
    app = create_app(Settings(COMEBACK_API_TOKEN=TOKEN), engine=sqlite_engine, client=client, config=config)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://comeback.test") as http:
        answer = await http.post("/customers", json={"id": "c_1", "birthday": "1990-05-17"}, headers=AUTH)
    assert answer.status_code == 503 and "retry" in answer.json()["detail"]
    with Session(sqlite_engine) as session:
        stored = session.get(Customer, "c_1")
        assert stored is not None and stored.birthday == date(1990, 5, 17)
