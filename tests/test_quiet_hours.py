"""Quiet hours: zones, windows and the next allowed minute, by example and by property (hypothesis)."""

from datetime import UTC, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activities import quiet_hours
from activities.quiet_hours import (
    LEGAL_BOUNDS,
    MARKETING_WINDOW,
    SEARCH_HORIZON,
    TRANSACTIONAL_WINDOW,
    NoCommonWindowError,
    Window,
    allowed_window,
    next_allowed,
    recipient_zones,
    strict_window_for,
)

LA = ZoneInfo("America/Los_Angeles")
NY = ZoneInfo("America/New_York")
MINUTE = timedelta(minutes=1)

FLORIDA = "+13055550100"  # Miami
PALM_BEACH = "+17285550100"  # the geocoder says "Palm Beach, FL"
OKLAHOMA = "+14055550100"
CALIFORNIA = "+14155550100"
IDAHO = "+12085550100"  # phonenumbers: America/Boise and America/Los_Angeles
UNKNOWN_RANGE = "+15555550100"  # +1, but no such area code


def w(start: str, end: str) -> Window:
    return Window(time.fromisoformat(start), time.fromisoformat(end))


def local(zone: ZoneInfo, text: str, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone, fold=fold)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- next_allowed, by example -----------------------------------------------------------------------------------


def test_before_the_window_is_deferred_to_its_start_in_local_time() -> None:
    now = local(LA, "2026-06-10 06:30")
    assert next_allowed(now.astimezone(UTC), [LA], MARKETING_WINDOW) == local(LA, "2026-06-10 09:00")


def test_inside_the_window_is_now_unchanged() -> None:
    now = local(LA, "2026-06-10 10:00:17.5").astimezone(UTC)
    assert next_allowed(now, [LA], MARKETING_WINDOW) == now
    last = local(LA, "2026-06-10 19:59:59").astimezone(UTC)
    assert next_allowed(last, [LA], MARKETING_WINDOW) == last


def test_end_is_exclusive_so_twenty_hundred_waits_for_the_next_morning() -> None:
    now = local(LA, "2026-06-10 20:00").astimezone(UTC)
    assert next_allowed(now, [LA], MARKETING_WINDOW) == local(LA, "2026-06-11 09:00")


def test_result_is_a_whole_utc_minute_when_deferred() -> None:
    now = local(LA, "2026-06-10 08:59:30.25").astimezone(UTC)
    result = next_allowed(now, [LA], MARKETING_WINDOW)
    assert result == local(LA, "2026-06-10 09:00")
    assert result.tzinfo is UTC
    assert (result.second, result.microsecond) == (0, 0)


def test_any_aware_now_is_accepted_and_the_answer_is_utc() -> None:
    now = local(LA, "2026-06-10 06:30")  # not UTC, still the same instant
    result = next_allowed(now, [LA], MARKETING_WINDOW)
    assert result == utc("2026-06-10 16:00")
    assert result.tzinfo is UTC


def test_naive_now_and_no_zones_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_allowed(datetime(2026, 6, 10, 12), [LA], MARKETING_WINDOW)
    with pytest.raises(ValueError, match="zone"):
        next_allowed(utc("2026-06-10 12:00"), [], MARKETING_WINDOW)


def test_spring_forward_day_in_new_york() -> None:
    # 2026-03-08: 02:00 EST becomes 03:00 EDT. 09:00 that morning is EDT, i.e. 13:00 UTC, not 14:00.
    before = local(NY, "2026-03-08 01:30")
    assert next_allowed(before.astimezone(UTC), [NY], MARKETING_WINDOW) == utc("2026-03-08 13:00")
    # A window that opens inside the gap opens at the first real minute after it: 03:00 EDT.
    gap = w("02:30", "04:00")
    result = next_allowed(before.astimezone(UTC), [NY], gap)
    assert result == utc("2026-03-08 07:00") == local(NY, "2026-03-08 03:00")
    # A window wholly inside the gap does not exist that day: the next day's.
    result = next_allowed(before.astimezone(UTC), [NY], w("02:10", "02:50"))
    assert result == local(NY, "2026-03-09 02:10")


