"""Quiet hours in the recipient's local time: which zones, which window, and the next minute a send is allowed.

Pure functions (no I/O, no database, no clock): the send policy passes in the customer's data and `now`.

Decisions, in one place:

- **Windows are half-open**, `[start, end)` in local wall-clock time: with 09:00-20:00, 19:59:59 is allowed and
  20:00:00 is not. A window lies within one day (`start < end`); windows crossing midnight are refused.
- **Hard bounds.** No configured window reaches outside 08:00-21:00 (`LEGAL_BOUNDS`); marketing to a number in a
  state with stricter rules (`STRICT_STATES`: FL, OK, MD) is further clamped to 08:00-20:00. The stricter state
  rules govern telephone *solicitations*, so they are applied to marketing only; transactional messages get their
  own window (default 08:00-21:00), which is also kept within `LEGAL_BOUNDS`.
- **Which zones.** The customer's own IANA zone wins. Without one, the zones phonenumbers gives for the number (a
  US area code can span two zones; a mobile range can span a whole country). If the number's range is unknown,
  the zones for its longest known prefix, which may be the whole country calling code. Only when there is no
  usable phone either is the caller's `default_zone` used: it must be configured, because UTC, or any one guessed
  zone, would be wrong for most recipients. There is deliberately no default for it.
- **Several zones: all must agree.** A send is allowed only at a minute that is inside the window in *every*
  candidate zone (the intersection), since we cannot tell which one the recipient is in.
- **No common minute.** If the candidate zones' windows do not overlap within 48 h (for example, zones 12 hours
  apart, or the whole +1 calling code, which reaches from Guam to Newfoundland), `next_allowed` raises
  `NoCommonWindowError` (a `ValueError`) instead of picking one zone: any instant it returned would be inside
  quiet hours for some candidate. The send policy decides what to do with such a message (skip with a reason,
  or ask for the customer's time zone); it must not send it.
- **DST.** All arithmetic is on UTC instants, converted to each zone with zoneinfo. A window start that falls in
  a spring-forward gap opens at the transition (the first real local minute after it); a fall-back overlap is
  judged by the actual local time of each instant, so the repeated hour is in or out of the window both times.
  A result is always a real UTC instant, so it never names a non-existent local time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import geocoder
from phonenumbers import timezone as phone_timezones

__all__ = [
    "LEGAL_BOUNDS",
    "MARKETING_WINDOW",
    "SEARCH_HORIZON",
    "STRICT_STATES",
    "TRANSACTIONAL_WINDOW",
    "NoCommonWindowError",
    "Window",
    "allowed_window",
    "is_allowed",
    "next_allowed",
    "recipient_zones",
    "strict_window_for",
]


@dataclass(frozen=True)
class Window:
    """A daily window of local wall-clock time, `[start, end)`: `start` is allowed, `end` is not."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("a quiet-hours window is in local wall-clock time: use naive times")
        if not self.start < self.end:
            raise ValueError(f"window start {self.start} must be before its end {self.end} (same day)")

    def __contains__(self, local: time) -> bool:
        return self.start <= local.replace(tzinfo=None, fold=0) < self.end

    def clamp(self, bounds: Window) -> Window:
        """The part of this window inside `bounds`; a `ValueError` if nothing is left."""
        start, end = max(self.start, bounds.start), min(self.end, bounds.end)
        if not start < end:
            raise ValueError(f"window {self.start}-{self.end} lies entirely outside {bounds.start}-{bounds.end}")
        return Window(start, end)


LEGAL_BOUNDS = Window(time(8, 0), time(21, 0))
MARKETING_WINDOW = Window(time(9, 0), time(20, 0))
TRANSACTIONAL_WINDOW = Window(time(8, 0), time(21, 0))
SEARCH_HORIZON = timedelta(hours=48)

