"""Birthdays and the dates customers tell us (one per customer, `dates-{customer_id}`), every year, forever.

A run covers one year of sends, [since, since + YEAR): it asks for the dates due in it, sleeps until each send and
sends it, then continues as new with the next year. On the customer's own birthday: a reward. For a date they told
us (a partner's birthday, an anniversary): a reminder with gift ideas `reminder_before` it, then a message on the
day. Step names carry the year (`birthday_2027`: one reward a year), or the date's id and the day it falls on
(`reminder_17_2027-03-14`), so a step repeated after a restart or a continue-as-new is never sent twice (the outbox
is keyed by it), and a date moved to another day is sent on its new day.

`dates_changed` (a profile change) makes the journey read the dates again at once: a moved date's old sends are not
sent, its new ones are, from now on. A customer with no dates left, or opted out of every channel, ends it; a
purchase does not.
"""

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, NoReturn

from temporalio import workflow

from workflows.steps import Journey

with workflow.unsafe.imports_passed_through():
    from models import search
    from models.contracts import (
        DateOccurrence,
        DatesChangedSignal,
        DatesInput,
        DatesPlan,
        JourneyResult,
        PurchaseSignal,
        SendRequest,
        StepPlan,
        UpcomingDates,
        UpcomingDatesRequest,
    )

YEAR = timedelta(days=365)  # one run's window; consecutive runs tile time, so every send falls in exactly one
READ_TIMEOUT = timedelta(seconds=30)
WAITING_STAGE = "scheduled"  # JourneyStep while the next send is not known yet (set at start, which costs nothing)

Woke = Literal["due", "changed", "ended"]


@dataclass(frozen=True)
class Send:
    due: datetime
    stage: str
    request: SendRequest


@workflow.defn
class DatesJourney(Journey):
    journey = "dates"

    def __init__(self) -> None:
        super().__init__()
        self._changed = False
        self._plan: DatesPlan | None = None  # the plan the latest `dates_changed` brought
        self._done: set[str] = set()  # steps sent (or skipped by the send policy) in this run

    @workflow.signal
    def dates_changed(self, signal: DatesChangedSignal) -> None:
        """The customer's birthday or told dates changed: read them again, with the plan the signal brings
        (signal-with-start brings the first)."""
        self._changed, self._plan = True, signal.plan

    @workflow.signal
    def purchase(self, signal: PurchaseSignal) -> None:
        """A purchase ends the journeys that win customers back; birthdays go on."""

    @workflow.run
    async def run(self, journey: DatesInput) -> JourneyResult:
        customer_id = journey.customer_id
        # After a continue-as-new: the stage its search attribute already shows, the channels opted out of.
        self._state.stage = workflow.info().typed_search_attributes.get(search.JOURNEY_STEP) or WAITING_STAGE
        self._state.opted_out = list(journey.opted_out)
        since = journey.since or workflow.now()
        until = since + YEAR
        resume_from = since  # the sends due from here on are made...
        overdue: set[str] = set()  # ...and these, already due when the dates changed
        while True:
            self._changed, plan = False, self._plan or journey.plan
            self.uses({channel for step in plan.all_steps() for channel in step.channels})
            first_read = journey.since is None and resume_from == since
            upcoming = await self._upcoming(customer_id, plan, since, until, catch_up=first_read)
            if upcoming.dates == 0:
                return self.end("no_dates")
            sends = [
                send
                for occurrence in upcoming.occurrences
                for send in self._sends(plan, customer_id, occurrence)
                if send.request.step not in self._done
                and send.due < until
                and (send.due >= resume_from or send.request.step in overdue)
            ]
            # Due at the same time (one text a day may go): the customer's own birthday first.
            sends.sort(key=lambda send: (send.due, send.request.date_id is not None))
            outcome = await self._send_all(sends, until)
            if outcome == "ended":
                return self.end()
            pending = [send for send in sends if send.request.step not in self._done]
            if outcome == "year_done":
                self._continue_as_new(journey, plan, until)
            if outcome == "long":
                self._continue_as_new(journey, plan, min([workflow.now(), *(send.due for send in pending)]))
            # The dates changed: new sends count from now; one already due (sharing the instant of the send just
            # made) still goes, if the new dates still have it.
            resume_from = workflow.now()
            overdue = {send.request.step for send in pending if send.due <= resume_from}

    async def _send_all(self, sends: list[Send], until: datetime) -> Literal["ended", "changed", "long", "year_done"]:
        """Each send at its time, then sleep to the end of the year; stop early when the dates change, the
        journey ends or its history grows long."""
        for send in sends:
            self.enter_stage(send.stage)
            woke = await self._sleep_until(send.due, send.request.step)
            if woke != "due":
                return woke
            if await self.send(send.request) is None:
                return "ended"
            self._done.add(send.request.step)
            if self._changed:
                return "changed"
            if workflow.info().is_continue_as_new_suggested():
                return "long"
        self.enter_stage(WAITING_STAGE)
        woke = await self._sleep_until(until, "next_year")
        return "year_done" if woke == "due" else woke

    async def _upcoming(
        self, customer_id: str, plan: DatesPlan, since: datetime, until: datetime, *, catch_up: bool
    ) -> UpcomingDates:
        request = UpcomingDatesRequest(
            customer_id=customer_id,
            since=since,
            until=until,
            send_at=plan.send_at,
            reminder_before=plan.reminder_before,
            catch_up=catch_up,
        )
        workflow.set_current_details("Reading the customer's dates.")
        return await workflow.execute_activity(
            "upcoming_dates",
            request,
            result_type=UpcomingDates,
            start_to_close_timeout=READ_TIMEOUT,
            summary=f"dates of customer {customer_id} from {since:%Y-%m-%d}",
        )

    def _sends(self, plan: DatesPlan, customer_id: str, occurrence: DateOccurrence) -> list[Send]:
        """The birthday's reward; or a told date's reminder and its message on the day, named by date and day."""
        day, date_id = occurrence.day, occurrence.date_id

        def make(step: StepPlan, due: datetime, name: str) -> Send:
            return Send(due, step.stage, self.step_request(step, customer_id, name=name, date_id=date_id))

        if date_id is None:
            return [make(plan.birthday, occurrence.on_the_day_at, f"{plan.birthday.name}_{day.year}")]
        sends = [make(plan.on_the_day, occurrence.on_the_day_at, f"{plan.on_the_day.name}_{date_id}_{day}")]
        if occurrence.reminder_at is not None:
            sends.append(make(plan.reminder, occurrence.reminder_at, f"{plan.reminder.name}_{date_id}_{day}"))
        return sends

    async def _sleep_until(self, when: datetime, next_step: str) -> Woke:
        """Like Journey.wait_until, and also woken by `dates_changed`. A send whose time has come goes first."""
        self._state.next_step, self._state.next_wake_up = next_step, when
        workflow.set_current_details(f"Waiting until {when:%Y-%m-%d %H:%M:%S} UTC to send {next_step}.")
        delay = when - workflow.now()
        if self._exit is None and not self._changed and delay > timedelta(0):
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: self._exit is not None or self._changed, timeout=delay)
        self._state.next_wake_up = None
        if self._exit is not None:
            return "ended"
        return "due" if workflow.now() >= when else "changed"

    def _continue_as_new(self, journey: DatesInput, plan: DatesPlan, since: datetime) -> NoReturn:
        workflow.set_current_details(f"Continuing as new from {since:%Y-%m-%d %H:%M:%S} UTC.")
        carried = {"plan": plan, "since": since, "opted_out": self._state.opted_out}
        workflow.continue_as_new(journey.model_copy(update=carried))
