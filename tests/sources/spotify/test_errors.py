"""Spotify's errors: each under its source-neutral kind, and the development-mode 403s told
apart (their class, the owner page, the login)."""

from __future__ import annotations

import httpx
import pytest
from harness.app import Env

from nowplaying.simulator.api import NOT_REGISTERED, OWNER_NOT_PREMIUM
from nowplaying.sources import base
from nowplaying.sources.spotify import errors
from nowplaying.sources.spotify.errors import (
    Forbidden,
    NotRegistered,
    PremiumRequired,
    classify_forbidden,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("error", "neutral"),
    [
        (errors.InvalidGrant("revoked"), base.ReconnectRequired),
        (errors.ReconnectRequired("gone"), base.ReconnectRequired),
        (errors.NotRegistered(NOT_REGISTERED), base.Refused),
        (errors.RateLimited(30, "QUOTA_EXCEEDED"), base.RateLimited),
        (errors.SpotifyUnavailable("503"), base.Unavailable),
        (errors.BadResponse("not JSON"), base.BadResponse),
        (errors.MissingRefreshToken("none"), base.Unavailable),
        (errors.InvalidClient("wrong secret"), base.SourceError),
    ],
)
def test_every_spotify_error_is_its_neutral_kind(
    error: errors.SpotifyError, neutral: type[base.SourceError]
) -> None:
    """The engine catches the neutral tree only: each Spotify error is one of its kinds."""
    assert isinstance(error, neutral)
    assert error.response is None


def test_rate_limited_keeps_retry_after_reason_and_the_quota() -> None:
    quota = errors.RateLimited(7200, "QUOTA_EXCEEDED")
    window = errors.RateLimited(3)
    assert (quota.retry_after, quota.reason, quota.quota) == (7200, "QUOTA_EXCEEDED", True)
    assert (window.retry_after, window.reason, window.quota) == (3, None, False)


def test_a_refusal_says_its_kind_reason_and_fix() -> None:
    """What the owner page shows comes from the neutral Refused fields."""
    refused: base.Refused = classify_forbidden(OWNER_NOT_PREMIUM)
    assert refused.kind == "premium_required"
    assert refused.reason == OWNER_NOT_PREMIUM
    assert "Premium" in refused.fix
    assert classify_forbidden("Insufficient client scope").kind == "forbidden"


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
