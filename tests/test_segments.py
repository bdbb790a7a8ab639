"""SMS segment counting: known boundaries, the GSM 03.38 table, and a property test against a reference packer."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.segments import SegmentCount, count, encoding, segments, septets

EMOJI = "😀"  # U+1F600: a surrogate pair, 2 UTF-16 code units
UCS2 = "ê"  # one UTF-16 code unit, not in GSM-7


@pytest.mark.parametrize(
    ("length", "expected"),
    [(0, 1), (1, 1), (153, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_boundaries(length: int, expected: int):
    assert count("a" * length) == SegmentCount("GSM-7", length, expected)


@pytest.mark.parametrize(
    ("length", "expected"),
    [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)],
)
def test_ucs2_boundaries(length: int, expected: int):
    assert count(UCS2 * length) == SegmentCount("UCS-2", length, expected)


def test_empty_body_is_one_gsm7_segment():
    assert count("") == SegmentCount("GSM-7", 0, 1)


def test_extension_character_counts_two_septets():
    assert septets("€") == 2
    assert septets("a{b}") == 6
    assert count("€" * 80) == SegmentCount("GSM-7", 160, 1)  # still fits a single segment


def test_extension_character_is_not_split_across_segments():
    # 152 + 2 = 154 septets: "€" would straddle the 153-septet boundary, so it opens segment 2.
    assert count("a" * 152 + "€" + "a" * 152) == SegmentCount("GSM-7", 306, 3)
    # 151 + 2 = 153: it fits exactly at the end of segment 1.
    assert count("a" * 151 + "€" + "a" * 153) == SegmentCount("GSM-7", 306, 2)
    # 153 plain then "€": it starts segment 2 cleanly.
    assert count("a" * 153 + "€" + "a" * 151) == SegmentCount("GSM-7", 306, 2)


def test_surrogate_pair_is_not_split_across_segments():
    # 66 + 2 units: the emoji would straddle the 67-unit boundary, so it opens segment 2.
    assert count(UCS2 * 66 + EMOJI + UCS2 * 66) == SegmentCount("UCS-2", 134, 3)
    # 65 + 2 = 67: fits exactly at the end of segment 1.
    assert count(UCS2 * 65 + EMOJI + UCS2 * 67) == SegmentCount("UCS-2", 134, 2)
    assert count(EMOJI * 35) == SegmentCount("UCS-2", 70, 1)
    assert count(EMOJI * 36) == SegmentCount("UCS-2", 72, 2)  # 33 per segment (66 units)


def test_one_non_gsm_character_makes_the_whole_body_ucs2():
    body = "a" * 100 + EMOJI
    assert count(body) == SegmentCount("UCS-2", 102, 2)
    assert segments("a" * 100) == 1


@pytest.mark.parametrize("ch", list("éèùìòÇØøÅåÄÖÑÜßÉÆæäöñüà@£$¥¤§¡¿_ΔΦΓΛΩΠΨΣΘΞ\n\r"))
def test_gsm7_basic_characters(ch: str):
    assert encoding(ch) == "GSM-7"
    assert septets(ch) == 1


@pytest.mark.parametrize("ch", list("^{}\\[~]|€\f"))
def test_gsm7_extension_characters(ch: str):
    assert encoding(ch) == "GSM-7"
    assert septets(ch) == 2


# Smart quotes, ellipsis, dashes and no-break spaces come from word processors and are the usual reason a body
# silently switches to UCS-2. ESC (0x1B) is the table's escape code, not a character a body can contain.
SMART_PUNCTUATION = ["\u2018", "\u2019", "\u201c", "\u201d", "\u2026", "\u2013", "\u2014", "\u00a0"]


@pytest.mark.parametrize("ch", [*"êâîôûçÀÈÍóúíá`ÂœŒ\t\x1b", *SMART_PUNCTUATION, EMOJI])
def test_not_gsm7(ch: str):
    assert encoding(ch) == "UCS-2"
    with pytest.raises(ValueError):
        septets(ch)


# --- property test against a straightforward reference packer --------------------------------------------

EXTENSION = "^{}\\[~]|€\f"


def reference_chunks(text: str) -> list[str]:
    """Split the body as a phone would: whole characters, greedily, into the segments it is sent as."""
    gsm = encoding(text) == "GSM-7"

    def cost(s: str) -> int:
        if gsm:
            return sum(2 if ch in EXTENSION else 1 for ch in s)
        return len(s.encode("utf-16-le")) // 2

    if cost(text) <= (160 if gsm else 70):
        return [text]
    capacity = 153 if gsm else 67
    chunks = [""]
    for ch in text:
        if cost(chunks[-1] + ch) > capacity:
            chunks.append("")
        chunks[-1] += ch
    return chunks


bodies = st.text(
    alphabet=st.one_of(
        st.sampled_from("aZ0 .é€{}[]\\|~^\f"),  # GSM-7, basic and extension
        st.sampled_from([UCS2, EMOJI, "中", "\U0001f1eb"]),  # UCS-2, BMP and astral
        st.characters(codec="utf-8"),
    ),
    max_size=500,
)
gsm_bodies = st.text(alphabet=st.sampled_from("ab €{}^"), max_size=500)
# Hypothesis draws mostly short strings: pad to reach the 153/67 boundaries, where packing differs from ceil().
padded = st.builds(
    lambda pad, n, tail: pad * n + tail,
    st.sampled_from(["a", "€", "a€", UCS2, EMOJI, UCS2 + EMOJI]),
    st.integers(0, 330),
    st.one_of(bodies, gsm_bodies),
)
any_body = st.one_of(bodies, gsm_bodies, padded)


@settings(max_examples=300, deadline=None)
@given(any_body)
def test_segments_match_reference_packer(text: str):
    chunks = reference_chunks(text)
    assert "".join(chunks) == text
    assert segments(text) == len(chunks)


@settings(max_examples=300, deadline=None)
@given(any_body, any_body)
def test_appending_never_lowers_segments(a: str, b: str):
    assert segments(a + b) >= segments(a)