# States whose telemarketing laws are stricter than the federal 08:00-21:00, as a window for marketing, and the
# area codes that belong to them (checked against phonenumbers' geocoder, 2026). Keep both in step when the list
# changes, and have it reviewed by counsel: this is an engineering table, not legal advice.
# - FL: Florida Telephone Solicitation Act, Fla. Stat. 501.059(8)(a): 08:00-20:00.
# - OK: Oklahoma Telephone Solicitation Act of 2022, 15 O.S. 775C.4: 08:00-20:00.
# - MD: Maryland Stop the Spam Calls Act, Md. Code Com. Law 14-4503: 08:00-20:00.
# An area code tells where a number was issued, not where its owner is now (ported and moved numbers): the
# customer's own time zone is used for *when*, but the state rule follows the number, erring on the strict side.
STRICT_STATES: dict[str, tuple[str, Window]] = {
    "FL": ("Florida", Window(time(8, 0), time(20, 0))),
    "OK": ("Oklahoma", Window(time(8, 0), time(20, 0))),
    "MD": ("Maryland", Window(time(8, 0), time(20, 0))),
}
_AREA_CODES_BY_STATE = {
    "FL": "239 305 321 324 352 386 407 448 561 645 656 689 727 728 754 772 786 813 850 863 904 941 954",
    "OK": "405 539 572 580 918",
    "MD": "227 240 301 410 443 667",
}
STRICT_AREA_CODES: dict[str, str] = {
    code: state for state, codes in _AREA_CODES_BY_STATE.items() for code in codes.split()
}

_MINUTE = timedelta(minutes=1)
_UNKNOWN_ZONE = phone_timezones.UNKNOWN_TIMEZONE  # "Etc/Unknown"


class NoCommonWindowError(ValueError):
    """The candidate zones share no allowed minute within `SEARCH_HORIZON`: no instant is safe for all of them."""


def _parse(phone: str | None, region: str | None) -> phonenumbers.PhoneNumber | None:
    if not phone:
        return None
    try:
        return phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return None


def _zone(key: str) -> ZoneInfo | None:
    if not key or key == _UNKNOWN_ZONE:
        return None
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _zones(keys: tuple[str, ...] | list[str]) -> list[ZoneInfo]:
    """Loadable zones, duplicates removed, in the given order."""
    found: dict[str, ZoneInfo] = {}
    for key in keys:
        zone = _zone(key)
        if zone is not None:
            found.setdefault(zone.key, zone)
    return list(found.values())


def recipient_zones(
    timezone: str | None,
    phone: str | None,
    *,
    default_zone: str | ZoneInfo,
    region: str | None = None,
) -> list[ZoneInfo]:
    """The zones the recipient may be in, most specific source first; never empty.

    1. the customer's own IANA `timezone`, if it names a real zone;
    2. else the zones of the `phone` number (E.164, or national with `region`), which may be several;
    3. else, for a number whose range phonenumbers does not know, the zones of its longest known prefix (an area
       code, or at worst the whole country calling code): all of them, so that only their common window is used;
    4. else the configured `default_zone` (the brand's zone).
    """
    if timezone:
        zone = _zone(timezone)
        if zone is not None:
            return [zone]
    number = _parse(phone, region)
    if number is not None:
        zones = _zones(phone_timezones.time_zones_for_number(number))
        if zones:
            return zones
        zones = _zones(phone_timezones.time_zones_for_geographical_number(number))
        if zones:
            return zones
    if isinstance(default_zone, ZoneInfo):
        return [default_zone]
    zone = _zone(default_zone)
    if zone is None:
        raise ValueError(f"default_zone {default_zone!r} is not an IANA time zone")
    return [zone]


def _strict_state(number: phonenumbers.PhoneNumber) -> str | None:
    if number.country_code != 1:
        return None
    area_code = str(number.national_number)[:3]
    if area_code in STRICT_AREA_CODES:
        return STRICT_AREA_CODES[area_code]
    # The geocoder says "Florida" for most numbers and "Palm Beach, FL" for some: catch codes the table misses.
    description = geocoder.description_for_number(number, "en")
    for state, (name, _) in STRICT_STATES.items():
        if description == name or description.endswith(f", {state}"):
            return state
    return None


def strict_window_for(phone: str | None, *, region: str | None = None) -> Window | None:
    """The stricter marketing window of the US state the number belongs to, or `None` if no stricter rule applies.

    The state comes from the area code (`STRICT_AREA_CODES`), then from phonenumbers' geocoder description.
    """
    number = _parse(phone, region)
    if number is None:
        return None
    state = _strict_state(number)
    return STRICT_STATES[state][1] if state is not None else None


