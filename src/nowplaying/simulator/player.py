"""One simulated user's playback: a looping playlist laid out on the clock.

Nothing runs in the background: every read first walks forward over the segments (items, silent
gaps, ads) that ended since, recording finished tracks in the listening history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nowplaying.clock import Clock
from nowplaying.simulator.catalog import Item, default_playlist, item_uri

SegmentKind = Literal["item", "gap", "ad"]
HISTORY_LIMIT = 200
SEEDED_HISTORY = 5


@dataclass(frozen=True, slots=True)
class PlayerState:
    """What the player is doing at one instant.

    ``kind`` is ``"track"``, ``"episode"`` or ``"ad"``, or None when nothing plays (a gap, or
    stopped). A private session hides everything from the API but does not stop playback.
    """

    kind: Literal["track", "episode", "ad"] | None
    item: Item | None
    index: int | None
    progress_ms: int | None
    is_playing: bool
    changed_at_ms: int
    private_session: bool
    stopped: bool

    @property
    def visible(self) -> bool:
        """Whether the Web API shows anything (otherwise currently-playing answers 204)."""
        return self.kind is not None and not self.private_session


@dataclass(frozen=True, slots=True)
class Play:
    """One entry of the listening history: a track and when it finished, in epoch ms."""

    item: Item
    played_at_ms: int


@dataclass(slots=True)
class _Segment:
    kind: SegmentKind
    index: int  # the playlist item; for a gap or an ad, the item that plays next
    duration_ms: int


class Player:
    """A user's playback timeline, computed lazily from ``clock``."""

    def __init__(
        self,
        clock: Clock,
        playlist: list[Item] | None = None,
        *,
        gap_every: int = 4,
        gap_ms: int = 20_000,
        seed_history: bool = True,
    ) -> None:
        self._clock = clock
        self._playlist: list[Item] = playlist if playlist is not None else default_playlist()
        if not self._playlist:
            raise ValueError("a playlist needs at least one item")
        self._gap_every = gap_every
        self._gap_ms = gap_ms
        self._segment = _Segment("item", 0, self._duration(0))
        self._anchor = clock.now()  # clock time at which progress was 0 (while playing)
        self._paused_at_ms: int | None = None
        self._stopped = False
        self._private = False
        self._changed_at = self._anchor
        self._history: list[Play] = []  # newest first
        if seed_history:
            self._seed_history()

    # -- reading ---------------------------------------------------------------------------

    @property
    def playlist(self) -> list[Item]:
        """The items the player loops through."""
        return list(self._playlist)

    def state(self) -> PlayerState:
        """What plays now."""
        self._advance()
        seg = self._segment
        progress = self._progress_ms()
        kind: Literal["track", "episode", "ad"] | None = None
        item: Item | None = None
        index: int | None = None
        if self._stopped or seg.kind == "gap":
            pass
        elif seg.kind == "ad":
            kind = "ad"
        else:
            item = self._playlist[seg.index]
            kind = "episode" if item.get("type") == "episode" else "track"
            index = seg.index
        return PlayerState(
            kind=kind,
            item=item,
            index=index,
            progress_ms=progress if kind is not None else None,
            is_playing=kind is not None and self._paused_at_ms is None,
            changed_at_ms=round(self._changed_at * 1000),
            private_session=self._private,
            stopped=self._stopped,
        )

    def history(self) -> list[Play]:
        """Finished tracks, newest first (plays in a private session are left out)."""
        self._advance()
        return list(self._history)

    # -- controls --------------------------------------------------------------------------

    def skip(self) -> None:
        """Start the next item from the beginning."""
        self._advance()
        seg = self._segment
        nxt = seg.index if seg.kind != "item" else (seg.index + 1) % len(self._playlist)
        self._start(nxt)

    def previous(self) -> None:
        """Start the item before the current one from the beginning."""
        self._advance()
        seg = self._segment
        self._start((seg.index - 1) % len(self._playlist))

    def play(self, item: int | str, progress_ms: int = 0) -> None:
        """Play the item at index ``item`` (or with that id or uri) from ``progress_ms``."""
        self._advance()
        self._start(self._find(item), progress_ms)

    def pause(self) -> None:
        """Pause; the item stays, its progress stops moving."""
        self._advance()
        if self._paused_at_ms is None:
            self._paused_at_ms = self._progress_ms()
            self._touch()

    def resume(self) -> None:
        """Resume after :meth:`pause` or :meth:`stop`, from where it was."""
        self._advance()
        if self._paused_at_ms is not None:
            self._anchor = self._clock.now() - self._paused_at_ms / 1000
            self._paused_at_ms = None
        self._stopped = False
        self._touch()

    def stop(self) -> None:
        """Nothing plays (the API answers 204) until :meth:`resume` or :meth:`play`."""
        self.pause()
        self._stopped = True
        self._touch()

    def seek(self, progress_ms: int) -> None:
        """Move within the current segment (clamped to its length)."""
        self._advance()
        progress = max(0, min(progress_ms, self._segment.duration_ms))
        if self._paused_at_ms is not None:
            self._paused_at_ms = progress
        else:
            self._anchor = self._clock.now() - progress / 1000
        self._touch()
        self._advance()

    def play_ad(self, duration_ms: int = 30_000) -> None:
        """Interrupt with an ad of ``duration_ms``; the next item follows it."""
        self._advance()
        seg = self._segment
        nxt = (seg.index + 1) % len(self._playlist) if seg.kind == "item" else seg.index
        self._segment = _Segment("ad", nxt, duration_ms)
        self._restart(0)

    def private_session(self, on: bool) -> None:
        """Private session on or off: while on, the API shows nothing and keeps no history."""
        self._advance()
        self._private = on
        self._touch()

    def set_playlist(self, items: list[Item], *, start: int = 0) -> None:
        """Replace the playlist and start playing item ``start`` from the beginning."""
        if not items:
            raise ValueError("a playlist needs at least one item")
        self._advance()
        self._playlist = list(items)
        self._start(start)

    def set_gaps(self, every: int, gap_ms: int = 20_000) -> None:
        """A silent gap of ``gap_ms`` after every ``every`` items (0 turns gaps off)."""
        self._gap_every = every
        self._gap_ms = gap_ms

    # -- internals -------------------------------------------------------------------------

    def _find(self, key: int | str) -> int:
        if isinstance(key, int):
            if not 0 <= key < len(self._playlist):
                raise KeyError(key)
            return key
        for i, item in enumerate(self._playlist):
            if key in (item.get("id"), item_uri(item)):
                return i
        if key.isdigit():
            return self._find(int(key))
        raise KeyError(key)

    def _duration(self, index: int) -> int:
        return int(self._playlist[index]["duration_ms"])

    def _start(self, index: int, progress_ms: int = 0) -> None:
        self._segment = _Segment("item", index, self._duration(index))
        self._restart(max(0, min(progress_ms, self._segment.duration_ms)))

    def _restart(self, progress_ms: int) -> None:
        self._anchor = self._clock.now() - progress_ms / 1000
        self._paused_at_ms = None
        self._stopped = False
        self._touch()

    def _touch(self) -> None:
        self._changed_at = self._clock.now()

    def _progress_ms(self) -> int:
        if self._paused_at_ms is not None:
            return self._paused_at_ms
        return max(0, round((self._clock.now() - self._anchor) * 1000))

    def _next_segment(self, seg: _Segment) -> _Segment:
        if seg.kind != "item":
            return _Segment("item", seg.index, self._duration(seg.index))
        nxt = (seg.index + 1) % len(self._playlist)
        if self._gap_every > 0 and self._gap_ms > 0 and (seg.index + 1) % self._gap_every == 0:
            return _Segment("gap", nxt, self._gap_ms)
        return _Segment("item", nxt, self._duration(nxt))

    def _cycle_ms(self) -> int:
        total = sum(self._duration(i) for i in range(len(self._playlist)))
        if self._gap_every > 0:
            total += self._gap_ms * (len(self._playlist) // self._gap_every)
        return total

    def _advance(self) -> None:
        if self._paused_at_ms is not None:
            return
        now = self._clock.now()
        # A long jump of the clock: skip whole loops of the playlist (their plays would fall off
        # the bounded history anyway) instead of walking them segment by segment. A loop that does
        # not start at item 0 is not whole, so only jump from there.
        cycle = self._cycle_ms() / 1000
        while True:
            end = self._anchor + self._segment.duration_ms / 1000
            if end > now:
                return
            self._finish(self._segment, end)
            self._segment = self._next_segment(self._segment)
            self._anchor = self._changed_at = end
            if self._segment.kind == "item" and self._segment.index == 0 and cycle > 0:
                loops = int((now - end) // cycle) - 1
                if loops > 0:
                    self._anchor = self._changed_at = end + loops * cycle

    def _finish(self, seg: _Segment, end: float) -> None:
        if seg.kind != "item" or self._private:
            return
        item = self._playlist[seg.index]
        if item.get("type") != "track":
            return
        self._history.insert(0, Play(item, round(end * 1000)))
        del self._history[HISTORY_LIMIT:]

    def _seed_history(self) -> None:
        at = self._clock.now() - 60
        tracks = [item for item in reversed(self._playlist) if item.get("type") == "track"]
        for item in tracks[:SEEDED_HISTORY]:
            self._history.append(Play(item, round(at * 1000)))
            at -= int(item["duration_ms"]) / 1000 + 7
