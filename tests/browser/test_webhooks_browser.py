"""The owner page's webhooks: add one (the secret shown once), send a test event, see it
delivered (to a loopback receiver the server is allowed to reach), delete it."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.browser import Demo, connect_demo, demo_settings
from harness.live_server import free_port, serve
from playwright.sync_api import Page, expect

from nowplaying.web import create_app


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    got: list[bytes] = []
    port = free_port()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(self.rfile.read(int(self.headers.get("content-length", "0"))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}/hook", got
    server.shutdown()
    server.server_close()


@pytest.fixture
def hooked_demo(tmp_path: Path) -> Iterator[Demo]:
    port = free_port()
    settings = demo_settings(port, tmp_path).model_copy(
        update={"nowplaying_webhook_allowed_hosts": ["127.0.0.1"]}
    )
    with serve(create_app(settings), port) as base:
        yield Demo(base)


@pytest.mark.browser
def test_owner_adds_tests_and_deletes_a_webhook(
    page: Page, hooked_demo: Demo, receiver: tuple[str, list[bytes]]
) -> None:
    url, got = receiver
    connect_demo(page, hooked_demo)
    page.get_by_label("URL").fill(url)
    page.get_by_role("button", name="Add webhook").click()
    expect(page.locator("#np-hook-secret")).to_contain_text("whsec_")
    expect(page.locator("#np-hooks")).to_contain_text(url)
    page.get_by_role("button", name="Send test event").click()
    expect(page.locator("#np-hooks")).to_contain_text("webhook.test")
    expect(page.locator("#np-hooks")).to_contain_text("delivered", timeout=10_000)
    assert any(b'"webhook.test"' in body for body in got)
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page.locator("#np-hooks")).not_to_contain_text(url)
