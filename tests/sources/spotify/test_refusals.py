"""Spotify's development-mode 403s become clear messages: their class, the owner page, the login."""

from __future__ import annotations

import httpx
import pytest
import redis.asyncio as aioredis

from nowplaying.clock import FakeClock
from nowplaying.engine.problems import AccountProblems
from nowplaying.simulator.api import NOT_REGISTERED, OWNER_NOT_PREMIUM
from nowplaying.sources.spotify.client import (
    Forbidden,
    NotRegistered,
    PremiumRequired,
    classify_forbidden,
)
from tests.conftest import Env

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (NOT_REGISTERED, NotRegistered),
        ("user not registered in the developer dashboard", NotRegistered),
        (OWNER_NOT_PREMIUM, PremiumRequired),
        ("Insufficient client scope", Forbidden),
    ],
)
def test_403_texts_are_classified(text: str, kind: type[Forbidden]) -> None:
    error = classify_forbidden(text)
    assert type(error) is kind
    assert error.reason == text


async def _poll_once(env: Env) -> httpx.Response:
    """Have the poller read Spotify again, then load the owner page."""
    await env.services.runtime.hub.forget("demo")
    await env.client.get("/api/spotify")
    return await env.client.get("/")


async def test_premium_lapse_is_told_on_the_owner_page(connected: Env) -> None:
    """The owner's Premium lapses: the page says so and what fixes it; the JSON says so too."""
    page = await _poll_once(connected)
    assert "data-np-refusal" not in page.text
    connected.sim.accounts.clients["cid"].owner_premium = False
    page = await _poll_once(connected)
    assert 'data-np-refusal="premium_required"' in page.text
    assert "needs an active Premium subscription" in page.text
    account = (await connected.client.get("/api/account")).json()
    assert account["spotifyRefusal"]["kind"] == "premium_required"

    connected.sim.accounts.clients["cid"].owner_premium = True
    page = await _poll_once(connected)
    assert "data-np-refusal" not in page.text, "an answer clears the refusal"
    assert (await connected.client.get("/api/account")).json()["spotifyRefusal"] is None


async def test_user_removed_from_user_management_is_told(connected: Env) -> None:
    """The user is taken off the allowlist: 'not under User Management', not a generic error."""
    connected.sim.accounts.clients["cid"].allowlist = frozenset({"someone-else"})
    page = await _poll_once(connected)
    assert 'data-np-refusal="not_registered"' in page.text
    assert "User Management" in page.text


async def test_login_of_an_unregistered_user_says_user_management(env: Env) -> None:
    """The callback's profile read meets the dev-mode 403: the page names User Management."""
    env.sim.accounts.clients["cid"].allowlist = frozenset({"someone-else"})
    response = await env.connect()
    assert response.status_code == 403
    assert "User Management" in response.text


async def test_login_with_owner_without_premium_says_premium(env: Env) -> None:
    env.sim.accounts.clients["cid"].owner_premium = False
    response = await env.connect()
    assert response.status_code == 403
    assert "Premium" in response.text
    assert "User Management" not in response.text


async def test_a_refusal_seen_by_the_polling_instance_shows_on_another(flushed: str) -> None:
    """Through Redis: instance A polls and notes the 403, instance B's owner page loads it;
    A's next answer clears it for B too."""
    clock = FakeClock()
    one, two = aioredis.Redis.from_url(flushed), aioredis.Redis.from_url(flushed)
    polling, serving = AccountProblems(clock, redis=one), AccountProblems(clock, redis=two)
    await polling.note("ana", PremiumRequired(OWNER_NOT_PREMIUM))
    assert serving.get("ana") is None
    await serving.load("ana")
    refusal = serving.get("ana")
    assert refusal is not None and refusal.kind == "premium_required"
    await polling.clear("ana")
    await serving.load("ana")
    assert serving.get("ana") is None
    await one.aclose()
    await two.aclose()


async def test_a_refusal_not_seen_again_is_forgotten_after_its_ttl() -> None:
    clock = FakeClock()
    problems = AccountProblems(clock, ttl=900)
    await problems.note("ana", NotRegistered(NOT_REGISTERED))
    await clock.advance(899)
    assert problems.get("ana") is not None
    await clock.advance(2)
    assert problems.get("ana") is None
