"""Spotify as a Source: the client's reads with the account's token, the neutral errors, and
whether a grant tells history (its scope)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from harness.app import Env

from nowplaying.models import Kind
from nowplaying.sources import base
from nowplaying.sources.spotify.errors import EndpointRemoved
from nowplaying.sources.spotify.oauth import SCOPE_CURRENTLY_PLAYING, SCOPE_RECENTLY_PLAYED
from nowplaying.sources.spotify.source import SpotifySource

pytestmark = pytest.mark.anyio
T = TypeVar("T")


async def test_reads_what_plays_and_what_played(connected: Env) -> None:
    await connected.connect(login_path="/login?with=recently-played")
    source = connected.services.runtime.source
    connected.sim.player("demo").play(0)
    playing = await source.now_playing("demo")
    assert playing.is_playing and playing.kind is Kind.TRACK and playing.item is not None
    played = await source.recently_played("demo", 3)
    assert 1 <= len(played) <= 3
    assert played == sorted(played, key=lambda p: p.played_at, reverse=True)


async def test_a_revoked_grant_is_the_neutral_reconnect_required(connected: Env) -> None:
    connected.sim.revoke("demo")
    connected.sim.expire_access_tokens()
    await connected.services.runtime.tokens.drop("demo")
    with pytest.raises(base.ReconnectRequired):
        await connected.services.runtime.source.now_playing("demo")


async def test_history_needs_the_recently_played_scope(connected: Env) -> None:
    source = connected.services.runtime.source
    assert source.tells_history(frozenset({SCOPE_CURRENTLY_PLAYING, SCOPE_RECENTLY_PLAYED}))
    assert not source.tells_history(frozenset({SCOPE_CURRENTLY_PLAYING}))


async def test_an_endpoint_removed_for_the_app_is_disabled_not_a_pause(connected: Env) -> None:
    """Spotify's third 429 (the simulator's removed endpoint): the first pauses as the window's
    would; the second, with currently-playing answered in between, disables recently-played
    (no call is made for it again) while currently-playing goes on."""
    await connected.connect(login_path="/login?with=recently-played")
    source = connected.services.runtime.source
    assert isinstance(source, SpotifySource)
    connected.sim.limits.removed = frozenset({"recently-played"})
    await source.now_playing("demo")
    with pytest.raises(base.RateLimited):
        await source.recently_played("demo", 1)
    await waited(connected, source.now_playing("demo"))  # the budget honours Retry-After
    with pytest.raises(EndpointRemoved):
        await waited(connected, source.recently_played("demo", 1))
    calls = connected.sim.calls["recently-played"]
    with pytest.raises(EndpointRemoved) as again:
        await source.recently_played("demo", 1)
    assert connected.sim.calls["recently-played"] == calls  # disabled: not asked again
    assert isinstance(again.value, base.Refused)
    await waited(connected, source.now_playing("demo"))  # what plays is still read
    assert source.removals.removed == {"recently-played"}
    assert connected.sim.limits.counts["removed_429"] == 2


async def test_the_window_and_the_quota_are_never_taken_for_a_removal(connected: Env) -> None:
    """A 429 without reason on an endpoint that has answered is the window's, however often;
    one with QUOTA_EXCEEDED is the quota's."""
    source = connected.services.runtime.source
    assert isinstance(source, SpotifySource)
    await source.now_playing("demo")
    connected.sim.limits.configure(window_calls=0, daily_quota=None)
    for _ in range(3):
        with pytest.raises(base.RateLimited) as window:
            await waited(connected, source.now_playing("demo"))
        assert not window.value.quota
    connected.sim.limits.configure(window_calls=None, daily_quota=0)
    with pytest.raises(base.RateLimited) as quota:
        await waited(connected, source.now_playing("demo"))
    assert quota.value.quota
    assert not source.removals.removed


async def waited(env: Env, read: Coroutine[Any, Any, T]) -> T:
    """``read``, the app's clock moved a second at a time while it waits (for the call budget
    to have room again after a 429), at most ten minutes of it."""
    task = asyncio.ensure_future(read)
    for _ in range(600):
        if task.done():
            break
        await env.clock.advance(1)
    return await task
