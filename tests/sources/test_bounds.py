"""Every field from a source is bounded: text cut on a grapheme boundary, numbers clamped, URLs
capped and scheme-checked, anything else OutOfBounds (never a traceback further in)."""

from __future__ import annotations

import math

import pytest
import regex
from hypothesis import given
from hypothesis import strategies as st

from nowplaying.sources import bounds

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one grapheme, five code points


def test_ten_megabytes_of_title_are_cut_to_the_documented_length() -> None:
    cut = bounds.text("x" * 10_000_000)
    assert len(cut) == bounds.MAX_TEXT
    assert cut.endswith(bounds.ELLIPSIS)


def test_a_short_text_is_kept_as_it_is() -> None:
    assert bounds.text("Song 2") == "Song 2"
    assert bounds.text(None) == ""
    assert bounds.optional_text("") is None


@given(st.text(min_size=bounds.MAX_TEXT - 20, max_size=bounds.MAX_TEXT + 200))
def test_text_is_cut_on_a_grapheme_boundary(value: str) -> None:
    cut = bounds.text(value)
    assert len(cut) <= bounds.MAX_TEXT
    if cut == value:
        return
    head = cut.removesuffix(bounds.ELLIPSIS)
    assert value.startswith(head)
    # The head ends where one of the whole text's graphemes ends.
    ends = {m.end() for m in regex.finditer(r"\X", value[: len(head) + 50])}
    assert not head or len(head) in ends


def test_an_emoji_sequence_at_the_cut_is_dropped_whole() -> None:
    value = "a" * (bounds.MAX_TEXT - 3) + FAMILY
    assert bounds.text(value) == "a" * (bounds.MAX_TEXT - 3) + bounds.ELLIPSIS


@pytest.mark.parametrize("value", [3, 1.5, ["a"], {"a": 1}, True])
def test_text_of_another_type_is_out_of_bounds(value: object) -> None:
    with pytest.raises(bounds.OutOfBounds):
        bounds.text(value)


@pytest.mark.parametrize(
    ("raw", "duration"),
    [(-5, 0), (10**300, bounds.MAX_DURATION_MS), (1e308, bounds.MAX_DURATION_MS), (None, 0)],
)
def test_a_duration_is_clamped_to_a_day(raw: object, duration: int) -> None:
    assert bounds.duration_ms(raw) == duration


def test_progress_is_clamped_within_its_duration() -> None:
    assert bounds.progress_ms(-1, 1000) == 0
    assert bounds.progress_ms(10**300, 1000) == 1000
    assert bounds.progress_ms(10**300, 0) == bounds.MAX_DURATION_MS
    assert bounds.progress_ms(None, 1000) is None


@pytest.mark.parametrize("value", ["12", True, [1]])
def test_a_number_that_is_none_is_out_of_bounds(value: object) -> None:
    with pytest.raises(bounds.OutOfBounds):
        bounds.duration_ms(value)
    with pytest.raises(bounds.OutOfBounds):
        bounds.progress_ms(value, 1000)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_number_that_is_not_finite_is_unknown(value: float) -> None:
    assert bounds.duration_ms(value) == 0
    assert bounds.progress_ms(value, 1000) is None


@pytest.mark.parametrize(
    "value",
    [
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "//i.scdn.co/image/x",
        "https://" + "a" * bounds.MAX_URL,
        "http://[::1",
        "https:///nohost",
    ],
)
def test_a_url_not_https_or_too_long_is_dropped(value: str) -> None:
    assert bounds.url(value) is None


def test_a_good_url_is_kept() -> None:
    assert bounds.url("https://i.scdn.co/image/ab67") == "https://i.scdn.co/image/ab67"
    with pytest.raises(bounds.OutOfBounds):
        bounds.url(42)


def test_names_are_bounded_in_number_and_length() -> None:
    many = bounds.names(["x" * 1000] * 100 + [None, ""])
    assert len(many) == bounds.MAX_NAMES
    assert all(len(name) == bounds.MAX_TEXT for name in many)
    assert bounds.names([None, "", "A"]) == ("A",)


def test_an_id_too_long_is_dropped() -> None:
    assert bounds.identifier("x" * (bounds.MAX_ID + 1)) is None
    assert bounds.identifier("4uLU6hMCjMI75M1A2tKUQC") == "4uLU6hMCjMI75M1A2tKUQC"


IMF = "Wed, 21 Oct 2015 07:28:00 GMT"
AT_IMF = 1445412480.0


@pytest.mark.parametrize(
    ("value", "date", "seconds"),
    [
        ("120", None, 120.0),
        ("0.5", None, 0.5),
        (IMF, None, 480.0),  # now is 8 minutes earlier
        (IMF, "Wed, 21 Oct 2015 07:27:00 GMT", 60.0),  # the answer's own Date is the reference
        ("Wed, 21 Oct 2015 07:28:00 -0000", None, 480.0),
        ("1" * 300, None, bounds.MAX_RETRY_AFTER),
        (IMF.replace("2015", "2999"), None, bounds.MAX_RETRY_AFTER),
        ("Wed, 21 Oct 2015 07:00:00 GMT", None, 0.0),  # already past
        ("-5", None, 0.0),
        ("Infinity", None, bounds.MAX_RETRY_AFTER),
    ],
)
def test_retry_after_is_read_as_delta_seconds_or_an_http_date_and_bounded(
    value: str, date: str | None, seconds: float
) -> None:
    assert bounds.retry_after(value, now=AT_IMF - 480, date=date) == seconds


@pytest.mark.parametrize("value", [None, "", "nan", "soon", "Foo, 99 Bar 2015 99:99:99 GMT"])
def test_an_unreadable_retry_after_is_the_default_never_nan(value: str | None) -> None:
    assert bounds.retry_after(value, now=0.0, default=3.0) == 3.0


def test_an_http_date_with_nothing_to_count_from_is_the_default() -> None:
    assert bounds.retry_after(IMF, default=3.0) == 3.0


@given(st.text(max_size=64))
def test_retry_after_is_always_a_bounded_number(value: str) -> None:
    seconds = bounds.retry_after(value, now=1_767_225_600.0)
    assert 0.0 <= seconds <= bounds.MAX_RETRY_AFTER
