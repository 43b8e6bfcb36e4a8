"""The rendered-card cache: one rendering per state, look and card-clock step, never a stale one."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import xml.etree.ElementTree as ET

import pytest
from harness.app import ORIGIN, Env

from nowplaying.cards import png
from nowplaying.cards.cache import CARD_STEP, CardCache, CardKey, Format, card_clock
from nowplaying.cards.card import card_etag, render_card
from nowplaying.cards.options import CardOptions
from nowplaying.cards.themes import Theme
from nowplaying.schema import ErrorCode, Nothing, error

pytestmark = pytest.mark.anyio
AUTO = CardOptions()


def _title(svg: str) -> str:
    return "".join(ET.fromstring(svg).find("{http://www.w3.org/2000/svg}title").itertext())  # type: ignore[union-attr]


def test_same_key_draws_once_and_serves_the_same_bytes() -> None:
    cards = CardCache()
    drawn: list[CardKey] = []

    def draw(key: CardKey) -> str:
        drawn.append(key)
        return f"<svg>{key.state.error if hasattr(key.state, 'error') else ''}</svg>"

    key = CardKey(error(ErrorCode.NOT_FOUND), AUTO, None, 100.0)
    first = cards.card(key, draw)
    again = cards.card(CardKey(error(ErrorCode.NOT_FOUND), AUTO, None, 100.0), draw)
    assert drawn == [key]
    assert again == first
    assert first.body == b"<svg>not_found</svg>"
    assert first.etag == card_etag("<svg>not_found</svg>")
    assert cards.counts == {"render": 1, "hit": 1}


@pytest.mark.parametrize(
    "other",
    [
        CardKey(error(ErrorCode.UNAVAILABLE), AUTO, None, 100.0),  # another state
        CardKey(
            error(ErrorCode.NOT_FOUND), CardOptions(theme=Theme.DARK), None, 100.0
        ),  # another look
        CardKey(error(ErrorCode.NOT_FOUND), CardOptions(size="compact"), None, 100.0),  # compact
        CardKey(error(ErrorCode.NOT_FOUND), AUTO, "data:image/png;base64,AA==", 100.0),  # cover
        CardKey(error(ErrorCode.NOT_FOUND), AUTO, None, 101.0),  # the next step
    ],
)
def test_every_part_of_the_key_counts(other: CardKey) -> None:
    cards = CardCache()
    cards.card(CardKey(error(ErrorCode.NOT_FOUND), AUTO, None, 100.0), lambda k: "<svg/>")
    cards.card(other, lambda k: "<svg/>")
    assert cards.counts == {"render": 2}


def test_full_cache_drops_earlier_steps_first() -> None:
    cards = CardCache(max_entries=3)
    idle = Nothing(is_playing=False)
    for look in (Theme.LIGHT, Theme.DARK):
        cards.card(CardKey(idle, CardOptions(theme=look), None, 1.0), lambda k: "<svg/>")
    cards.card(CardKey(idle, AUTO, None, 2.0), lambda k: "<svg/>")
    assert len(cards) == 3
    cards.card(CardKey(idle, CardOptions(theme=Theme.LIGHT), None, 2.0), lambda k: "<svg/>")
    assert len(cards) == 2  # both step-1 cards went, the step-2 ones stayed
    cards.card(CardKey(idle, AUTO, None, 2.0), lambda k: "<svg/>")
    assert cards.counts == {"render": 4, "hit": 1}


def test_card_clock_starts_each_step() -> None:
    assert card_clock(1000.0) == 1000.0
    assert card_clock(1000.0 + CARD_STEP * 0.99) == 1000.0
    assert card_clock(1000.0 + CARD_STEP) == 1000.0 + CARD_STEP


async def _publish(env: Env) -> str:
    response = await env.client.post("/api/account/publish", headers={"Origin": ORIGIN})
    public_id: str = response.json()["publicId"]
    return public_id


async def test_a_flood_in_one_step_renders_once_per_look(connected: Env) -> None:
    """50 light and 50 dark cards in one step (the fake clock stands still): two renderings,
    every card the same bytes."""
    public_id = await _publish(connected)
    await connected.client.get(f"/p/{public_id}.svg")  # the first poll and the cover
    cards = connected.services.cards
    cards.counts.clear()
    paths = [f"/p/{public_id}.svg?theme=light", f"/p/{public_id}.svg?theme=dark"] * 50
    responses = await asyncio.gather(*(connected.client.get(p) for p in paths))
    assert cards.counts == {"render": 2, "hit": 98}
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses[0::2]}) == 1
    assert len({r.content for r in responses[1::2]}) == 1
    assert responses[0].content != responses[1].content
    assert responses[0].headers["etag"] == card_etag(responses[0].text)


async def test_a_new_step_and_a_new_track_redraw(connected: Env) -> None:
    """The card follows the state: the next step is drawn again, a skip shows at once."""
    public_id = await _publish(connected)
    connected.sim.player("demo").play(0, progress_ms=10_000)
    await connected.services.runtime.hub.forget("demo")
    before = (await connected.client.get(f"/p/{public_id}.svg")).text
    cards = connected.services.cards
    renders = cards.counts["render"]
    await connected.clock.advance(CARD_STEP)
    await connected.client.get(f"/p/{public_id}.svg")
    assert cards.counts["render"] == renders + 1  # the next step: drawn for its own instant
    connected.sim.player("demo").skip()
    await connected.services.runtime.hub.forget("demo")  # the next request polls and sees the skip
    after = (await connected.client.get(f"/p/{public_id}.svg")).text
    assert _title(after) != _title(before)
    assert cards.counts["render"] == renders + 2


async def test_an_svg_is_rasterised_once_for_every_concurrent_asker() -> None:
    """Ten viewers asking at once for the PNG of one SVG: one drawing, ten equal answers."""
    cards = CardCache(executor=concurrent.futures.ThreadPoolExecutor(1))
    svg = cards.card(CardKey(error(ErrorCode.NOT_FOUND), AUTO, None, 100.0), lambda _: "<svg/>")
    drawn: list[tuple[str, str]] = []
    gate = threading.Event()

    def rasterise(text: str, fmt: str) -> bytes:
        drawn.append((text, fmt))
        gate.wait(5)
        return b"PNG:" + text.encode()

    askers = [asyncio.ensure_future(cards.image(svg, Format.PNG, rasterise)) for _ in range(10)]
    await asyncio.sleep(0)
    gate.set()
    images = await asyncio.gather(*askers)
    assert drawn == [("<svg/>", Format.PNG)]
    assert {i.body for i in images} == {b"PNG:<svg/>"}
    assert images[0].etag == card_etag(b"PNG:<svg/>")
    assert cards.counts["image_render"] == 1 and cards.counts["image_hit"] == 9
    social = await cards.image(svg, Format.SOCIAL, rasterise)
    assert social.body == b"PNG:<svg/>" and cards.counts["image_render"] == 2


async def test_a_failed_rasterisation_is_not_remembered() -> None:
    cards = CardCache(max_images=1, executor=concurrent.futures.ThreadPoolExecutor(1))
    svg = cards.card(CardKey(error(ErrorCode.NOT_FOUND), AUTO, None, 100.0), lambda _: "<svg/>")

    def broken(text: str, fmt: str) -> bytes:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await cards.image(svg, Format.PNG, broken)
    fine = await cards.image(svg, Format.PNG, lambda text, fmt: b"ok")
    assert fine.body == b"ok" and cards.counts["image_render"] == 2


async def test_the_default_worker_is_a_process_that_draws_real_pngs() -> None:
    """resvg holds the GIL: the default worker is another process (and draws the real thing)."""
    cards = CardCache()
    try:
        key = CardKey(error(ErrorCode.NOT_FOUND), AUTO, None, 100.0)
        svg = cards.card(key, lambda k: render_card(k.state, k.params, cover=k.cover, now=k.now))
        image = await cards.image(svg, Format.PNG, png.draw)
        assert image.body.startswith(b"\x89PNG")
        assert isinstance(cards._workers, concurrent.futures.ProcessPoolExecutor)
    finally:
        cards.close()
