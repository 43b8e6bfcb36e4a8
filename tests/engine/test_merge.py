"""Merging a widget's sources: the most recently started playing wins, the richer of two reports
of one track is kept, and paused or idle never hides playing."""

from __future__ import annotations

from nowplaying.engine.merge import merge, same_track
from nowplaying.models import Item, Kind, NowPlaying, SourceKind

NOW = 1_000_000.0


def state(
    title: str,
    source: SourceKind,
    *,
    playing: bool = True,
    at: float = NOW,
    progress: int | None = None,
    artist: str = "Artist",
) -> NowPlaying:
    item = Item(Kind.TRACK, title, (artist,), None, None, None, 200_000)
    return NowPlaying(playing, Kind.TRACK, item, progress, at, source)


def test_the_most_recently_started_playing_wins() -> None:
    spotify = state("Old", SourceKind.SPOTIFY, at=NOW, progress=60_000)  # started a minute ago
    pushed = state("New", SourceKind.PUSH, at=NOW - 10)  # started ten seconds ago
    assert merge([spotify, pushed], NOW) is pushed
    assert merge([pushed, spotify], NOW) is pushed


def test_the_same_track_keeps_the_report_that_knows_progress() -> None:
    spotify = state("Song", SourceKind.SPOTIFY, at=NOW, progress=30_000)
    lastfm = state("  SONG ", SourceKind.LASTFM, at=NOW, artist="artist")
    assert same_track(spotify, lastfm)
    assert merge([spotify, lastfm], NOW) is spotify
    assert merge([lastfm, spotify], NOW) is spotify


def test_paused_or_idle_never_hides_playing() -> None:
    paused = state("Paused", SourceKind.SPOTIFY, playing=False, at=NOW)
    idle = NowPlaying(is_playing=False, source=SourceKind.LISTENBRAINZ)
    pushed = state("Playing", SourceKind.PUSH, at=NOW - 3000)
    assert merge([paused, idle, pushed], NOW) is pushed
    assert merge([paused, idle], NOW) is paused
    assert merge([idle, None], NOW) is idle
    assert merge([None, None], NOW) is None


def test_accents_and_case_do_not_make_another_track() -> None:
    assert same_track(state("Café", SourceKind.PUSH), state("cafe", SourceKind.LASTFM))
    assert not same_track(state("Cafe", SourceKind.PUSH), state("Cafe 2", SourceKind.LASTFM))


def test_paused_with_progress_outranks_a_report_that_the_same_track_plays() -> None:
    """Spotify paused while Last.fm's now playing of that track has not lapsed: paused; another
    track playing elsewhere still wins."""
    spotify = state("Song", SourceKind.SPOTIFY, playing=False, progress=30_000)
    lastfm = state("Song", SourceKind.LASTFM, at=NOW - 5)
    assert merge([spotify, lastfm], NOW) is spotify
    other = state("Other", SourceKind.LASTFM, at=NOW - 5)
    assert merge([spotify, other], NOW) is other