def test_fall_back_day_in_new_york() -> None:
    # 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:00-02:00 happens twice.
    early = local(NY, "2026-11-01 00:30")
    assert next_allowed(early.astimezone(UTC), [NY], MARKETING_WINDOW) == utc("2026-11-01 14:00")
    # A window starting in the repeated hour opens at its first occurrence.
    assert next_allowed(early.astimezone(UTC), [NY], w("01:30", "03:00")) == utc("2026-11-01 05:30")
    # A window ending in the repeated hour closes at 01:30 EDT and opens again when clocks go back to 01:00 EST.
    late = local(NY, "2026-11-01 01:45", fold=0)  # EDT, 05:45 UTC
    assert next_allowed(late.astimezone(UTC), [NY], w("00:00", "01:30")) == utc("2026-11-01 06:00")
    assert utc("2026-11-01 06:00").astimezone(NY).time() == time(1, 0)


def test_a_window_inside_the_repeated_hour_opens_twice() -> None:
    window = w("01:30", "01:45")
    after_first = local(NY, "2026-11-01 01:50", fold=0).astimezone(UTC)  # EDT, 05:50 UTC
    second = next_allowed(after_first, [NY], window)
    # (Compared in UTC: Python never finds a fold=1 time equal to an instant in another zone.)
    assert second == local(NY, "2026-11-01 01:30", fold=1).astimezone(UTC) == utc("2026-11-01 06:30")
    after_second = local(NY, "2026-11-01 01:50", fold=1).astimezone(UTC)  # EST, 06:50 UTC
    assert next_allowed(after_second, [NY], window) == local(NY, "2026-11-02 01:30")


def test_half_hour_dst_on_lord_howe() -> None:
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    # 2026-10-04 02:00 +10:30 becomes 02:30 +11:00.
    now = local(lord_howe, "2026-10-04 01:50").astimezone(UTC)
    assert next_allowed(now, [lord_howe], w("02:10", "03:00")) == local(lord_howe, "2026-10-04 02:30")


def test_several_zones_must_all_be_inside_the_window() -> None:
    boise = ZoneInfo("America/Boise")
    now = local(boise, "2026-06-10 08:30").astimezone(UTC)  # 07:30 in Los Angeles
    assert next_allowed(now, [boise, LA], MARKETING_WINDOW) == local(LA, "2026-06-10 09:00")
    evening = local(boise, "2026-06-10 20:30").astimezone(UTC)  # 19:30 in Los Angeles, but not in Boise
    assert next_allowed(evening, [boise, LA], MARKETING_WINDOW) == local(LA, "2026-06-11 09:00")


def test_zones_whose_windows_never_overlap_raise() -> None:
    zones = [ZoneInfo("Asia/Tokyo"), NY]  # 13-14 hours apart: 09:00-20:00 never overlaps
    with pytest.raises(NoCommonWindowError, match=r"Asia/Tokyo, America/New_York") as raised:
        next_allowed(utc("2026-06-10 12:00"), zones, MARKETING_WINDOW)
    assert isinstance(raised.value, ValueError)


# --- recipient_zones ----------------------------------------------------------------------------------------------


def test_the_customers_own_zone_wins() -> None:
    assert recipient_zones("Europe/Paris", CALIFORNIA, default_zone="America/Chicago") == [ZoneInfo("Europe/Paris")]


def test_phone_only_gives_the_numbers_zones() -> None:
    assert recipient_zones(None, CALIFORNIA, default_zone="Europe/Paris") == [LA]
    assert recipient_zones(None, FLORIDA, default_zone="Europe/Paris") == [NY]
    assert recipient_zones("", IDAHO, default_zone="Europe/Paris") == [ZoneInfo("America/Boise"), LA]


