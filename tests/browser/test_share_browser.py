"""Share links in a real browser: the embed in an iframe on another origin, the SVG in an img."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from harness.browser import Demo, connect_demo
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def _publish(page: Page) -> str:
    page.get_by_role("button", name="Publish my widget").click()
    link = page.locator("a[href*='/p/']").first
    expect(link).to_be_visible()
    href = link.get_attribute("href") or ""
    match = re.search(r"/p/([A-Za-z0-9_-]+)$", href)
    assert match, href
    return match.group(1)


def test_embed_on_another_origin_updates_and_svg_loads(
    page: Page,
    demo: Demo,
    other_origin: tuple[str, Path],
) -> None:
    """An iframe of /p/{id} on another site follows the music; the SVG card renders in an img."""
    demo.control("users/demo/player/play", {"item": 0, "progress_ms": 1000})
    connect_demo(page, demo)
    public_id = _publish(page)
    origin, folder = other_origin
    (folder / "blog.html").write_text(
        '<!doctype html><title>my blog</title><link rel="icon" href="data:,"><h1>My blog</h1>'
        f'<iframe id="np" src="{demo.base}/p/{public_id}?theme=dark" width="420" height="130"'
        ' title="Now playing"></iframe>'
        f'<p><img id="card" src="{demo.base}/p/{public_id}.svg" alt="Now playing card"></p>',
        encoding="utf-8",
    )
    page.goto(f"{origin}/blog.html")
    frame = page.frame_locator("#np")
    expect(frame.locator(".np__title")).to_have_text("Hoppípolla")
    demo.control("users/demo/player/skip")
    expect(frame.locator(".np__title")).to_have_text('<Intro> & "Outro"', timeout=15_000)
    page.wait_for_function(
        "() => { const i = document.getElementById('card'); "
        "return i && i.complete && i.naturalWidth > 0; }"
    )
    assert page.evaluate("document.getElementById('card').naturalWidth") >= 300


def test_theme_picker_restyles_the_widget_preview_and_snippets(page: Page, demo: Demo) -> None:
    """Picking a look on the owner page: the widget, the card preview and the snippets follow;
    the GitHub <picture> keeps its light and dark sources."""
    demo.control("users/demo/player/play", {"item": 0, "progress_ms": 1000})
    connect_demo(page, demo)
    _publish(page)
    page.get_by_label("Theme of the preview and the snippets").select_option("karaoke")
    widget = page.locator("#np-widget")
    expect(widget).to_have_attribute("data-theme", "karaoke")
    expect(widget).to_have_attribute("data-cover", "square")
    page.get_by_label("Theme of the preview and the snippets").select_option("badge")
    expect(widget).to_have_attribute("data-cover", "none")
    expect(page.locator("img.share-preview")).to_have_attribute("src", re.compile(r"theme=badge$"))
    expect(page.locator("#snip-iframe")).to_have_value(
        re.compile(r'\?theme=badge" width="360" height="28"')
    )
    expect(page.locator("#snip-element")).to_have_value(re.compile('theme="badge"'))
    expect(page.locator("#snip-overlay")).to_have_value(
        re.compile(r"overlay\?theme=badge&fade=10$")
    )
    expect(page.locator("#snip-picture")).to_have_value(
        re.compile(r"theme=dark.*theme=light", re.S)
    )
