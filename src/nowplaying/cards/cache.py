"""Rendered cards, kept under everything that determines their bytes (a :class:`CardKey`).

The drawing function is handed only the key, so nothing outside it can shape the bytes. The key
repeats while a track plays because the state is evaluated at the start of a :data:`CARD_STEP`
(:func:`card_clock`), so every viewer of one look in a step shares one rendering; a change of
state is another key, so nothing is invalidated. An SVG's PNGs are kept by the SVG's ETag and
drawn once, in a worker process: rasterising costs a thousand times more than drawing the SVG,
and resvg holds the GIL while it draws (a thread would stall the event loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import multiprocessing
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from nowplaying.cards.card import card_etag
from nowplaying.cards.options import CardOptions
from nowplaying.schema import State

CARD_STEP = 1.0
"""Seconds: a card shows playback as of the start of the current step (at most this old)."""
CACHE_MAX = 1024
IMAGES_MAX = 256


class Format(StrEnum):
    """Which image of a card: the SVG, its PNG, or the link-preview PNG (1200x630)."""

    SVG = "svg"
    PNG = "png"
    SOCIAL = "social"


def card_clock(now: float) -> float:
    """The instant a card requested at ``now`` is drawn for: the start of its step."""
    return math.floor(now / CARD_STEP) * CARD_STEP


@dataclass(frozen=True, slots=True)
class CardKey:
    """Everything :func:`~nowplaying.cards.card.render_card` reads: equal keys give equal cards."""

    state: State
    """What the card shows, evaluated at ``now`` (a frozen model, hashed by its values)."""
    params: CardOptions
    """The query's render parameters (a frozen model: hashed and compared by its values)."""
    cover: str | None
    """The cover's ``data:`` URI, or None for the placeholder."""
    now: float
    """The card clock's instant (:func:`card_clock`) the state holds for."""


@dataclass(frozen=True, slots=True)
class RenderedCard:
    body: bytes
    """The image as served (the SVG, UTF-8 encoded, or a PNG)."""
    etag: str
    """Its strong, quoted ETag (:func:`~nowplaying.cards.card.card_etag`)."""


class CardCache:
    """Rendered cards by :class:`CardKey`, and their other formats by SVG; ``counts`` has
    ``hit`` and ``render`` (SVGs), ``image_hit`` and ``image_render``."""

    def __init__(
        self,
        max_entries: int = CACHE_MAX,
        max_images: int = IMAGES_MAX,
        *,
        executor: concurrent.futures.Executor | None = None,
    ) -> None:
        self.max_entries = max_entries
        self.max_images = max_images
        self._cards: dict[CardKey, RenderedCard] = {}
        self._images: OrderedDict[tuple[str, Format], asyncio.Future[RenderedCard]] = OrderedDict()
        self._workers: concurrent.futures.Executor | None = executor
        self._own_workers = executor is None
        self.counts: Counter[str] = Counter()

    def card(self, key: CardKey, draw: Callable[[CardKey], str]) -> RenderedCard:
        """The card for ``key``: remembered, or ``draw(key)`` now (and remembered)."""
        found = self._cards.get(key)
        if found is not None:
            self.counts["hit"] += 1
            return found
        svg = draw(key)
        self.counts["render"] += 1
        rendered = RenderedCard(svg.encode("utf-8"), card_etag(svg))
        if len(self._cards) >= self.max_entries:
            self._evict(key.now)
        self._cards[key] = rendered
        return rendered

    async def image(
        self, svg: RenderedCard, fmt: Format, draw: Callable[[str, str], bytes]
    ) -> RenderedCard:
        """``svg`` in ``fmt``: remembered, or ``draw(svg, fmt)`` in the worker, once."""
        key = (svg.etag, fmt)
        found = self._images.get(key)
        if found is not None:
            self._images.move_to_end(key)
            self.counts["image_hit"] += 1
            return await asyncio.shield(found)
        future: asyncio.Future[RenderedCard] = asyncio.get_running_loop().create_future()
        self._images[key] = future
        while len(self._images) > self.max_images:
            self._images.popitem(last=False)
        self.counts["image_render"] += 1
        try:
            loop = asyncio.get_running_loop()
            text = svg.body.decode("utf-8")
            body = await loop.run_in_executor(self._pool(), draw, text, str(fmt))
        except BaseException as e:  # handed to the waiters too, then raised here
            self._images.pop(key, None)
            if isinstance(e, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(e)
                future.exception()  # retrieved: only the waiters (if any) need it
            raise
        future.set_result(RenderedCard(body, card_etag(body)))
        return future.result()

    def _pool(self) -> concurrent.futures.Executor:
        """The executor given, or one worker process started on the first image ("spawn":
        nothing of this process's threads or sockets is copied into it; ``draw`` must then be
        a module-level function)."""
        if self._workers is None:
            self._workers = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        return self._workers

    def close(self) -> None:
        """Stop the worker process, if one was started here."""
        if self._workers is not None and self._own_workers:
            self._workers.shutdown(wait=True, cancel_futures=True)
            self._workers = None

    def __len__(self) -> int:
        return len(self._cards)

    def _evict(self, now: float) -> None:
        for old in [k for k in self._cards if k.now < now]:
            del self._cards[old]
        if len(self._cards) >= self.max_entries:
            self._cards.clear()
