"""The Last.fm client against the simulated Last.fm (an independent reading of the contract):
now playing as the extra first item, no progress, the placeholder dropped, the errors in the
neutral tree, and the signed session exchange; plus the recorded shapes parsed as they are."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from harness.helpers import fixture_json

from nowplaying.clock import FakeClock
from nowplaying.models import SourceKind
from nowplaying.simulator.lastfm import LastFm, Scrobble
from nowplaying.sources.base import RateLimited
from nowplaying.sources.lastfm import (
    KeyRefused,
    LastFmClient,
    Private,
    TokenRefused,
    UnknownUser,
    parse_recent,
)

pytestmark = pytest.mark.anyio
COVER = "7c9c4d1009514b178c82f2201e3a1fce"


@pytest.fixture
async def both(clock: FakeClock) -> AsyncIterator[tuple[LastFm, LastFmClient]]:
    fm = LastFm(clock)
    transport = httpx.ASGITransport(app=fm.app)
    async with httpx.AsyncClient(transport=transport) as http:
        client = LastFmClient(
            http, clock, api_key="lfkey", api_secret="lfsecret", api_url="http://lastfm.test/2.0/"
        )
        yield fm, client


async def test_now_playing_has_no_progress_and_the_last_scrobble(
    both: tuple[LastFm, LastFmClient],
) -> None:
    fm, client = both
    fm.scrobble(
        "demo", Scrobble("Tame Impala", "Endors Toi", "Lonerism", image=COVER), at=1603186824
    )
    fm.play("demo", Scrobble("Tame Impala", "Apocalypse Dreams", "Lonerism"))
    playing, last = await client.now_playing("demo")
    assert playing.is_playing and playing.source is SourceKind.LASTFM
    assert playing.progress_ms is None and playing.item is not None
    assert (playing.item.title, playing.item.artist, playing.item.album) == (
        "Apocalypse Dreams",
        "Tame Impala",
        "Lonerism",
    )
    assert playing.item.image_url is None  # the blank placeholder is no cover
    assert playing.item.url == "https://www.last.fm/music/Tame+Impala/_/Apocalypse+Dreams"
    assert last is not None and last.played_at == 1603186824
    assert last.item.image_url is not None and COVER in last.item.image_url
    assert fm.calls["user.getrecenttracks"] == 1


async def test_nothing_playing_is_idle(both: tuple[LastFm, LastFmClient]) -> None:
    _fm, client = both
    playing, last = await client.now_playing("demo")
    assert not playing.is_playing and not playing.active and last is None


async def test_errors_map_to_the_neutral_tree(both: tuple[LastFm, LastFmClient]) -> None:
    fm, client = both
    fm.add_user("hidden", private=True)
    with pytest.raises(Private) as private:
        await client.now_playing("hidden")
    assert "privacy" in private.value.fix
    with pytest.raises(UnknownUser):
        await client.now_playing("nobody")
    fm.calls_per_second = 0
    with pytest.raises(RateLimited):
        await client.now_playing("demo")
    fm.calls_per_second = None
    fm.suspended.add("lfkey")
    with pytest.raises(KeyRefused):
        await client.now_playing("demo")


async def test_a_signed_session_exchange(both: tuple[LastFm, LastFmClient]) -> None:
    fm, client = both
    token = fm.issue_token("lfkey")
    with pytest.raises(TokenRefused):
        await client.session(token)  # not allowed yet
    fm.authorize(token, "demo")
    name, key = await client.session(token)
    assert name == "demo" and fm.sessions[key] == "demo"


def test_the_recorded_answers_parse() -> None:
    """The documentation's own answers: idle, and playing (two items for limit=1)."""
    idle, last = parse_recent(fixture_json("recenttracks-idle.json", "lastfm"), 0.0)
    assert not idle.active and last is not None and last.item.id is not None
    playing, last = parse_recent(fixture_json("recenttracks-nowplaying.json", "lastfm"), 0.0)
    assert playing.item is not None and playing.item.title == "Apocalypse Dreams"
    assert last is not None and last.item.image_url is None  # its art is the placeholder


def test_a_single_item_object_is_read_as_a_list() -> None:
    body = fixture_json("recenttracks-nowplaying.json", "lastfm")
    body["recenttracks"]["track"] = body["recenttracks"]["track"][0]
    playing, _ = parse_recent(body, 0.0)
    assert playing.is_playing
