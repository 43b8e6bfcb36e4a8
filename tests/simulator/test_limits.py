"""The simulator's two limits: the rolling 30 s window per app and the daily quota per developer."""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nowplaying.simulator.limits import QUOTA_EXCEEDED, REMOVED_RETRY, max_in_window

if TYPE_CHECKING:
    from harness.simulated import SimEnv

pytestmark = pytest.mark.anyio


async def test_no_limit_until_configured(sim_env: SimEnv) -> None:
    """By default nothing is limited: 200 calls in one instant all answer."""
    token = sim_env.sim.grant("demo").access_token
    for _ in range(200):
        assert (await sim_env.playing(token)).status_code == 200
    assert sim_env.sim.limits.counts["accepted"] == 200
    assert sim_env.sim.limits.counts["window_429"] == 0


async def test_window_refuses_past_the_limit_with_retry_after(sim_env: SimEnv) -> None:
    """The 6th call within 30 s is a 429 whose Retry-After is when the oldest call leaves."""
    sim_env.sim.limits.configure(window_calls=5, daily_quota=None)
    token = sim_env.sim.grant("demo").access_token
    for _ in range(5):
        assert (await sim_env.playing(token)).status_code == 200
        await sim_env.clock.advance(2)
    refused = await sim_env.playing(token)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "20"  # first call at t=0, now t=10
    assert refused.json() == {"error": {"status": 429, "message": "Too many requests"}}
    assert "reason" not in refused.json()["error"]
    await sim_env.clock.advance(19)
    assert (await sim_env.playing(token)).status_code == 429
    await sim_env.clock.advance(1)
    assert (await sim_env.playing(token)).status_code == 200
    assert sim_env.sim.limits.counts["window_429"] == 2
    assert sim_env.sim.limits.counts["accepted"] == 6


async def test_window_counts_token_calls_of_the_same_app(sim_env: SimEnv) -> None:
    """Token endpoint and Web API share one app's window; the refusal is Spotify's 429."""
    sim_env.sim.limits.configure(window_calls=2, daily_quota=None)
    grant = sim_env.sim.grant("demo")
    assert (await sim_env.refresh(grant.refresh_token or "")).status_code == 200
    assert (await sim_env.playing(grant.access_token)).status_code == 200
    refused = await sim_env.refresh(grant.refresh_token or "")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) == 30
    assert sim_env.sim.limits.in_window(sim_env.client_id) == 2


async def test_window_is_per_app(sim_env: SimEnv) -> None:
    """Another app's calls do not count against this one's window."""
    sim = sim_env.sim
    sim.limits.configure(window_calls=1, daily_quota=None)
    sim.add_client("other", "other-secret", [sim_env.redirect])
    assert (await sim_env.playing(sim.grant("demo").access_token)).status_code == 200
    other = sim.grant("demo", client_id="other").access_token
    assert (await sim_env.playing(other)).status_code == 200
    assert (await sim_env.playing(other)).status_code == 429


async def test_quota_per_developer_across_client_ids(sim_env: SimEnv) -> None:
    """Two apps of one developer share the quota; past it QUOTA_EXCEEDED until UTC midnight."""
    sim = sim_env.sim
    sim.limits.configure(window_calls=None, daily_quota=3)
    sim.add_client("second", "second-secret", [sim_env.redirect])
    sim.add_client("elsewhere", "x-secret", [sim_env.redirect], developer="someone-else")
    first = sim.grant("demo").access_token
    second = sim.grant("demo", client_id="second").access_token
    for token in (first, second, first):
        assert (await sim_env.playing(token)).status_code == 200
    refused = await sim_env.playing(second)
    assert refused.status_code == 429
    assert refused.json()["error"]["reason"] == QUOTA_EXCEEDED
    # The fake clock starts at midnight UTC: the quota comes back in 24 hours.
    assert int(refused.headers["Retry-After"]) == 86400
    other = sim.grant("demo", client_id="elsewhere").access_token
    assert (await sim_env.playing(other)).status_code == 200
    assert sim.limits.counts["quota_429"] == 1
    await sim_env.clock.advance(86400)
    fresh = sim.grant("demo", client_id="second").access_token  # the old one expired
    assert (await sim_env.playing(fresh)).status_code == 200
    assert sim.limits.used_today() == 1


async def test_quota_applies_to_the_token_endpoint(sim_env: SimEnv) -> None:
    """A refresh past the quota gets the same QUOTA_EXCEEDED 429."""
    sim_env.sim.limits.configure(window_calls=None, daily_quota=0)
    refused = await sim_env.refresh(sim_env.sim.grant("demo").refresh_token or "")
    assert refused.status_code == 429
    assert refused.json()["error"]["reason"] == QUOTA_EXCEEDED


