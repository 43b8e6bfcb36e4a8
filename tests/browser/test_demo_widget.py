"""Demo mode end to end in a real browser: connect, see the widget live, see it change."""

from __future__ import annotations

import re

import pytest
from harness.browser import Demo, connect_demo
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def test_connect_and_see_the_track_with_its_cover(page: Page, demo: Demo) -> None:
    """Connect, Agree, and the widget shows the playing track and its cover art."""
    demo.control("users/demo/player/play", {"item": 0, "progress_ms": 1000})
    connect_demo(page, demo)
    widget = page.locator("#np-widget")
    expect(widget).to_have_attribute("data-state", "playing")
    expect(widget.locator(".np__title")).to_have_text("Hoppípolla")
    expect(widget.locator(".np__artist")).to_have_text("Sigur Rós")
    cover = widget.locator("img.np__cover")
    expect(cover).to_have_attribute("src", re.compile(r"^http://127\.0\.0\.1:\d+/spotify-sim/"))
    page.wait_for_function(
        "() => { const i = document.querySelector('img.np__cover'); "
        "return i && i.complete && i.naturalWidth > 0; }"
    )
    assert "np_session" not in page.evaluate("document.cookie")
    cookies = page.context.cookies()
    session = next(c for c in cookies if c["name"] == "np_session")
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"


def test_widget_moves_to_the_next_track_by_itself(page: Page, demo: Demo) -> None:
    """Near the end of a track, the widget changes to the next one: pushed, not polled."""
    demo.control("users/demo/player/play", {"item": 0, "progress_ms": 1000})
    connect_demo(page, demo)
    title = page.locator("#np-widget .np__title")
    expect(title).to_have_text("Hoppípolla")
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if r.url.endswith("/api/spotify") else None)
    demo.control("users/demo/player/seek", {"progress_ms": 268_000 - 2500})
    expect(title).to_have_text('<Intro> & "Outro"', timeout=15_000)
    assert polls == []  # the change came over the event stream
    assert page.locator("#np-widget script").count() == 0


def test_widget_shows_not_playing(page: Page, demo: Demo) -> None:
    """When playback stops, the widget falls back to "Not playing"."""
    connect_demo(page, demo)
    widget = page.locator("#np-widget")
    expect(widget).to_have_attribute("data-state", re.compile("playing|paused|ad|idle"))
    demo.control("users/demo/player/stop")
    expect(widget).to_have_attribute("data-state", "idle", timeout=15_000)
    expect(widget).to_contain_text("Not playing")


def test_disconnect_returns_to_connect(page: Page, demo: Demo) -> None:
    """Disconnect forgets the account and shows the Connect link again."""
    connect_demo(page, demo)
    page.get_by_role("button", name="Disconnect").click()
    expect(page.get_by_role("link", name="Connect Spotify")).to_be_visible()
