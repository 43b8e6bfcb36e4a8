"""The one theme set: distinct looks, one source for the SVG card and the widget's CSS."""

from __future__ import annotations

import re

from nowplaying.cards.themes import THEMES, Theme, custom_properties, spec, stylesheet


def test_at_least_eight_distinct_themes_besides_auto() -> None:
    """Eight or more named looks, each with its own colours or geometry, plus auto."""
    assert Theme.AUTO in THEMES
    others = [s for t, s in THEMES.items() if t is not Theme.AUTO]
    assert len(others) >= 8
    looks = {(s.palette, s.layout, s.dark) for s in THEMES.values()}
    assert len(looks) == len(THEMES)
    assert list(THEMES) == list(Theme)


def test_auto_follows_the_system() -> None:
    """Auto is light with a dark palette for prefers-color-scheme: dark."""
    auto = spec("auto")
    assert auto.palette == spec(Theme.LIGHT).palette
    assert auto.dark == spec(Theme.DARK).palette


def test_stylesheet_is_generated_from_the_same_palettes() -> None:
    """Every theme gets a rule whose custom properties are its palette's colours and sizes."""
    css = stylesheet()
    for theme, look in THEMES.items():
        rule = f'[data-theme="{theme}"]{{{custom_properties(look.palette, look.layout)}}}'
        assert rule in css
        assert f"--np-bg:{look.palette.bg}" in rule
        assert f"--np-radius-px:{look.layout.radius}px" in rule
    dark = css.split("@media (prefers-color-scheme:dark){", 1)[1]
    assert f'[data-theme="auto"]{{--np-bg:{spec("dark").palette.bg}' in dark
    assert '[data-theme="dark"]' not in dark  # a fixed theme stays as it is
    assert css.count("{") == css.count("}")


def test_custom_selector() -> None:
    """The selector is the caller's: the widget scopes themes to its own element."""
    css = stylesheet(lambda t: f'.np[data-theme="{t}"]')
    assert re.search(r'^\.np\[data-theme="karaoke"\]\{--np-bg:', css, re.M)
