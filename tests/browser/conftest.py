"""Browser tests: Playwright driving Debian's Chromium (``/usr/bin/chromium``).

They skip with a clear message when Chromium is absent, unless NOWPLAYING_REQUIRE_BROWSER=1
(set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.request import Request, urlopen

import httpx
import pytest
from harness.helpers import _FormParser
from harness.live_server import free_port, serve
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, expect, sync_playwright

from nowplaying.config import Settings
from nowplaying.web import create_app

CHROMIUM = os.environ.get("NOWPLAYING_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    reason = _unavailable()
    if reason:
        if os.environ.get("NOWPLAYING_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests required but {reason}")
        pytest.skip(reason)
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    yield b
    b.close()


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
def other_origin(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain static server on another port: another origin, like someone's blog."""
    port = free_port()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", tmp_path
    server.shutdown()
    server.server_close()


def demo_settings(port: int, folder: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        spotify_client_id="",
        spotify_redirect_uri=f"http://127.0.0.1:{port}/callback",
        nowplaying_database_url=f"sqlite:///{folder}/demo.sqlite3",
        nowplaying_poll_seconds=1.0,
    )


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    port = free_port()
    with serve(create_app(demo_settings(port, tmp_path)), port) as base:
        yield Demo(base)


@dataclass
class Shared(Demo):
    """A demo server whose account is connected and published (``public_id``)."""

    public_id: str

    @property
    def link(self) -> str:
        return f"{self.base}/p/{self.public_id}"

    def play(self, item: int, *, paused: bool = False) -> str:
        """Play playlist ``item`` (then pause it) and wait until the public link says so."""
        self.control("users/demo/player/play", {"item": item, "progress_ms": 1000})
        if paused:
            self.control("users/demo/player/pause")
        wanted = self.state()["item"]
        title = wanted["name"] if isinstance(wanted, dict) else ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # a condition, polled: the poller's next answer
            now = httpx.get(f"{self.link}.json", timeout=5).json()
            if now.get("title") == title and now.get("isPlaying") is not paused:
                return str(title)
            time.sleep(0.1)
        raise AssertionError(f"the public link never showed {title!r}")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """One published demo account per module: connected over HTTP (no browser), then published."""
    port = free_port()
    folder = tmp_path_factory.mktemp("shared")
    with serve(create_app(demo_settings(port, folder)), port) as base:
        yield Shared(base, publish_over_http(base))


def publish_over_http(base: str) -> str:
    """/login, the simulator's consent (Agree), /callback, then publish: the public id.

    The cookies are Secure (a browser treats 127.0.0.1 as a secure origin; httpx does not), so
    they are carried by hand.
    """
    with httpx.Client(base_url=base, timeout=10) as http:

        def jar() -> dict[str, str]:
            return {"Cookie": "; ".join(f"{c.name}={c.value}" for c in http.cookies.jar)}

        consent = http.get(http.get("/login").headers["location"], headers=jar())
        form = _FormParser()
        form.feed(consent.text)
        fields = {**form.fields, "decision": "agree", "user": "demo"}
        back = http.post(str(consent.url.join(form.action or "")), data=fields, headers=jar())
        callback = http.get(back.headers["location"], headers=jar())
        assert callback.status_code == 303, callback.text
        published = http.post("/api/account/publish", headers={"Origin": base, **jar()})
        published.raise_for_status()
        public_id: str = published.json()["publicId"]
        return public_id


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


def connect_demo(page: Page, demo: Demo) -> None:
    page.goto(f"{demo.base}/")
    expect(page.get_by_text("Demo mode")).to_be_visible()
    page.get_by_role("link", name="Connect Spotify").click()
    page.get_by_role("button", name="Agree").click()
    page.wait_for_url(f"{demo.base}/")
