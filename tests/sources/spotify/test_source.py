"""Spotify as a Source: the client's reads with the account's token, the neutral errors, and
whether a grant tells history (its scope)."""

from __future__ import annotations

import pytest
from harness.app import Env

from nowplaying.models import Kind
from nowplaying.sources import base
from nowplaying.sources.spotify.oauth import SCOPE_CURRENTLY_PLAYING, SCOPE_RECENTLY_PLAYED

pytestmark = pytest.mark.anyio


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
