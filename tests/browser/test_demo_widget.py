"""Demo mode end to end in a real browser: connect, see the widget live, see it change."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.request import Request, urlopen

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from nowplaying.config import Settings
from nowplaying.web import create_app
from tests.live_server import free_port, serve

pytestmark = pytest.mark.browser


@dataclass
class Demo:
    base: str

    def control(self, path: str, body: dict[str, object] | None = None) -> object:
        """Drive the demo's simulated Spotify through its control API."""
        data = json.dumps(body or {}).encode()
        req = Request(  # noqa: S310 - loopback URL built by the test
            f"{self.base}/spotify-sim/_control/{path}",
            data=data,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urlopen(req, timeout=5) as response:  # noqa: S310
            return json.loads(response.read() or b"null")

    def state(self) -> dict[str, object]:
        with urlopen(f"{self.base}/spotify-sim/_control/users/demo/player", timeout=5) as r:  # noqa: S310
            result: dict[str, object] = json.loads(r.read())
            return result


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    port = free_port()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        spotify_client_id="",
        spotify_redirect_uri=f"http://127.0.0.1:{port}/callback",
        nowplaying_database_url=f"sqlite:///{tmp_path}/demo.sqlite3",
        nowplaying_poll_seconds=1.0,
    )
    with serve(create_app(settings), port) as base:
        yield Demo(base)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    p = context.new_page()
    errors: list[str] = []
    p.on("console", lambda m: _record(errors, m))
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    yield p
    context.close()
    assert errors == [], f"console errors: {errors}"


def _record(errors: list[str], message: ConsoleMessage) -> None:
    if message.type == "error":
        errors.append(message.text)


def _connect(page: Page, demo: Demo) -> None:
    page.goto(f"{demo.base}/")
    expect(page.get_by_text("Demo mode")).to_be_visible()
    page.get_by_role("link", name="Connect Spotify").click()
    page.get_by_role("button", name="Agree").click()
    page.wait_for_url(f"{demo.base}/")


def test_connect_and_see_the_track_with_its_cover(page: Page, demo: Demo) -> None:
    """Connect, Agree, and the widget shows the playing track and its cover art."""
    demo.control("users/demo/player/play", {"item": 0, "progress_ms": 1000})
    _connect(page, demo)
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
    """Near the end of a track, the widget changes to the next one with no reload."""
    demo.control("users/demo/player/play", {"item": 0, "progress_ms": 1000})
    _connect(page, demo)
    title = page.locator("#np-widget .np__title")
    expect(title).to_have_text("Hoppípolla")
    demo.control("users/demo/player/seek", {"progress_ms": 268_000 - 2500})
    expect(title).to_have_text('<Intro> & "Outro"', timeout=15_000)
    assert page.locator("#np-widget script").count() == 0


def test_widget_shows_not_playing(page: Page, demo: Demo) -> None:
    """When playback stops, the widget falls back to "Not playing"."""
    _connect(page, demo)
    widget = page.locator("#np-widget")
    expect(widget).to_have_attribute("data-state", re.compile("playing|paused|ad|idle"))
    demo.control("users/demo/player/stop")
    expect(widget).to_have_attribute("data-state", "idle", timeout=15_000)
    expect(widget).to_contain_text("Not playing")


def test_disconnect_returns_to_connect(page: Page, demo: Demo) -> None:
    """Disconnect forgets the account and shows the Connect link again."""
    _connect(page, demo)
    page.get_by_role("button", name="Disconnect").click()
    expect(page.get_by_role("link", name="Connect Spotify")).to_be_visible()
