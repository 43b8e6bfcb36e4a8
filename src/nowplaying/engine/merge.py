"""One widget, several sources: which one's state viewers see.

The most recently started "playing" wins; when two sources play the same track (title and
artist, normalised), the richer one is kept (one that knows progress, Spotify's, over one that
does not); a paused or idle source never hides one that plays, but a source that knows
progress saying a track is paused outranks one that only says the same track plays.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from nowplaying.models import NowPlaying


def merge(states: Iterable[NowPlaying | None], now: float) -> NowPlaying | None:
    """What the widget shows of its sources' ``states`` (None: a source with no data yet),
    listed oldest news first: on a tie the later one wins."""
    known = [s for s in states if s is not None]
    # A source that knows progress and says a track is paused outranks one that only says it
    # plays (Spotify paused while Last.fm's "now playing" of the same track has not lapsed).
    paused = [s for s in known if s.active and not s.is_playing and s.progress_ms is not None]
    playing = [
        s
        for s in known
        if s.is_playing
        and s.active
        and (s.progress_ms is not None or not any(same_track(s, p) for p in paused))
    ]
    if playing:
        best = playing[0]
        for state in playing[1:]:
            if started(state, now) >= started(best, now):
                best = state
        same = [s for s in playing if same_track(s, best)]
        return max(same, key=lambda s: (s.progress_ms is not None, started(s, now)))
    shown = [s for s in known if s.active]
    if shown:
        return max(shown, key=lambda s: s.timestamp)
    return known[0] if known else None


def started(state: NowPlaying, now: float) -> float:
    """When the item began playing, as far as the state tells (its timestamp less progress)."""
    return state.timestamp - (state.progress_ms or 0) / 1000


def same_track(a: NowPlaying, b: NowPlaying) -> bool:
    """The same title and artist, whatever the case, accents or spacing."""
    if a.item is None or b.item is None:
        return a.item is b.item
    return _key(a.item.title, a.item.artist) == _key(b.item.title, b.item.artist)


def _key(title: str, artist: str) -> tuple[str, str]:
    def norm(text: str) -> str:
        decomposed = unicodedata.normalize("NFKD", text.casefold())
        return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())

    return norm(title), norm(artist)
