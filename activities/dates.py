"""When the dates journey sends: each of the customer's yearly dates, the day it falls on in a given year, and the
instants of its reminder and of its message on the day, at `send_at` in the customer's zone (DST-correct).

The result names dates by id and kind only: a label ("Sam's birthday") is personal, and is read from the database
by the template when the message is sent.
"""

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio import activity

from models.contracts import DateOccurrence, UpcomingDates, UpcomingDatesRequest
from models.journeys import JourneysConfig
from models.tables import Customer, CustomerDate, DateKind


@dataclass(frozen=True)
class YearlyDate:
    date_id: int | None  # None: the customer's own birthday
    kind: DateKind
    month: int
    day: int
    year: int | None = None  # not celebrated in years before it (a wedding planned for next year)


def day_in(year: int, month: int, day: int) -> date:
    """The day a yearly date falls on in `year`: 29 February is celebrated on 28 February in other years."""
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def instant(wall_clock: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time, with the zone's offset of that day (DST-correct)."""
    return wall_clock.replace(tzinfo=zone).astimezone(UTC)


def occurrences(
    dates: list[YearlyDate],
    zone: ZoneInfo,
    send_at: time,
    reminder_before: timedelta,
    since: datetime,
    until: datetime,
    catch_up: bool = False,
) -> list[DateOccurrence]:
    """Every date's occurrence with a send (its reminder or its message on the day) due in [since, until), in the
    order they are due. The reminder is measured on the local calendar, so that it too goes at `send_at`.
    `catch_up`: a message on the day that `since` falls on, whose `send_at` has passed, is due at `since`."""
    found = []
    for told in dates:
        for year in range(since.astimezone(zone).year - 1, until.astimezone(zone).year + 2):
            if told.year is not None and year < told.year:
                continue
            day = day_in(year, told.month, told.day)
            local = datetime.combine(day, send_at)
            due = instant(local, zone)
            if catch_up and due < since and since.astimezone(zone).date() == day:
                due = since  # told on the day itself, after `send_at`: it is still the day, so it goes now
            reminder = None if told.date_id is None else instant(local - reminder_before, zone)
            if since <= due < until or (reminder is not None and since <= reminder < until):
                found.append(
                    DateOccurrence(
                        date_id=told.date_id, kind=told.kind, day=day, reminder_at=reminder, on_the_day_at=due
                    )
                )
    return sorted(found, key=lambda o: (o.reminder_at or o.on_the_day_at, o.on_the_day_at, o.date_id or 0))


def customer_dates(session: Session, customer_id: str) -> list[YearlyDate]:
    """The customer's own birthday (if known) and the dates they told us."""
    customer = session.get(Customer, customer_id)
    own = []
    if customer is not None and customer.birthday is not None:
        birthday = customer.birthday
        own = [YearlyDate(None, DateKind.birthday, birthday.month, birthday.day)]
    told = session.exec(
        select(CustomerDate).where(CustomerDate.customer_id == customer_id).order_by(col(CustomerDate.id))
    ).all()
    return own + [YearlyDate(d.id, DateKind(d.kind), d.month, d.day, d.year) for d in told]


def customer_zone(session: Session, customer_id: str, default_timezone: str) -> ZoneInfo:
    customer = session.get(Customer, customer_id)
    return ZoneInfo(customer.timezone if customer is not None and customer.timezone else default_timezone)


class DatesActivities:
    def __init__(self, engine: Engine, config: JourneysConfig) -> None:
        self._engine = engine
        self._default_timezone = config.policy.default_timezone

    @activity.defn
    def upcoming_dates(self, request: UpcomingDatesRequest) -> UpcomingDates:
        with Session(self._engine) as session:
            dates = customer_dates(session, request.customer_id)
            zone = customer_zone(session, request.customer_id, self._default_timezone)
        found = occurrences(
            dates,
            zone,
            time.fromisoformat(request.send_at),
            request.reminder_before,
            request.since,
            request.until,
            request.catch_up,
        )
        return UpcomingDates(dates=len(dates), occurrences=found)
