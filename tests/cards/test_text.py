"""Card text: hostile strings made safe, cut to fit without splitting a character, ages in words."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from nowplaying.cards.text import clean, fit, played_ago, width

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def test_control_characters_and_bidi_overrides_are_dropped() -> None:
    """NUL and other controls (illegal in XML) and unbalanced bidi overrides are removed."""
    assert clean("a\x00b\x1bc\nd\u202eevil\ud800") == "abc devil"
    assert clean("\u2066M83") == "M83"


def test_rtl_and_emoji_are_kept() -> None:
    """Arabic and emoji sequences (joiners included) pass through intact."""
    assert clean("أغنية عربية 🫨") == "أغنية عربية 🫨"
    assert clean("👩‍👩‍👧 فيروز") == "👩‍👩‍👧 فيروز"


def test_anything_but_a_string_is_empty() -> None:
    assert clean(None) == ""
    assert clean(42) == ""


def test_wide_characters_count_double() -> None:
    """CJK takes two units of the budget, joiners and combining marks none."""
    assert width("漢x") == 3
    assert width("e\u0301\u200d") == 1
    assert fit("漢" * 100, 30) == "漢" * 14 + "…"


def test_long_text_is_cut_with_an_ellipsis() -> None:
    assert fit("x" * 200, 30) == "x" * 29 + "…"


def test_text_that_fits_is_left_alone() -> None:
    assert fit("x" * 30, 30) == "x" * 30


def test_a_cut_never_leaves_half_an_emoji() -> None:
    """A cut never ends on a zero-width joiner or half a flag."""
    family = "👩‍👩‍👧"
    cut = fit("x" * 27 + family + "y" * 20, 30)
    assert not cut.removesuffix("…").endswith("\u200d")
    flags = fit("x" * 28 + "🇫🇷🇩🇪" * 5, 30).removesuffix("…")
    assert len(re.findall("[\U0001f1e6-\U0001f1ff]", flags)) % 2 == 0


@pytest.mark.parametrize(
    ("played_at", "label"),
    [
        ("2025-12-31T23:59:30Z", "just now"),
        ("2026-01-01T00:05:00Z", "just now"),
        ("2025-12-31T23:01:00Z", "59 min ago"),
        ("2025-12-31T21:30:00+00:00", "2 h ago"),
        ("2025-12-31T00:00:00.000Z", "yesterday"),
        ("2025-12-29T00:00:00", "3 days ago"),
    ],
)
def test_played_ago_reads_like_the_widget(played_at: str, label: str) -> None:
    """The age as the widget says it (a time without a zone is UTC, one in the future is now)."""
    assert played_ago(datetime.fromisoformat(played_at), NOW) == label
