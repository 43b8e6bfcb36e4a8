"""The simulated recently-played: finished tracks only, newest first, limit and cursors."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from harness.conftest_sim import SimEnv

pytest_plugins = ["harness.conftest_sim"]
pytestmark = pytest.mark.anyio

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


async def history(sim_env: SimEnv, **params: str) -> httpx.Response:
    """``GET /v1/me/player/recently-played`` with the right scope."""
    grant = sim_env.sim.grant("demo", scopes=("user-read-recently-played",))
    return await sim_env.api("/me/player/recently-played", grant.access_token, **params)


async def test_history_is_seeded(sim_env: SimEnv) -> None:
    """A new user already has a few plays, newest first, ISO-8601 with ms and Z."""
    items = (await history(sim_env)).json()["items"]
    assert len(items) >= 3
    stamps = [item["played_at"] for item in items]
    assert all(ISO_MS.fullmatch(stamp) for stamp in stamps)
    assert stamps == sorted(stamps, reverse=True)


async def test_page_has_the_recorded_shape(sim_env: SimEnv) -> None:
    """items, next, cursors, limit, href — like the recorded payload."""
    body = (await history(sim_env, limit="2")).json()
    recorded = sim_env.recorded("recently-played.json")
    assert set(body) == set(recorded)
    assert set(body["items"][0]) == set(recorded["items"][0])
    assert body["limit"] == 2
    assert body["href"] == "http://sim.test/v1/me/player/recently-played?limit=2"


async def test_cursors_and_next_point_at_older_plays(sim_env: SimEnv) -> None:
    """cursors are string ms; next asks for plays before the oldest one shown."""
    body = (await history(sim_env, limit="2")).json()
    oldest_ms = body["cursors"]["before"]
    assert isinstance(oldest_ms, str)
    assert body["next"] == (
        f"http://sim.test/v1/me/player/recently-played?before={oldest_ms}&limit=2"
    )


async def test_finished_track_comes_first(sim_env: SimEnv) -> None:
    """A track that played to its end is the newest entry, played_at its end."""
    first = sim_env.sim.player("demo").playlist[0]
    await sim_env.clock.advance(first["duration_ms"] / 1000 + 1)
    newest = (await history(sim_env)).json()["items"][0]
    assert newest["track"]["name"] == first["name"]
    end_ms = round((sim_env.clock.now() - 1) * 1000)
    assert newest["played_at"].endswith(f"{end_ms % 1000:03d}Z")


async def test_skipped_track_is_not_recorded(sim_env: SimEnv) -> None:
    """Only finished plays count."""
    before = (await history(sim_env)).json()["items"]
    sim_env.sim.player("demo").skip()
    after = (await history(sim_env)).json()["items"]
    assert after == before


async def test_episodes_are_left_out(sim_env: SimEnv) -> None:
    """Recently played holds tracks only."""
    player = sim_env.sim.player("demo")
    index = sim_env.index_of(lambda item: item["type"] == "episode")
    player.play(index, progress_ms=player.playlist[index]["duration_ms"] - 1000)
    await sim_env.clock.advance(2)
    items = (await history(sim_env)).json()["items"]
    assert all(item["track"]["type"] == "track" for item in items)
    assert items[0]["track"]["name"] != player.playlist[index]["name"]


async def test_private_session_plays_are_left_out(sim_env: SimEnv) -> None:
    """A track finished in a private session does not appear."""
    before = (await history(sim_env)).json()["items"]
    sim_env.sim.player("demo").private_session(True)
    await sim_env.clock.advance(sim_env.sim.player("demo").playlist[0]["duration_ms"] / 1000 + 1)
    sim_env.sim.player("demo").private_session(False)
    assert (await history(sim_env)).json()["items"] == before


async def test_default_limit_is_20(sim_env: SimEnv) -> None:
    """Without limit, at most 20 items and ``limit: 20``."""
    await sim_env.clock.advance(4 * 3600)
    body = (await history(sim_env)).json()
    assert body["limit"] == 20
    assert len(body["items"]) == 20


@pytest.mark.parametrize("limit", ["0", "51", "-1", "abc"])
async def test_limit_outside_1_to_50_is_400(sim_env: SimEnv, limit: str) -> None:
    """limit must be 1 to 50."""
    response = await history(sim_env, limit=limit)
    assert response.status_code == 400
    assert response.json()["error"]["status"] == 400


async def test_before_and_after_together_is_400(sim_env: SimEnv) -> None:
    """The cursors exclude each other."""
    response = await history(sim_env, before="1", after="1")
    assert response.status_code == 400


async def test_before_returns_older_plays(sim_env: SimEnv) -> None:
    """``before``: plays strictly older than the cursor."""
    first = (await history(sim_env, limit="2")).json()
    cursor = first["cursors"]["before"]
    older = (await history(sim_env, before=cursor, limit="2")).json()["items"]
    assert older
    assert all(item["played_at"] < first["items"][-1]["played_at"] for item in older)


async def test_after_returns_newer_plays(sim_env: SimEnv) -> None:
    """``after``: plays strictly newer than the cursor."""
    body = (await history(sim_env)).json()
    oldest = body["items"][-1]
    newer = (await history(sim_env, after=body["cursors"]["before"])).json()["items"]
    assert oldest not in newer
    assert len(newer) == len(body["items"]) - 1


async def test_empty_page_has_no_cursors(sim_env: SimEnv) -> None:
    """Nothing after the newest play: no items, cursors null, no next."""
    body = (await history(sim_env)).json()
    empty = (await history(sim_env, after=body["cursors"]["after"])).json()
    assert (empty["items"], empty["cursors"], empty["next"]) == ([], None, None)


async def test_history_needs_its_scope(sim_env: SimEnv) -> None:
    """Without user-read-recently-played: 403 JSON."""
    grant = sim_env.sim.grant("demo", scopes=("user-read-currently-playing",))
    response = await sim_env.api("/me/player/recently-played", grant.access_token)
    assert response.status_code == 403
    assert response.json()["error"]["status"] == 403
