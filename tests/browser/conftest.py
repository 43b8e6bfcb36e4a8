"""Browser tests: Playwright driving Debian's Chromium (``/usr/bin/chromium``).

They skip with a clear message when Chromium is absent, unless NOWPLAYING_REQUIRE_BROWSER=1
(set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from harness.browser import (
    ARGS,
    CHROMIUM,
    Demo,
    Shared,
    demo_settings,
    publish_over_http,
    unavailable,
)
from harness.live_server import free_port, serve
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from nowplaying.web import create_app


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    reason = unavailable()
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


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    port = free_port()
    with serve(create_app(demo_settings(port, tmp_path)), port) as base:
        yield Demo(base)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """One published demo account per module: connected over HTTP (no browser), then published."""
    port = free_port()
    folder = tmp_path_factory.mktemp("shared")
    with serve(create_app(demo_settings(port, folder)), port) as base:
        yield Shared(base, publish_over_http(base))


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
