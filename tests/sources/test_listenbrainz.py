"""The ListenBrainz client against the simulated ListenBrainz: the token names its user, playing
now without progress, the rate-limit headers handed back, a 429 as RateLimited, a User-Agent
naming nowplaying on every call; plus the recorded answers parsed as they are."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from harness.helpers import fixture_json

from nowplaying.clock import FakeClock
from nowplaying.models import SourceKind
from nowplaying.simulator.listenbrainz import ListenBrainz
from nowplaying.sources.base import RateLimited
from nowplaying.sources.listenbrainz import ListenBrainzClient, UnknownUser, parse_playing_now

pytestmark = pytest.mark.anyio


@pytest.fixture
async def both(clock: FakeClock) -> AsyncIterator[tuple[ListenBrainz, ListenBrainzClient]]:
    lb = ListenBrainz(clock, limit=3, window=10.0)
    transport = httpx.ASGITransport(app=lb.app)
    async with httpx.AsyncClient(transport=transport) as http:
        yield lb, ListenBrainzClient(http, clock, api_url="http://lb.test")


async def test_a_token_names_its_user(both: tuple[ListenBrainz, ListenBrainzClient]) -> None:
    lb, client = both
    assert await client.validate_token("lb-demo-token") == "demo"
    assert await client.validate_token("nope") is None
    assert all(agent.startswith("nowplaying/") for agent in lb.user_agents)


async def test_playing_now_and_the_allowance(
    both: tuple[ListenBrainz, ListenBrainzClient], clock: FakeClock
) -> None:
    lb, client = both
    idle, allowance = await client.playing_now("demo")
    assert not idle.active and allowance.remaining == 2 and allowance.reset_in == 10
    lb.play("demo", {"artist_name": "A", "track_name": "T", "additional_info": {"duration": 200}})
    playing, allowance = await client.playing_now("demo")
    assert playing.is_playing and playing.source is SourceKind.LISTENBRAINZ
    assert playing.progress_ms is None and playing.item is not None
    assert playing.item.duration_ms == 200_000 and allowance.remaining == 1
    await client.playing_now("demo")
    with pytest.raises(RateLimited) as limited:
        await client.playing_now("demo")
    assert limited.value.retry_after == 10
    await clock.advance(10)
    await client.playing_now("demo")
    with pytest.raises(UnknownUser):
        await client.playing_now("nobody")


def test_the_recorded_answers_parse() -> None:
    playing = parse_playing_now(fixture_json("playing-now.json", "listenbrainz"), 0.0)
    assert playing.item is not None and playing.item.title == "Fade"
    assert playing.item.url is not None
    assert playing.item.url.startswith("https://musicbrainz.org/recording/")
    assert not parse_playing_now(fixture_json("playing-now-idle.json", "listenbrainz"), 0.0).active


def test_playing_now_names_the_releases_cover() -> None:
    """A listen with ``release_mbid`` has the Cover Art Archive's front cover; one without has
    no cover."""
    body = fixture_json("playing-now.json", "listenbrainz")
    info = body["payload"]["listens"][0]["track_metadata"].setdefault("additional_info", {})
    info["release_mbid"] = "76DF3287-6CDA-33EB-8E9A-044B5E15FFDD"
    playing = parse_playing_now(body, 0.0, "http://caa.test")
    assert playing.item is not None
    assert playing.item.image_url == (
        "http://caa.test/release/76df3287-6cda-33eb-8e9a-044b5e15ffdd/front-250"
    )
    del info["release_mbid"]
    assert parse_playing_now(body, 0.0).item.image_url is None  # type: ignore[union-attr]
