"""A track from another source in the live widget, in Chromium: the label names it, the brand
beside the dot no longer says "Spotify", and no progress bar is drawn when progress is unknown."""

from __future__ import annotations

import httpx
import pytest
from harness.browser import Demo, account_over_http
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def test_a_pushed_track_names_its_source(page: Page, demo: Demo) -> None:
    account = account_over_http(demo.base)
    page.goto(f"{demo.base}/p/{account['publicId']}")
    widget = page.locator("#np-widget")
    expect(widget.locator(".np__brand")).to_have_text("Spotify")
    listen = {"track_metadata": {"artist_name": "Any Player", "track_name": "Pushed Song"}}
    sent = httpx.post(
        f"{demo.base}/1/submit-listens",
        json={"listen_type": "playing_now", "payload": [listen]},
        headers={"Authorization": f"Token {account['pushToken']}"},
        timeout=10,
    )
    assert sent.json() == {"status": "ok"}
    expect(widget.locator(".np__title")).to_have_text("Pushed Song", timeout=15_000)
    expect(widget.locator(".np__label")).to_have_text("Now playing · from a player")
    expect(widget.locator(".np__brand")).to_have_text("")
    expect(widget.locator(".np__progress")).to_be_hidden()
