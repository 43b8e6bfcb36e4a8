"""Spotify's payloads read: every recorded real one, tolerating what development mode removes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from harness.helpers import FIXTURES, fixture_json
from pydantic import SecretStr

from nowplaying import schema
from nowplaying.clock import FakeClock
from nowplaying.models import Kind
from nowplaying.sources.spotify.client import SpotifyClient
from nowplaying.sources.spotify.errors import BadResponse
from nowplaying.sources.spotify.parsing import parse_currently_playing, parse_recently_played


def test_every_fixture_is_valid_json() -> None:
    """Each recorded payload parses as JSON (guards the copies in tests/fixtures)."""
    names = sorted(p.name for p in FIXTURES.glob("*.json"))
    assert len(names) == 9
    for name in names:
        assert isinstance(fixture_json(name), dict)


def test_track_fixture() -> None:
    """A recorded track: title, artists, widest album image (640x575, not square), URL."""
    np = parse_currently_playing(fixture_json("currently-playing-track.json"), now=100.0)
    assert np.kind is Kind.TRACK and np.item is not None
    assert np.item.title and np.item.artist == "ABBA"
    assert np.item.album == "Arrival"
    assert np.item.image_url == "https://i.scdn.co/image/1cb3d4e9b45c0526655b712e8e7a9154a0367b42"
    assert np.item.url and np.item.url.startswith("https://open.spotify.com/track/")
    assert np.progress_ms == 78810
    assert np.is_playing is False  # the recording is paused: the item is still there
    assert np.timestamp == 100.0


def test_episode_fixture() -> None:
    """A recorded episode: the show stands in for the artist, the episode's own art is used."""
    np = parse_currently_playing(fixture_json("currently-playing-episode.json"), now=1.0)
    assert np.kind is Kind.EPISODE and np.item is not None
    assert np.item.artist == np.item.album
    assert np.item.artist
    assert np.item.image_url == "https://i.scdn.co/image/207663099fe4dab2eafbc2b52813d283e80be07a"
    assert np.item.duration_ms == 8052140


def test_playback_state_fixture() -> None:
    """The ``/me/player`` payload parses with the same reader."""
    np = parse_currently_playing(fixture_json("playback-state.json"), now=1.0)
    assert np.item is not None and np.item.title


def test_recently_played_fixture() -> None:
    """Recently played: every entry becomes a track with a timestamp, newest first."""
    items = parse_recently_played(fixture_json("recently-played.json"))
    raw = fixture_json("recently-played.json")["items"]
    assert len(items) == len(raw) > 0
    assert all(p.item.kind is Kind.TRACK and p.played_at > 1e9 for p in items)


def test_dev_mode_removals_are_tolerated() -> None:
    """Fields removed in development mode (popularity, markets, show.publisher...) are optional."""
    body = fixture_json("currently-playing-episode.json")
    for key in ("available_markets", "popularity", "linked_from", "audio_preview_url"):
        body["item"].pop(key, None)
    body["item"]["show"].pop("publisher", None)
    body["item"]["show"].pop("available_markets", None)
    assert parse_currently_playing(body, now=1.0).item is not None


def test_local_file_and_missing_images() -> None:
    """A local file has no id, no URL and no images: all None, nothing raised."""
    body: dict[str, Any] = {
        "is_playing": True,
        "progress_ms": 1000,
        "currently_playing_type": "track",
        "item": {
            "type": "track",
            "id": None,
            "uri": "spotify:local:Artist:Album:Title:215",
            "name": "Title",
            "artists": [{"name": "Artist"}],
            "album": {"name": "Album", "images": []},
            "external_urls": {},
            "duration_ms": 215000,
            "is_local": True,
        },
    }
    np = parse_currently_playing(body, now=1.0)
    assert np.item is not None and np.item.is_local
    assert (np.item.id, np.item.url, np.item.image_url) == (None, None, None)


def test_ad_and_null_item() -> None:
    """An ad has no item but is still something playing."""
    np = parse_currently_playing(
        {"is_playing": True, "progress_ms": 3000, "item": None, "currently_playing_type": "ad"},
        now=1.0,
    )
    assert np.kind is Kind.AD and np.item is None and np.active
    view = schema.state(np, progress_ms=np.progress_ms, at=None).data()
    assert view == {"isPlaying": True, "type": "ad", "progressMs": 3000}


@pytest.mark.anyio
async def test_non_json_success_is_bad_response() -> None:
    """A 200 whose body is not JSON is a BadResponse, not a crash."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200, text="<")))
    client = SpotifyClient(http, client_id="id", client_secret=SecretStr("s"), clock=FakeClock())
    with pytest.raises(BadResponse):
        await client.currently_playing("t")
