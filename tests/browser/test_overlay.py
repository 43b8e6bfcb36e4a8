"""The stream overlay in Chromium: transparent outside the card, no scrollbars, large type,
shown on a track change and faded after N seconds or on pause, a marquee for long titles (still
with reduced motion), and back by itself after the source reloads."""

from __future__ import annotations

import base64
import time

import pytest
from harness.browser import Shared
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.browser

_ALPHA = """async ([png, box]) => {
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const g = canvas.getContext("2d");
  g.drawImage(bitmap, 0, 0);
  const data = g.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const r = box.radius;
  let outside = 0, seen = 0, inside = 0, opaque = 0;
  for (let y = 0; y < bitmap.height; y++) {
    for (let x = 0; x < bitmap.width; x++) {
      const a = data[(y * bitmap.width + x) * 4 + 3];
      const out = x < box.x - 1 || x > box.x + box.width || y < box.y - 1 || y > box.y + box.height;
      const core = x > box.x + r && x < box.x + box.width - r &&
        y > box.y + r && y < box.y + box.height - r;
      if (out) { seen++; if (a !== 0) outside++; }
      if (core) { inside++; if (a === 255) opaque++; }
    }
  }
  return { width: bitmap.width, height: bitmap.height, outside, seen, inside, opaque };
}"""


def _alpha(browser: Browser, png: bytes, box: dict[str, float], radius: float) -> dict[str, int]:
    """Count the screenshot's pixels with alpha > 0 outside ``box``, and opaque ones inside it."""
    scratch = browser.new_page()
    try:
        result: dict[str, int] = scratch.evaluate(
            _ALPHA, [base64.b64encode(png).decode(), {**box, "radius": radius}]
        )
        return result
    finally:
        scratch.close()


@pytest.fixture
def canvas(page: Page) -> Page:
    page.set_viewport_size({"width": 1920, "height": 1080})
    return page


def test_transparent_outside_the_card_without_scrollbars(
    canvas: Page, browser: Browser, shared: Shared
) -> None:
    """On a 1920x1080 canvas every pixel outside the card has alpha 0; the card is opaque."""
    shared.play(0)
    canvas.goto(f"{shared.link}/overlay")
    card = canvas.locator("#np-widget")
    expect(card.locator(".np__title")).to_have_text("Hoppípolla")
    expect(card).to_have_attribute("data-shown", "true")
    expect(card).to_have_css("opacity", "1")
    assert canvas.evaluate(
        "() => [document.documentElement.scrollWidth <= innerWidth,"
        " document.documentElement.scrollHeight <= innerHeight,"
        " getComputedStyle(document.body).overflow]"
    ) == [True, True, "hidden"]
    assert (
        float(card.locator(".np__title").evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))
        >= 40
    )
    box = card.bounding_box()
    assert box is not None
    assert box["x"] < 100 and box["y"] + box["height"] > 1000  # bottom-left by default
    png = canvas.screenshot(omit_background=True)
    rect = {"x": box["x"], "y": box["y"], "width": box["width"], "height": box["height"]}
    counts = _alpha(browser, png, rect, radius=24)
    assert (counts["width"], counts["height"]) == (1920, 1080)
    assert counts["seen"] > 1_500_000
    assert counts["outside"] == 0
    assert counts["opaque"] == counts["inside"] > 50_000


def test_fades_after_n_seconds_and_returns_on_a_track_change(page: Page, shared: Shared) -> None:
    """?fade=5: shown on a track, gone 5 s later (the page's clock), back on the next track."""
    shared.play(2)
    start = time.time()
    page.clock.install(time=start)
    page.clock.pause_at(start + 1)  # the page's time moves only when the test says so
    page.goto(f"{shared.link}/overlay?fade=5")
    card = page.locator("#np-widget")
    expect(card.locator(".np__title")).to_have_text("夜に駆ける")
    expect(card).to_have_attribute("data-shown", "true")
    page.clock.run_for(4000)
    expect(card).to_have_attribute("data-shown", "true")
    page.clock.run_for(1500)
    expect(card).to_have_attribute("data-shown", "false")
    expect(card).to_have_css("opacity", "0")
    shared.control("users/demo/player/skip")
    expect(card.locator(".np__title")).to_have_text("🌙 Moonlight Drive-Thru 🍟", timeout=15_000)
    expect(card).to_have_attribute("data-shown", "true")
    expect(card).to_have_css("opacity", "1")


def test_hidden_while_paused_unless_asked(page: Page, shared: Shared) -> None:
    """A pause hides the card (fade=0 keeps it otherwise); ?paused=show keeps it on pause."""
    shared.play(0)
    page.goto(f"{shared.link}/overlay")
    card = page.locator("#np-widget")
    expect(card).to_have_attribute("data-shown", "true")
    shared.control("users/demo/player/pause")
    expect(card).to_have_attribute("data-state", "paused", timeout=15_000)
    expect(card).to_have_attribute("data-shown", "false")
    page.goto(f"{shared.link}/overlay?paused=show")
    expect(card).to_have_attribute("data-state", "paused")
    expect(card).to_have_attribute("data-shown", "true")
    shared.control("users/demo/player/resume")


def test_long_title_scrolls_and_stays_still_with_reduced_motion(page: Page, shared: Shared) -> None:
    """A title wider than the card gets a marquee; with reduced motion nothing moves."""
    shared.play(10)
    page.goto(f"{shared.link}/overlay?fade=0")
    card = page.locator("#np-widget")
    expect(card).to_contain_class("np--marquee")
    text = card.locator(".np__title > *")
    assert text.evaluate("e => getComputedStyle(e).animationName") == "np-marquee"
    page.emulate_media(reduced_motion="reduce")
    assert text.evaluate("e => getComputedStyle(e).animationName") == "none"
    assert card.evaluate("e => getComputedStyle(e).transitionDuration") == "0s"


def test_recovers_after_the_source_reloads(page: Page, shared: Shared) -> None:
    """OBS reloading the source: the overlay comes back live on its own, on the same track."""
    shared.play(5)
    page.goto(f"{shared.link}/overlay?layout=strip")
    card = page.locator("#np-widget")
    expect(card.locator(".np__title")).to_have_text("لما بدا يتثنى")
    page.reload()
    expect(card.locator(".np__title")).to_have_text("لما بدا يتثنى")
    shared.control("users/demo/player/skip")
    expect(card.locator(".np__title")).to_have_text("Gravel & Grit", timeout=15_000)


def test_card_options_apply_to_the_overlay(page: Page, shared: Shared) -> None:
    """?width= and ?radius= size the overlay's card (its own large default otherwise)."""
    shared.play(0)
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.goto(f"{shared.link}/overlay?width=600&radius=0")
    card = page.locator("#np-widget")
    expect(card.locator(".np__title")).to_have_text("Hoppípolla")
    box = card.bounding_box()
    assert box is not None
    assert box["width"] == 600
    assert card.evaluate("e => getComputedStyle(e).borderTopLeftRadius") == "0px"
    page.goto(f"{shared.link}/overlay")
    expect(card.locator(".np__title")).to_have_text("Hoppípolla")
    box = card.bounding_box()
    assert box is not None
    assert box["width"] == 900