async def test_an_invalid_token_is_refused_before_the_limit(sim_env: SimEnv) -> None:
    """A call whose app is unknown (bad token) is a 401 and counts for no app."""
    sim_env.sim.limits.configure(window_calls=0, daily_quota=None)
    assert (await sim_env.playing("not-a-token")).status_code == 401
    assert sim_env.sim.limits.counts["window_429"] == 0


async def test_control_api_sets_reads_and_resets_limits(sim_env: SimEnv) -> None:
    """POST/GET /_control/limits and /_control/limits/reset; nonsense is a 400 with a reason."""
    http = sim_env.http
    set_ = await http.post("/_control/limits", json={"window_calls": 1, "daily_quota": 10})
    assert set_.status_code == 200
    assert set_.json()["window_calls"] == 1
    token = sim_env.sim.grant("demo").access_token
    await sim_env.playing(token)
    assert (await sim_env.playing(token)).status_code == 429
    seen = (await http.get("/_control/limits")).json()
    assert seen["counts"]["window_429"] == 1
    assert seen["in_window"] == {sim_env.client_id: 1}
    assert seen["used_today"] == {"developer": 1}
    reset = (await http.post("/_control/limits/reset")).json()
    assert reset["counts"] == {}
    assert reset["window_calls"] == 1
    assert (await sim_env.playing(token)).status_code == 200
    off = await http.post("/_control/limits", json={"window_calls": None})
    assert off.json()["window_calls"] is None
    assert off.json()["daily_quota"] == 10
    for bad in ({"window_calls": "many"}, {"window_seconds": 0}, {"burst": 1}, {"daily_quota": -1}):
        refused = await http.post("/_control/limits", json=bad)
        assert refused.status_code == 400, bad
        assert refused.json()["error"]


@given(st.lists(st.floats(min_value=0, max_value=300, allow_nan=False), max_size=60))
def test_max_in_window_matches_brute_force(times: list[float]) -> None:
    """The sliding count equals counting every window that ends at a call."""
    times.sort()
    brute = max((sum(1 for s in times if t - 30 < s <= t) for t in times), default=0)
    assert max_in_window(times, 30) == brute


async def test_a_removed_endpoint_answers_every_call_with_a_window_like_429(
    sim_env: SimEnv,
) -> None:
    """The third 429: the first call too, no reason, a short Retry-After; other endpoints pass."""
    sim_env.sim.limits.removed = frozenset({"currently-playing"})
    token = sim_env.sim.grant("demo").access_token
    for _ in range(3):
        refused = await sim_env.playing(token)
        assert refused.status_code == 429
        assert refused.json() == {"error": {"status": 429, "message": "Too many requests"}}
        assert refused.headers["Retry-After"] == str(REMOVED_RETRY)
        await sim_env.clock.advance(REMOVED_RETRY)
    me = await sim_env.http.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert sim_env.sim.limits.counts["removed_429"] == 3
    assert sim_env.sim.limits.counts["window_429"] == 0


async def test_retry_after_can_be_an_http_date(sim_env: SimEnv) -> None:
    """With retry_after_dates, Retry-After is an HTTP-date and Date says when it was sent."""
    sim_env.sim.limits.configure(window_calls=1, daily_quota=None)
    sim_env.sim.limits.retry_after_dates = True
    token = sim_env.sim.grant("demo").access_token
    assert (await sim_env.playing(token)).status_code == 200
    await sim_env.clock.advance(10)
    refused = await sim_env.playing(token)
    assert refused.status_code == 429
    sent = parsedate_to_datetime(refused.headers["Date"]).timestamp()
    until = parsedate_to_datetime(refused.headers["Retry-After"]).timestamp()
    assert sent == int(sim_env.clock.now())
    assert until - sent == 20


async def test_control_api_sets_removed_endpoints_and_date_format(sim_env: SimEnv) -> None:
    http = sim_env.http
    set_ = await http.post(
        "/_control/limits", json={"removed": ["recently-played"], "retry_after_dates": True}
    )
    assert set_.status_code == 200
    assert set_.json()["removed"] == ["recently-played"]
    assert sim_env.sim.limits.retry_after_dates
    for bad in ({"removed": "recently-played"}, {"retry_after_dates": "yes"}):
        assert (await http.post("/_control/limits", json=bad)).status_code == 400, bad