def allowed_window(
    kind: Literal["marketing", "transactional"],
    phone: str | None,
    marketing: Window = MARKETING_WINDOW,
    transactional: Window = TRANSACTIONAL_WINDOW,
    *,
    region: str | None = None,
) -> Window:
    """The local window a message of this kind may be sent in, after every clamp.

    Marketing: the configured window, kept within 08:00-21:00 and, for numbers in a stricter state, 08:00-20:00.
    Transactional: its own configured window, kept within 08:00-21:00. A configured window that no clamp leaves
    anything of is a `ValueError` (a configuration error, better caught when the config is loaded).
    """
    if kind == "transactional":
        return transactional.clamp(LEGAL_BOUNDS)
    if kind != "marketing":
        raise ValueError(f"unknown message kind {kind!r}: expected 'marketing' or 'transactional'")
    window = marketing.clamp(LEGAL_BOUNDS)
    strict = strict_window_for(phone, region=region)
    return window.clamp(strict) if strict is not None else window


def is_allowed(instant: datetime, zones: list[ZoneInfo], window: Window) -> bool:
    """Whether the local time of `instant` is inside `window` in every one of `zones`."""
    return all(instant.astimezone(zone).time() in window for zone in zones)


def _ceil_minute(instant: datetime) -> datetime:
    floor = instant.replace(second=0, microsecond=0)
    return floor if floor == instant else floor + _MINUTE


def _transitions(zone: ZoneInfo, start: datetime, stop: datetime) -> list[datetime]:
    """UTC instants in `(start, stop]` at which `zone`'s UTC offset changes (tzdb changes on whole seconds).

    Sampled hourly, then bisected to the second: zones do not change their offset twice within an hour.
    """

    def offset_at(seconds: int) -> timedelta | None:
        return datetime.fromtimestamp(seconds, UTC).astimezone(zone).utcoffset()

    found = []
    low_bound, high_bound = math.floor(start.timestamp()), math.ceil(stop.timestamp())
    previous = low_bound
    offset = offset_at(previous)
    while previous < high_bound:
        current = min(previous + 3600, high_bound)
        current_offset = offset_at(current)
        if current_offset != offset:
            low, high = previous, current  # the old offset at low, the new one at high
            while high - low > 1:
                middle = (low + high) // 2
                if offset_at(middle) == current_offset:
                    high = middle
                else:
                    low = middle
            found.append(datetime.fromtimestamp(high, UTC))
        previous, offset = current, current_offset
    return found


def _openings(zone: ZoneInfo, window: Window, start: datetime, stop: datetime) -> set[datetime]:
    """Every UTC instant in `[start, stop]` at which `zone`'s local time may enter `window`.

    Local time enters the window either by reaching `window.start` (on each local day, under either UTC offset
    of an ambiguous or skipped time) or by jumping into it at an offset change.
    """
    first: date = start.astimezone(zone).date() - timedelta(days=1)
    last: date = stop.astimezone(zone).date() + timedelta(days=1)
    openings = set(_transitions(zone, start, stop))
    day = first
    while day <= last:
        for fold in (0, 1):
            local = datetime.combine(day, window.start, tzinfo=zone).replace(fold=fold)
            openings.add(local.astimezone(UTC))
        day += timedelta(days=1)
    return {instant for instant in openings if start <= instant <= stop}


def next_allowed(now_utc: datetime, zones: list[ZoneInfo], window: Window) -> datetime:
    """`now_utc` if it is inside `window` in every zone, else the earliest whole UTC minute after it that is.

    The result is in UTC and at most `SEARCH_HORIZON` (48 h) after `now_utc`. If the zones share no allowed minute
    in that time, raises `NoCommonWindowError` rather than return a minute that is quiet hours somewhere.

    Exact, not stepped: the first allowed minute follows an instant at which some zone's local time enters the
    window (its start on some day, or an offset change), so only those instants are checked.
    """
    if now_utc.tzinfo is None or now_utc.utcoffset() is None:
        raise ValueError("now_utc must be an aware datetime")
    if not zones:
        raise ValueError("at least one zone is needed")
    now = now_utc.astimezone(UTC)
    if is_allowed(now, zones, window):
        return now
    stop = now + SEARCH_HORIZON
    candidates = {now}
    for zone in zones:
        candidates |= _openings(zone, window, now, stop)
    for minute in sorted({_ceil_minute(instant) for instant in candidates}):
        if minute <= stop and is_allowed(minute, zones, window):
            return minute
    names = ", ".join(zone.key for zone in zones)
    raise NoCommonWindowError(
        f"no minute within {SEARCH_HORIZON} of {now.isoformat()} is inside {window.start}-{window.end} "
        f"in all of: {names}"
    )
