"""Issue 21's figures: the PNG card's render time per theme (in-process, no cache), and
``/p/ID.png`` and ``/p/ID/social.png`` against ``/p/ID.svg`` through the card cache, requests per
second in the same run (one server process, the load generator of :mod:`bench.throughput`,
rounds alternated).
"""

from __future__ import annotations

import asyncio
import base64
import io
import statistics
import time
from dataclasses import dataclass, field

import httpx
from harness.servers import nowplaying_server, sign_in
from PIL import Image

from bench.throughput import Trial, _trial
from nowplaying.cards import png
from nowplaying.cards.card import render_card
from nowplaying.cards.options import CardOptions
from nowplaying.cards.themes import Theme
from nowplaying.schema import parse_state

ROUNDS = 3
RENDERS = 30
PATHS = (".svg", ".png", "/social.png")


@dataclass
class Result:
    render_ms: dict[str, float] = field(default_factory=dict)
    """Median milliseconds to rasterise each theme's card (PNG at twice its size)."""
    social_ms: float = 0.0
    svg_ms: float = 0.0
    """Median milliseconds to draw the SVG card itself, for scale."""
    served: dict[str, list[Trial]] = field(default_factory=dict)
    """Trials per path suffix, one per round."""

    def rps(self, path: str) -> float:
        return statistics.median(t.rps for t in self.served[path])


def _median_ms(draw: object, times: int = RENDERS) -> float:
    assert callable(draw)
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        draw()
        spent.append(time.perf_counter() - started)
    return statistics.median(spent) * 1000


def _renders(result: Result) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (300, 300), (200, 60, 90)).save(buf, "JPEG")
    cover = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    state = parse_state(
        {
            "isPlaying": True,
            "type": "track",
            "title": "Midnight City",
            "artist": "M83",
            "progressMs": 61_000,
            "durationMs": 240_000,
        }
    )
    for theme in Theme:
        svg = render_card(state, CardOptions(theme=theme), cover=cover, now=0.0)
        result.render_ms[str(theme)] = _median_ms(lambda svg=svg: png.rasterise(svg))
    svg = render_card(state, CardOptions(), cover=cover, now=0.0)
    result.social_ms = _median_ms(lambda: png.social(svg))
    result.svg_ms = _median_ms(lambda: render_card(state, CardOptions(), cover=cover, now=0.0))


async def run() -> Result:
    result = Result()
    await asyncio.to_thread(_renders, result)
    with nowplaying_server(extra_env={"NOWPLAYING_PUBLIC_RATE_PER_SECOND": "0"}) as engine:
        cookie = await sign_in(engine.url)
        async with httpx.AsyncClient(base_url=engine.url, timeout=10) as http:
            published = await http.post(
                "/api/account/publish", headers={"Cookie": cookie, "Origin": engine.url}
            )
            published.raise_for_status()
            public = f"/p/{published.json()['publicId']}"
            for suffix in PATHS:
                if (await http.get(public + suffix)).status_code != 200:
                    raise RuntimeError(f"{public}{suffix} did not answer 200")
        for _ in range(ROUNDS):
            for suffix in PATHS:
                trial = await asyncio.to_thread(_trial, engine, public + suffix, [])
                result.served.setdefault(suffix, []).append(trial)
    return result


def lines(r: Result) -> list[str]:
    renders = sorted(r.render_ms.values())
    out = [
        "10. Shared everywhere (issue 21): PNG cards",
        f"   rasterise one card (resvg, 2x): median {statistics.median(renders):.1f} ms over the"
        f" {len(renders)} themes (min {renders[0]:.1f}, max {renders[-1]:.1f}); the 1200x630"
        f" preview {r.social_ms:.1f} ms; the SVG itself {r.svg_ms:.2f} ms",
        "   served through the card cache (one render per look per step), req/s:",
    ]
    svg = r.rps(".svg")
    for suffix in PATHS:
        rps = r.rps(suffix)
        out.append(f"     /p/ID{suffix:<12}{rps:>9.0f}  ({rps / svg:.2f}x the SVG)")
    out.append("")
    return out
