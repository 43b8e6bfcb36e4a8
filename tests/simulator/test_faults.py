"""Faults on demand: 429 with Retry-After, plain-text 403s, errors, delays and hangs."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from harness.simulated import SimEnv

pytestmark = pytest.mark.anyio


async def test_429_has_retry_after_and_spotify_body(sim_env: SimEnv) -> None:
    """Rate limited: 429, Retry-After in seconds, Spotify's error body."""
    sim_env.sim.faults.add("currently-playing", status=429, retry_after=30)
    response = await sim_env.playing()
    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    assert response.json() == {"error": {"status": 429, "message": "Too many requests"}}


async def test_429_quota_exceeded_carries_the_reason(sim_env: SimEnv) -> None:
    """Quota exhaustion: reason QUOTA_EXCEEDED, hours of Retry-After."""
    sim_env.sim.faults.add(
        "currently-playing", status=429, retry_after=7200, reason="QUOTA_EXCEEDED"
    )
    response = await sim_env.playing()
    assert response.json()["error"]["reason"] == "QUOTA_EXCEEDED"
    assert response.headers["retry-after"] == "7200"


async def test_429_without_retry_after_still_sends_the_header(sim_env: SimEnv) -> None:
    """A 429 always carries Retry-After."""
    sim_env.sim.faults.add("me", status=429)
    response = await sim_env.api("/me", sim_env.sim.grant("demo").access_token)
    assert response.headers["retry-after"] == "1"


async def test_403_with_text_body_is_plain_text(sim_env: SimEnv) -> None:
    """The dashboard 403 as a fault: plain text, not JSON."""
    body = "User not registered in the Developer Dashboard"
    sim_env.sim.faults.add("currently-playing", status=403, body=body)
    response = await sim_env.playing()
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == body


async def test_other_status_uses_the_json_error_shape(sim_env: SimEnv) -> None:
    """A 503 fault looks like Spotify's JSON error."""
    sim_env.sim.faults.add("currently-playing", status=503)
    response = await sim_env.playing()
    assert response.status_code == 503
    assert response.json() == {"error": {"status": 503, "message": "Service Unavailable"}}


async def test_fault_lasts_for_times_calls(sim_env: SimEnv) -> None:
    """``times=2``: two failures, then normal answers."""
    sim_env.sim.faults.add("currently-playing", status=500, times=2)
    token = sim_env.sim.grant("demo").access_token
    statuses = [(await sim_env.playing(token)).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]


async def test_star_matches_any_endpoint(sim_env: SimEnv) -> None:
    """``*`` hits whichever endpoint is called next."""
    sim_env.sim.faults.add("*", status=502)
    response = await sim_env.api("/me", sim_env.sim.grant("demo").access_token)
    assert response.status_code == 502


async def test_fault_on_other_endpoint_is_not_used(sim_env: SimEnv) -> None:
    """A fault planned for /me leaves currently-playing alone."""
    sim_env.sim.faults.add("me", status=500)
    assert (await sim_env.playing()).status_code == 200
    assert len(sim_env.sim.faults.pending) == 1


async def test_token_endpoint_fault(sim_env: SimEnv) -> None:
    """The token endpoint can be rate limited too."""
    sim_env.sim.faults.add("token", status=429, retry_after=5)
    response = await sim_env.refresh(sim_env.sim.grant("demo").refresh_token or "")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "5"


async def test_faulted_calls_are_counted(sim_env: SimEnv) -> None:
    """A call that got a fault still counts."""
    sim_env.sim.faults.add("currently-playing", status=429)
    await sim_env.playing()
    assert sim_env.sim.calls["currently-playing"] == 1


async def test_clear_removes_planned_faults(sim_env: SimEnv) -> None:
    """faults.clear(): back to normal."""
    sim_env.sim.faults.add("currently-playing", status=500, times=5)
    sim_env.sim.faults.clear()
    assert (await sim_env.playing()).status_code == 200


async def test_unknown_endpoint_is_refused(sim_env: SimEnv) -> None:
    """Typos in the endpoint name fail loudly."""
    with pytest.raises(ValueError, match="unknown endpoint"):
        sim_env.sim.faults.add("currently_playing", status=500)


async def test_delay_answers_normally_but_late(sim_env: SimEnv) -> None:
    """A delay without a status: the normal answer, after the wait."""
    sim_env.sim.faults.add("currently-playing", delay=0.3)
    token = sim_env.sim.grant("demo").access_token
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(sim_env.playing(token), timeout=0.05)
    sim_env.sim.faults.add("currently-playing", delay=0.05)
    assert (await sim_env.playing(token)).status_code == 200


async def test_hang_never_answers(sim_env: SimEnv) -> None:
    """hang: the request is still waiting when the client gives up."""
    sim_env.sim.faults.add("currently-playing", hang=True)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(sim_env.playing(), timeout=0.2)
    assert (await sim_env.playing()).status_code == 200
