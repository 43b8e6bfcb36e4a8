"""The README gallery: one screenshot per theme of the embed, rendered by Chromium.

    .venv/bin/python scripts/gallery.py [--out docs/img]

Starts the demo (simulated Spotify) on a loopback port, connects and publishes its account,
plays the first track and saves ``theme-<name>.png`` for every theme of ``nowplaying.cards.themes``
(``auto`` twice: light and dark system), ``overlay.png`` (the OBS overlay, transparent) and
``owner.png`` (the owner's page with its share panel).
Needs Debian's chromium (``NOWPLAYING_CHROMIUM`` to point elsewhere).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.browser import ARGS, CHROMIUM, Demo, Shared, connect_demo, demo_settings  # noqa: E402
from harness.live_server import free_port, serve  # noqa: E402

from nowplaying.cards.themes import THEMES, Theme  # noqa: E402
from nowplaying.web import create_app  # noqa: E402


def shoot(page: Page, url: str, out: Path) -> None:
    page.goto(url)
    card = page.locator("#np-widget")
    card.locator(".np__title").filter(has_text="Hoppípolla").wait_for()
    page.wait_for_function(
        "() => { const i = document.querySelector('img.np__cover');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    card.screenshot(path=str(out), omit_background=True, animations="disabled")
    print(out.relative_to(ROOT) if out.is_relative_to(ROOT) else out)


def owner_page(browser: Browser, base: str, out: Path) -> Shared:
    """Connect and publish in the browser, and shoot the owner's page with its share panel."""
    context = browser.new_context(viewport={"width": 820, "height": 900}, reduced_motion="reduce")
    page = context.new_page()
    connect_demo(page, Demo(base))
    page.get_by_role("button", name="Publish my widget").click()
    link = page.locator("a[href*='/p/']").first
    link.wait_for()
    demo = Shared(base, (link.get_attribute("href") or "").rsplit("/", 1)[-1])
    demo.play(0)
    page.reload()
    page.locator("#np-widget .np__title").filter(has_text="Hoppípolla").wait_for()
    page.screenshot(path=str(out), full_page=True, animations="disabled")
    print(out.relative_to(ROOT) if out.is_relative_to(ROOT) else out)
    context.close()
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with (
        tempfile.TemporaryDirectory() as folder,
        serve(create_app(demo_settings(port, Path(folder))), port) as base,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        demo = owner_page(browser, base, args.out / "owner.png")
        for scheme in ("light", "dark"):
            context = browser.new_context(
                device_scale_factor=2,
                color_scheme=scheme,
                reduced_motion="reduce",
            )
            page = context.new_page()
            for theme in THEMES:
                if scheme == "dark" and theme is not Theme.AUTO:
                    continue
                name = f"theme-{theme}" + ("-dark" if scheme == "dark" else "")
                # As in an iframe as wide as the SVG card of the same look.
                page.set_viewport_size({"width": THEMES[theme].layout.width, "height": 240})
                shoot(page, f"{demo.link}?theme={theme}", args.out / f"{name}.png")
            context.close()
        context = browser.new_context(viewport={"width": 1280, "height": 300})
        page = context.new_page()
        shoot(page, f"{demo.link}/overlay?theme=karaoke", args.out / "overlay.png")
        browser.close()


if __name__ == "__main__":
    main()