def test_a_zone_that_does_not_exist_falls_back_to_the_phone() -> None:
    assert recipient_zones("Mars/Olympus_Mons", CALIFORNIA, default_zone="Europe/Paris") == [LA]


def test_a_national_number_needs_its_region() -> None:
    assert recipient_zones(None, "(415) 555-0100", default_zone="Europe/Paris") == [ZoneInfo("Europe/Paris")]
    assert recipient_zones(None, "(415) 555-0100", default_zone="Europe/Paris", region="US") == [LA]


def test_an_unknown_range_gets_every_zone_of_its_country_code_so_no_common_window() -> None:
    zones = recipient_zones(None, UNKNOWN_RANGE, default_zone="America/Chicago")
    keys = {zone.key for zone in zones}
    assert {"America/New_York", "America/Los_Angeles", "Pacific/Honolulu", "Pacific/Guam"} <= keys
    assert len(keys) == len(zones)
    # From Guam to Newfoundland there is no safe minute: the policy must not guess one.
    with pytest.raises(NoCommonWindowError):
        next_allowed(utc("2026-06-10 12:00"), zones, MARKETING_WINDOW)


def test_without_zone_or_usable_phone_the_configured_default_is_used() -> None:
    chicago = ZoneInfo("America/Chicago")
    assert recipient_zones(None, None, default_zone="America/Chicago") == [chicago]
    assert recipient_zones(None, "not a phone", default_zone=chicago) == [chicago]
    with pytest.raises(ValueError, match="default_zone"):
        recipient_zones(None, None, default_zone="Nowhere/Special")


# --- strict states and allowed_window -----------------------------------------------------------------------------


@pytest.mark.parametrize("phone", [FLORIDA, PALM_BEACH, OKLAHOMA, "+19185550100", "+14105550100"])
def test_strict_states_allow_marketing_08_to_20(phone: str) -> None:
    assert strict_window_for(phone) == w("08:00", "20:00")


@pytest.mark.parametrize("phone", [CALIFORNIA, "+12125550100", "+442079460000", "not a phone", None])
def test_other_numbers_have_no_stricter_window(phone: str | None) -> None:
    assert strict_window_for(phone) is None


def test_the_geocoder_catches_a_strict_area_code_the_table_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quiet_hours, "STRICT_AREA_CODES", {})
    assert strict_window_for(FLORIDA) == w("08:00", "20:00")  # "Florida"
    assert strict_window_for(PALM_BEACH) == w("08:00", "20:00")  # "Palm Beach, FL"
    assert strict_window_for(OKLAHOMA) == w("08:00", "20:00")
    assert strict_window_for(CALIFORNIA) is None


def test_the_area_code_table_agrees_with_the_geocoder() -> None:
    import phonenumbers
    from phonenumbers import geocoder

    for code, state in quiet_hours.STRICT_AREA_CODES.items():
        description = geocoder.description_for_number(phonenumbers.parse(f"+1{code}5550100"), "en")
        assert description == quiet_hours.STRICT_STATES[state][0] or description.endswith(f", {state}"), code


def test_marketing_window_defaults_to_09_20() -> None:
    assert allowed_window("marketing", CALIFORNIA) == w("09:00", "20:00")
    assert allowed_window("marketing", None) == MARKETING_WINDOW


def test_a_wide_marketing_window_is_clamped_to_08_21_and_to_08_20_in_florida() -> None:
    wide = w("07:00", "22:00")
    assert allowed_window("marketing", CALIFORNIA, marketing=wide) == LEGAL_BOUNDS
    assert allowed_window("marketing", FLORIDA, marketing=wide) == w("08:00", "20:00")
    assert allowed_window("marketing", OKLAHOMA, marketing=w("10:00", "22:00")) == w("10:00", "20:00")


