"""The real widget in Chromium through a rolling restart: three instances behind one address
(PostgreSQL, Redis, the test balancer) each get SIGTERM and start again; the embed never shows
an error, "Delayed" or reconnect state, and follows a skip made after the roll over its stream.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.cluster import cluster
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Every state the widget shows, as a MutationObserver sees it: data-state, the "Delayed"
# (np--stale) class and the title, recorded whenever one of them changes.
RECORD = """() => {
  const root = document.querySelector('.np[data-endpoint]');
  const shown = (window.__npShown = []);
  const note = () => {
    const s = { state: root.dataset.state, stale: root.classList.contains('np--stale'),
                title: root.querySelector('.np__title').textContent };
    const last = shown[shown.length - 1];
    if (!last || last.state !== s.state || last.stale !== s.stale || last.title !== s.title) {
      shown.push(s);
    }
  };
  note();
  new MutationObserver(note).observe(root, {
    attributes: true, childList: true, subtree: true, characterData: true });
}"""


# The simulator runs as its own plain-http process here: the CSP refuses its http cover art
# (Spotify's CDNs are https; in demo mode the simulator is same-origin), and its consent page
# has no favicon. Those two are the test's set-up, not the widget; everything else counts.
SIM_COVER_BLOCKED = re.compile(
    r"^Loading the image 'http://127\.0\.0\.1:\d+/covers/[^']+' violates"
)


@pytest.fixture
def sim_origin() -> list[str]:
    """Set by the test once the simulator runs."""
    return []


@pytest.fixture
def page(browser: Browser, sim_origin: list[str]) -> Iterator[Page]:
    """The browser conftest's page (every console error, page error and 4xx/5xx fails the
    test), less the two simulator artefacts above."""
    context = browser.new_context()
    p = context.new_page()
    errors: list[str] = []

    def console(m: ConsoleMessage) -> None:
        where = str(m.location.get("url", ""))
        sim_favicon = sim_origin and where == f"{sim_origin[0]}/favicon.ico"
        if m.type == "error" and not SIM_COVER_BLOCKED.match(m.text) and not sim_favicon:
            errors.append(f"{m.text} ({where})")

    p.on("console", console)
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    yield p
    context.close()
    assert errors == [], f"console errors: {errors}"


def _publish(page: Page) -> str:
    page.get_by_role("button", name="Publish my widget").click()
    link = page.locator("a[href*='/p/']").first
    expect(link).to_be_visible()
    match = re.search(r"/p/([A-Za-z0-9_-]+)$", link.get_attribute("href") or "")
    assert match
    return match.group(1)


def test_embed_shows_no_error_through_a_rolling_restart(
    page: Page, sim_origin: list[str], tmp_path: Path
) -> None:
    """Roll three instances under an open embed: only "playing" states, then it follows a skip."""
    with cluster(tmp_path / "logs", instances=3, users=1) as c:
        sim_origin.append(c.sim_url)
        c.control("users/demo/player/play", {"item": 0, "progress_ms": 1000})
        page.goto(f"{c.public}/")
        page.get_by_role("link", name="Connect Spotify").click()
        page.get_by_role("button", name="Agree").click()
        page.wait_for_url(f"{c.public}/")
        public_id = _publish(page)

        events = f"{c.public}/p/{public_id}/events"
        opened: list[float] = []  # the widget's EventSource: each stream answered ...
        ended: list[float] = []  # ... and each stream that ended
        page.on("response", lambda r: opened.append(time.monotonic()) if r.url == events else None)
        for what in ("requestfinished", "requestfailed"):
            page.on(what, lambda r: ended.append(time.monotonic()) if r.url == events else None)
        page.goto(f"{c.public}/p/{public_id}")
        widget = page.locator(".np[data-endpoint]")
        expect(widget.locator(".np__title")).to_have_text("Hoppípolla")
        expect(widget).to_have_attribute("data-state", "playing")
        page.evaluate(RECORD)

        for i in range(3):
            c.restart(i)
            page.wait_for_timeout(500)  # let the page run (Playwright's sync API)
        # Back on a stream after the roll, before the skip: the change must be pushed.
        deadline = time.monotonic() + 10
        while len(opened) != len(ended) + 1 and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert ended, "the roll never ended the widget's stream"
        assert len(opened) == len(ended) + 1, "the widget's stream did not come back"
        page.wait_for_timeout(500)

        polls: list[str] = []
        page.on("request", lambda r: polls.append(r.url) if r.url.endswith(".json") else None)
        c.control("users/demo/player/skip")
        expect(widget.locator(".np__title")).to_have_text('<Intro> & "Outro"', timeout=8_000)
        shown: list[dict[str, Any]] = page.evaluate("window.__npShown")
        page.goto("about:blank")  # leave before the cluster is killed: no stream cut mid-chunk

    restarts = ", ".join(f"{r.instance}: {r.shutdown:.2f}s" for r in c.restarts)
    print(
        f"\nbrowser roll: shutdowns {restarts}; {len(ended)} streams ended and came back;"
        f" shown {shown}"
    )
    assert polls == [], "the change was polled, not pushed"
    assert [s for s in shown if s["state"] != "playing" or s["stale"]] == [], shown
    assert [s["title"] for s in shown] == ["Hoppípolla", '<Intro> & "Outro"']
