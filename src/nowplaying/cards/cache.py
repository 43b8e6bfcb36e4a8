"""Rendered SVG cards, kept under everything that determines their bytes (a :class:`CardKey`).

The drawing function is handed only the key, so nothing outside it can shape the bytes. The key
repeats while a track plays because the state is evaluated at the start of a :data:`CARD_STEP`
(:func:`card_clock`): every viewer of one look of one account in a step shares one rendering. A
change of state is another key, so nothing is ever invalidated; when full, the cache drops the
entries of earlier steps first (they cannot match again).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from nowplaying.cards.card import card_etag
from nowplaying.cards.options import CardOptions
from nowplaying.schema import State

CARD_STEP = 1.0
"""Seconds: a card shows playback as of the start of the current step (at most this old)."""
CACHE_MAX = 1024


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
    """The SVG, UTF-8 encoded, as served."""
    etag: str
    """Its strong, quoted ETag (:func:`~nowplaying.cards.card.card_etag`)."""


class CardCache:
    """Rendered cards by :class:`CardKey`; ``counts`` has ``hit`` and ``render``."""

    def __init__(self, max_entries: int = CACHE_MAX) -> None:
        self.max_entries = max_entries
        self._cards: dict[CardKey, RenderedCard] = {}
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

    def __len__(self) -> int:
        return len(self._cards)

    def _evict(self, now: float) -> None:
        for old in [k for k in self._cards if k.now < now]:
            del self._cards[old]
        if len(self._cards) >= self.max_entries:
            self._cards.clear()
