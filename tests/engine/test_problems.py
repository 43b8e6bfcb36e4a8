"""An upstream's refusals of an account, kept for the owner page: shared through Redis, forgotten
after their TTL."""

from __future__ import annotations

import pytest

from nowplaying.clock import FakeClock
from nowplaying.coord.link import RedisLink
from nowplaying.engine.problems import AccountProblems
from nowplaying.simulator.api import NOT_REGISTERED, OWNER_NOT_PREMIUM
from nowplaying.sources.spotify.errors import EndpointRemoved, NotRegistered, PremiumRequired

pytestmark = pytest.mark.anyio


async def test_a_refusal_seen_by_the_polling_instance_shows_on_another(flushed: str) -> None:
    """Through Redis: instance A polls and notes the 403, instance B's owner page loads it;
    A's next answer clears it for B too."""
    clock = FakeClock()
    one, two = RedisLink(flushed, clock=clock), RedisLink(flushed, clock=clock)
    polling, serving = AccountProblems(clock, link=one), AccountProblems(clock, link=two)
    await polling.note("ana", PremiumRequired(OWNER_NOT_PREMIUM))
    assert serving.get("ana") is None
    await serving.load("ana")
    refusal = serving.get("ana")
    assert refusal is not None and refusal.kind == "premium_required"
    await polling.clear("ana")
    await serving.load("ana")
    assert serving.get("ana") is None
    await one.close()
    await two.close()


async def test_a_refusal_not_seen_again_is_forgotten_after_its_ttl() -> None:
    clock = FakeClock()
    problems = AccountProblems(clock, ttl=900)
    await problems.note("ana", NotRegistered(NOT_REGISTERED))
    await clock.advance(899)
    assert problems.get("ana") is not None
    await clock.advance(2)
    assert problems.get("ana") is None


async def test_a_withdrawn_read_noted_by_one_instance_shows_on_another(flushed: str) -> None:
    """Spotify's removed endpoint met by the polling instance is on every instance's owner page
    (through Redis), and never cleared by an answer for an account."""
    clock = FakeClock()
    one, two = RedisLink(flushed, clock=clock), RedisLink(flushed, clock=clock)
    polling, serving = AccountProblems(clock, link=one), AccountProblems(clock, link=two)
    assert await polling.withdrawn(EndpointRemoved("recently-played"))
    assert not await polling.withdrawn(EndpointRemoved("recently-played")), "known: not news"
    assert serving.withdrawals() == []
    await serving.load("ana")
    await serving.clear("ana")
    [shared] = serving.withdrawals()
    assert shared.what == "recently-played" and "recently-played card" in shared.disabled
    await one.close()
    await two.close()
