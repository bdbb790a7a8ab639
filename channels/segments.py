"""How many SMS segments a body costs: GSM-7 160/153 septets, UCS-2 70/67 UTF-16 code units.

Pure functions, no provider involved. A body is GSM-7 when every character is in the GSM 03.38 basic
character set or its extension table (the extension characters ``^ { } \\ [ ~ ] | €`` and form feed take
an escape septet, so 2 septets each); any other character makes the whole body UCS-2.

A body that fits one segment is sent as is (160 septets / 70 code units). A longer one is split into
concatenated segments, each losing room to its user data header (153 septets / 67 code units). Characters
are packed whole: a 2-septet extension character or a 2-unit surrogate pair (an emoji) is never split across
two segments, so it moves to the next one and the count can exceed ``ceil(units / 153)``.

An empty body counts as 1 segment: an empty SMS is still sent, and billed, as one message.
"""

from dataclasses import dataclass
from typing import Final, Literal

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_SINGLE: Final = 160
GSM7_MULTI: Final = 153
UCS2_SINGLE: Final = 70
UCS2_MULTI: Final = 67

# GSM 03.38 basic character set, in code order 0x00-0x7F; 0x1B (escape to the extension table) is left out:
# it is not a character a body can contain.
GSM7_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"  # 0x1B skipped
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# Extension table: each costs the escape septet plus its own.
GSM7_EXTENSION: Final = frozenset("\f^{}\\[~]|€")


@dataclass(frozen=True)
class SegmentCount:
    encoding: Encoding
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int


def encoding(text: str) -> Encoding:
    """GSM-7 when every character is in the GSM 03.38 basic or extension table, else UCS-2."""
    return "GSM-7" if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text) else "UCS-2"


def septets(text: str) -> int:
    """Septets of a GSM-7 body: 1 per basic character, 2 per extension character.

    Raises ValueError for a character GSM-7 cannot carry (such a body is UCS-2).
    """
    return sum(_septets(ch) for ch in text)


def code_units(text: str) -> int:
    """UTF-16 code units of a UCS-2 body: 1 per BMP character, 2 per astral character (a surrogate pair)."""
    return sum(_code_units(ch) for ch in text)


def segments(text: str) -> int:
    """Segments the body is sent as (at least 1, also for an empty body)."""
    return count(text).segments


def count(text: str) -> SegmentCount:
    """Encoding, length in that encoding's units, and segments of an SMS body."""
    enc = encoding(text)
    if enc == "GSM-7":
        costs = [_septets(ch) for ch in text]
        single, multi = GSM7_SINGLE, GSM7_MULTI
    else:
        costs = [_code_units(ch) for ch in text]
        single, multi = UCS2_SINGLE, UCS2_MULTI
    units = sum(costs)
    return SegmentCount(enc, units, 1 if units <= single else _packed(costs, multi))


def _septets(ch: str) -> int:
    if ch in GSM7_BASIC:
        return 1
    if ch in GSM7_EXTENSION:
        return 2
    raise ValueError(f"{ch!r} (U+{ord(ch):04X}) is not in the GSM-7 character set")


def _code_units(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def _packed(costs: list[int], capacity: int) -> int:
    """Segments of ``capacity`` units needed to hold the characters in order, none split across two."""
    used, needed = 0, 1
    for cost in costs:
        if used + cost > capacity:
            used, needed = 0, needed + 1
        used += cost
    return needed