def test_a_florida_customer_is_deferred_from_07_30_to_08_00_and_from_20_00_to_the_next_morning() -> None:
    zones = recipient_zones(None, FLORIDA, default_zone="America/Chicago")
    window = allowed_window("marketing", FLORIDA, marketing=w("07:00", "22:00"))
    morning = local(NY, "2026-06-10 07:30").astimezone(UTC)
    assert next_allowed(morning, zones, window) == local(NY, "2026-06-10 08:00")
    evening = local(NY, "2026-06-10 20:00").astimezone(UTC)
    assert next_allowed(evening, zones, window) == local(NY, "2026-06-11 08:00")


def test_transactional_messages_have_their_own_window() -> None:
    assert allowed_window("transactional", CALIFORNIA) == TRANSACTIONAL_WINDOW == w("08:00", "21:00")
    # Stricter state rules are about solicitations: not applied to transactional messages.
    assert allowed_window("transactional", FLORIDA) == w("08:00", "21:00")
    assert allowed_window("transactional", FLORIDA, transactional=w("07:00", "23:00")) == LEGAL_BOUNDS
    assert allowed_window("transactional", FLORIDA, transactional=w("10:00", "18:00")) == w("10:00", "18:00")


def test_bad_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="before its end"):
        w("20:00", "09:00")
    with pytest.raises(ValueError, match="before its end"):
        w("09:00", "09:00")
    with pytest.raises(ValueError, match="naive"):
        Window(time(9, tzinfo=UTC), time(20))
    with pytest.raises(ValueError, match="outside"):
        allowed_window("marketing", CALIFORNIA, marketing=w("21:00", "23:00"))
    with pytest.raises(ValueError, match="outside"):
        allowed_window("marketing", FLORIDA, marketing=w("20:00", "21:00"))
    with pytest.raises(ValueError, match="kind"):
        allowed_window("promotional", CALIFORNIA)  # type: ignore[arg-type]


# --- properties ---------------------------------------------------------------------------------------------------

ZONES = [
    "America/New_York",
    "America/Los_Angeles",
    "America/Phoenix",
    "America/St_Johns",
    "America/Santiago",  # changes at 24:00
    "America/Havana",  # changes at midnight
    "America/Sao_Paulo",
    "Pacific/Honolulu",
    "Pacific/Chatham",  # +12:45/+13:45
    "Pacific/Kiritimati",  # +14
    "Pacific/Pago_Pago",  # -11
    "Europe/London",
    "Europe/Berlin",
    "Africa/Casablanca",  # steps back an hour during Ramadan
    "Asia/Kathmandu",  # +05:45
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Australia/Lord_Howe",  # 30-minute DST
    "Australia/Sydney",
]
START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2029, 1, 1, tzinfo=UTC)


@cache
def offset_changes(key: str) -> tuple[datetime, ...]:
    """The instants at which the zone's UTC offset changes in 2026-2028, to the minute."""
    zone, changes, instant = ZoneInfo(key), [], START
    offset = instant.astimezone(zone).utcoffset()
    step = timedelta(hours=6)
    while instant < END:
        if (new := (instant + step).astimezone(zone).utcoffset()) != offset:
            change = instant
            while change.astimezone(zone).utcoffset() == offset:
                change += MINUTE
            changes.append(change)
            offset = new
        instant += step
    return tuple(changes) or (START,)


def allowed(instant: datetime, zones: list[ZoneInfo], window: Window) -> bool:
    """The definition, written out again rather than imported."""
    return all(window.start <= instant.astimezone(zone).time() < window.end for zone in zones)


def ceil_minute(instant: datetime) -> datetime:
    floor = instant.replace(second=0, microsecond=0)
    return floor if floor == instant else floor + MINUTE


instants = st.datetimes(min_value=START.replace(tzinfo=None), max_value=END.replace(tzinfo=None) - MINUTE).map(
    lambda naive: naive.replace(tzinfo=UTC)
)


