"""The demo server a browser test drives: Chromium's path and flags, the demo and its control
API, a published account, signing in over HTTP and in the page (fixtures in tests/browser)."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import httpx
from playwright.sync_api import Page, expect

from harness.helpers import FormParser
from nowplaying.config import Settings

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


def unavailable() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    return None


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


def demo_settings(port: int, folder: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        spotify_client_id="",
        spotify_redirect_uri=f"http://127.0.0.1:{port}/callback",
        nowplaying_database_url=f"sqlite:///{folder}/demo.sqlite3",
        nowplaying_poll_seconds=1.0,
    )


def publish_over_http(base: str) -> str:
    """/login, the simulator's consent (Agree), /callback, then publish: the public id."""
    public_id: str = account_over_http(base)["publicId"]
    return public_id


def account_over_http(base: str) -> dict[str, Any]:
    """/login, the simulator's consent (Agree), /callback, then publish: ``/api/account``."""
    return owner_over_http(base)[0]


def owner_over_http(base: str, login: str = "/login") -> tuple[dict[str, Any], str]:
    """``login`` (``/login?with=recently-played`` asks for the history too), the simulator's
    consent (Agree), /callback, then publish: ``/api/account`` and the owner's ``Cookie`` header.

    The cookies are Secure (a browser treats 127.0.0.1 as a secure origin; httpx does not), so
    they are carried by hand.
    """
    with httpx.Client(base_url=base, timeout=10) as http:

        def jar() -> dict[str, str]:
            return {"Cookie": "; ".join(f"{c.name}={c.value}" for c in http.cookies.jar)}

        consent = http.get(http.get(login).headers["location"], headers=jar())
        form = FormParser()
        form.feed(consent.text)
        fields = {**form.fields, "decision": "agree", "user": "demo"}
        back = http.post(str(consent.url.join(form.action or "")), data=fields, headers=jar())
        callback = http.get(back.headers["location"], headers=jar())
        assert callback.status_code == 303, callback.text
        published = http.post("/api/account/publish", headers={"Origin": base, **jar()})
        published.raise_for_status()
        account: dict[str, Any] = published.json()
        return account, jar()["Cookie"]


def connect_demo(page: Page, demo: Demo) -> None:
    page.goto(f"{demo.base}/")
    expect(page.get_by_text("Demo mode")).to_be_visible()
    page.get_by_role("link", name="Connect Spotify").click()
    page.get_by_role("button", name="Agree").click()
    page.wait_for_url(f"{demo.base}/")
