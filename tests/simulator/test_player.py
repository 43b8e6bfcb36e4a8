"""The playback timeline and the built-in catalog, without HTTP where possible."""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING

import pytest

from nowplaying.clock import FakeClock
from nowplaying.simulator import Player, default_playlist, track
from nowplaying.simulator.player import HISTORY_LIMIT

if TYPE_CHECKING:
    from harness.simulated import SimEnv

pytestmark = pytest.mark.anyio


def cycle_seconds(player: Player) -> float:
    """One loop of the playlist, gaps included (default: a 20 s gap after every 4 items)."""
    playlist = player.playlist
    return float(sum(item["duration_ms"] for item in playlist) / 1000 + 20 * (len(playlist) // 4))


def test_catalog_names_are_hostile() -> None:
    """Markup, quotes, ampersands, CJK, right-to-left text and emoji all appear."""
    names = " ".join(item["name"] for item in default_playlist())
    for needle in ("<", ">", "&", '"', "í", "夜"):
        assert needle in names
    assert any(unicodedata.bidirectional(ch) in ("R", "AL") for ch in names)
    assert any(ord(ch) > 0xFFFF for ch in names)  # an emoji outside the BMP


def test_catalog_has_the_special_items() -> None:
    """One episode, one local file, one explicit track, several multi-artist tracks."""
    playlist = default_playlist()
    assert sum(item["type"] == "episode" for item in playlist) == 1
    assert sum(bool(item.get("is_local")) for item in playlist) == 1
    assert sum(bool(item.get("explicit")) for item in playlist) == 1
    assert sum(len(item.get("artists", [])) > 1 for item in playlist) >= 3
    assert len(playlist) >= 10


def test_catalog_lengths_vary_between_two_and_six_minutes() -> None:
    """Tracks last 2 to about 6 minutes, no two the same."""
    lengths = [item["duration_ms"] for item in default_playlist() if item["type"] == "track"]
    assert min(lengths) >= 120_000
    assert max(lengths) <= 370_000
    assert len(set(lengths)) == len(lengths)


async def test_playlist_loops(sim_clock: FakeClock) -> None:
    """After the last item (and its gap) the first plays again."""
    player = Player(sim_clock)
    await sim_clock.advance(cycle_seconds(player) + 1)
    state = player.state()
    assert (state.index, state.progress_ms) == (0, 1000)


async def test_gaps_can_be_turned_off(sim_clock: FakeClock) -> None:
    """set_gaps(0): items follow each other without silence."""
    player = Player(sim_clock)
    player.set_gaps(0)
    player.play(3)
    await sim_clock.advance(player.playlist[3]["duration_ms"] / 1000 + 1)
    assert player.state().index == 4


async def test_a_year_of_clock_is_walked_quickly(sim_clock: FakeClock) -> None:
    """A huge jump skips whole loops; the history stays bounded and newest first."""
    player = Player(sim_clock)
    await sim_clock.advance(365 * 86400 + 0.5)
    state = player.state()
    assert state.progress_ms is None or state.progress_ms >= 0
    plays = player.history()
    assert len(plays) <= HISTORY_LIMIT
    assert [p.played_at_ms for p in plays] == sorted((p.played_at_ms for p in plays), reverse=True)
    assert plays[0].played_at_ms <= sim_clock.now() * 1000


async def test_paused_player_does_not_advance(sim_clock: FakeClock) -> None:
    """A paused item stays, however long the pause."""
    player = Player(sim_clock)
    player.pause()
    await sim_clock.advance(86400)
    state = player.state()
    assert (state.index, state.progress_ms, state.is_playing) == (0, 0, False)


def test_seek_is_clamped_to_the_item(sim_clock: FakeClock) -> None:
    """Seeking before the start lands at 0."""
    player = Player(sim_clock)
    player.seek(-5)
    assert player.state().progress_ms == 0


def test_play_unknown_item_raises(sim_clock: FakeClock) -> None:
    """play() of something not in the playlist is a KeyError."""
    with pytest.raises(KeyError):
        Player(sim_clock).play("not-an-id")


def test_empty_playlist_is_refused(sim_clock: FakeClock) -> None:
    """A player needs something to play."""
    with pytest.raises(ValueError, match="at least one item"):
        Player(sim_clock).set_playlist([])


def test_history_can_start_empty(sim_clock: FakeClock) -> None:
    """``seed_history=False``: no plays until something finishes."""
    assert Player(sim_clock, seed_history=False).history() == []


async def test_set_playlist_with_compact_items(sim_env: SimEnv) -> None:
    """A custom playlist of compact items is rendered as TrackObjects."""
    sim_env.sim.player("demo").set_playlist([track("Only <One>", ["Solo & Co"], "Single", 60_000)])
    item = (await sim_env.playing()).json()["item"]
    assert (item["name"], item["artists"][0]["name"]) == ("Only <One>", "Solo & Co")


async def test_set_playlist_with_a_recorded_object(sim_env: SimEnv) -> None:
    """A full Spotify TrackObject is served verbatim."""
    recorded = sim_env.recorded("currently-playing-track.json")["item"]
    sim_env.sim.player("demo").set_playlist([recorded])
    assert (await sim_env.playing()).json()["item"] == recorded