@st.composite
def near_offset_change(draw: st.DrawFn, keys: list[str]) -> datetime:
    """An instant within two days of one of the zones' offset changes."""
    change = draw(st.sampled_from(offset_changes(draw(st.sampled_from(keys)))))
    return change + timedelta(seconds=draw(st.integers(-2 * 86400, 2 * 86400)))


@st.composite
def windows(draw: st.DrawFn, low: time = LEGAL_BOUNDS.start, high: time = LEGAL_BOUNDS.end) -> Window:
    lo, hi = low.hour * 60 + low.minute, high.hour * 60 + high.minute
    start = draw(st.integers(lo, hi - 1))
    end = draw(st.integers(start + 1, hi))
    return Window(time(start // 60, start % 60), time(end // 60, end % 60))


def check_next_allowed(now: datetime, zones: list[ZoneInfo], window: Window) -> None:
    try:
        result = next_allowed(now, zones, window)
    except NoCommonWindowError:
        # Only when truly nothing is allowed within the horizon.
        minute, stop = ceil_minute(now), now + SEARCH_HORIZON
        while minute <= stop:
            assert not allowed(minute, zones, window), minute
            minute += MINUTE
        return
    assert now <= result <= now + SEARCH_HORIZON
    assert allowed(result, zones, window)
    for zone in zones:  # a real local time: it converts back to the same instant
        assert result.astimezone(zone).astimezone(UTC) == result
    if result == now:
        return
    assert (result.second, result.microsecond) == (0, 0)
    assert result >= ceil_minute(now)
    # No earlier whole minute is allowed: every one between now and the result is checked.
    minute = ceil_minute(now)
    while minute < result:
        assert not allowed(minute, zones, window), minute
        minute += MINUTE


@settings(max_examples=200, deadline=None)
@given(now=st.one_of(instants, near_offset_change(ZONES)), key=st.sampled_from(ZONES), window=windows())
def test_property_one_zone_any_legal_window(now: datetime, key: str, window: Window) -> None:
    check_next_allowed(now, [ZoneInfo(key)], window)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_property_one_zone_window_edges_in_dst_gaps_and_overlaps(data: st.DataObject) -> None:
    # Windows anywhere in the day whose edges sit around the local time of an offset change, so that they fall
    # into spring-forward gaps and fall-back overlaps, and a `now` a few hours either side of the change.
    key = data.draw(st.sampled_from(ZONES))
    zone = ZoneInfo(key)
    change = data.draw(st.sampled_from(offset_changes(key)))
    at = change.astimezone(zone)
    around = at.hour * 60 + at.minute + data.draw(st.integers(-120, 90))
    start = min(max(around, 0), 24 * 60 - 2)
    end = min(start + data.draw(st.integers(1, 180)), 24 * 60 - 1)
    window = Window(time(start // 60, start % 60), time(end // 60, end % 60))
    now = change + timedelta(seconds=data.draw(st.integers(-6 * 3600, 6 * 3600)))
    check_next_allowed(now, [zone], window)


@settings(max_examples=200, deadline=None)
@given(
    now=st.one_of(instants, near_offset_change(ZONES)),
    key=st.sampled_from(ZONES),
    window=windows(time(0), time(23, 59)),
)
def test_property_one_zone_any_window_in_the_day(now: datetime, key: str, window: Window) -> None:
    check_next_allowed(now, [ZoneInfo(key)], window)


@settings(max_examples=200, deadline=None)
@given(
    now=st.one_of(instants, near_offset_change(ZONES)),
    keys=st.lists(st.sampled_from(ZONES), min_size=2, max_size=3, unique=True),
    window=windows(),
)
def test_property_several_zones_only_where_all_allow(now: datetime, keys: list[str], window: Window) -> None:
    check_next_allowed(now, [ZoneInfo(key) for key in keys], window)
