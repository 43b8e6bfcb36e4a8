"""The simulated Web API: currently-playing in every state, /me, /me/player, auth failures, and
recently-played (finished tracks only, newest first, limit and cursors)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from harness.simulated import SimEnv

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.simulated import SimEnv

pytestmark = pytest.mark.anyio

EPISODES = {"additional_types": "track,episode"}


def is_episode(item: dict[str, Any]) -> bool:
    """Playlist predicate: the podcast episode."""
    return bool(item["type"] == "episode")


def is_local(item: dict[str, Any]) -> bool:
    """Playlist predicate: the local file."""
    return bool(item.get("is_local"))


async def test_track_payload_has_the_recorded_shape(sim_env: SimEnv) -> None:
    """Same top-level keys as the recorded currently-playing, and a full TrackObject."""
    response = await sim_env.playing()
    assert response.status_code == 200
    body = response.json()
    recorded = sim_env.recorded("currently-playing-track.json")
    assert set(body) == set(recorded)
    item = body["item"]
    for key in ("id", "uri", "name", "artists", "album", "external_urls", "duration_ms"):
        assert key in item
    assert set(recorded["item"]["album"]) <= set(item["album"]) | {"popularity"}
    assert body["currently_playing_type"] == "track"
    assert set(body["actions"]) == {"disallows"}


async def test_track_plays_from_the_start(sim_env: SimEnv) -> None:
    """A new user is at the first item, playing, progress 0."""
    body = (await sim_env.playing()).json()
    assert body["is_playing"] is True
    assert body["progress_ms"] == 0
    assert body["item"]["name"] == sim_env.sim.player("demo").playlist[0]["name"]


async def test_progress_follows_the_clock(sim_env: SimEnv) -> None:
    """Progress advances as the clock moves."""
    await sim_env.clock.advance(42.5)
    assert (await sim_env.playing()).json()["progress_ms"] == 42_500


async def test_natural_end_advances_to_the_next_item(sim_env: SimEnv) -> None:
    """When the track ends, the next one starts by itself."""
    playlist = sim_env.sim.player("demo").playlist
    await sim_env.clock.advance(playlist[0]["duration_ms"] / 1000 + 3)
    body = (await sim_env.playing()).json()
    assert body["item"]["name"] == playlist[1]["name"]
    assert body["progress_ms"] == 3000


async def test_timestamp_is_when_the_item_started(sim_env: SimEnv) -> None:
    """``timestamp`` is the last change of playback state, in ms."""
    first = sim_env.sim.player("demo").playlist[0]["duration_ms"]
    start_ms = round(sim_env.clock.now() * 1000)
    await sim_env.clock.advance(first / 1000 + 3)
    assert (await sim_env.playing()).json()["timestamp"] == start_ms + first


async def test_skip_starts_the_next_item(sim_env: SimEnv) -> None:
    """skip(): next item, progress 0."""
    await sim_env.clock.advance(30)
    sim_env.sim.player("demo").skip()
    body = (await sim_env.playing()).json()
    assert body["item"]["name"] == sim_env.sim.player("demo").playlist[1]["name"]
    assert body["progress_ms"] == 0


async def test_previous_goes_back(sim_env: SimEnv) -> None:
    """previous() from the first item wraps to the last."""
    sim_env.sim.player("demo").previous()
    body = (await sim_env.playing(**EPISODES)).json()
    assert body["item"]["name"] == sim_env.sim.player("demo").playlist[-1]["name"]


async def test_seek_sets_progress(sim_env: SimEnv) -> None:
    """seek() moves within the item."""
    sim_env.sim.player("demo").seek(61_000)
    assert (await sim_env.playing()).json()["progress_ms"] == 61_000


async def test_paused_keeps_the_item_and_freezes_progress(sim_env: SimEnv) -> None:
    """Paused: is_playing false, item present, progress does not move."""
    await sim_env.clock.advance(10)
    sim_env.sim.player("demo").pause()
    await sim_env.clock.advance(100)
    body = (await sim_env.playing()).json()
    assert body["is_playing"] is False
    assert body["item"] is not None
    assert body["progress_ms"] == 10_000
    assert body["actions"] == {"disallows": {"pausing": True}}


async def test_resume_continues_from_the_pause(sim_env: SimEnv) -> None:
    """After resume, progress continues from where it stopped."""
    player = sim_env.sim.player("demo")
    await sim_env.clock.advance(10)
    player.pause()
    await sim_env.clock.advance(100)
    player.resume()
    await sim_env.clock.advance(5)
    assert (await sim_env.playing()).json()["progress_ms"] == 15_000


async def test_episode_with_additional_types(sim_env: SimEnv) -> None:
    """``additional_types=episode``: the EpisodeObject, with its show."""
    sim_env.sim.player("demo").play(sim_env.index_of(is_episode))
    body = (await sim_env.playing(**EPISODES)).json()
    assert set(body) == set(sim_env.recorded("currently-playing-episode.json"))
    assert body["currently_playing_type"] == "episode"
    item = body["item"]
    assert item["type"] == "episode"
    assert item["show"]["name"]
    assert item["show"]["images"]
    assert "publisher" not in item["show"]  # gone for development-mode apps since Feb 2026


async def test_episode_without_additional_types_has_no_item(sim_env: SimEnv) -> None:
    """Without ``episode`` in additional_types, a podcast comes back with item null."""
    sim_env.sim.player("demo").play(sim_env.index_of(is_episode))
    body = (await sim_env.playing()).json()
    assert body["currently_playing_type"] == "episode"
    assert body["item"] is None
    assert body["progress_ms"] == 0


async def test_episode_images_are_not_square(sim_env: SimEnv) -> None:
    """Episode art is wider than tall, widest first."""
    sim_env.sim.player("demo").play(sim_env.index_of(is_episode))
    images = (await sim_env.playing(**EPISODES)).json()["item"]["images"]
    assert images[0]["width"] > images[0]["height"]
    assert [i["width"] for i in images] == sorted((i["width"] for i in images), reverse=True)


async def test_ad_has_no_item_but_progress(sim_env: SimEnv) -> None:
    """Ads: type ad, item null, progress present."""
    sim_env.sim.player("demo").play_ad(duration_ms=15_000)
    await sim_env.clock.advance(4)
    body = (await sim_env.playing(**EPISODES)).json()
    assert body["currently_playing_type"] == "ad"
    assert body["item"] is None
    assert body["progress_ms"] == 4000
    assert body["is_playing"] is True


async def test_after_an_ad_the_next_item_plays(sim_env: SimEnv) -> None:
    """The ad interrupts; the following item starts after it."""
    sim_env.sim.player("demo").play_ad(duration_ms=15_000)
    await sim_env.clock.advance(16)
    body = (await sim_env.playing()).json()
    assert body["item"]["name"] == sim_env.sim.player("demo").playlist[1]["name"]
    assert body["progress_ms"] == 1000


async def test_local_file_payload(sim_env: SimEnv) -> None:
    """Local files: is_local, no id, spotify:local uri, no links, no images."""
    sim_env.sim.player("demo").play(sim_env.index_of(is_local))
    item = (await sim_env.playing()).json()["item"]
    assert item["is_local"] is True
    assert item["id"] is None
    assert item["uri"].startswith("spotify:local:")
    assert item["uri"].endswith(":215")
    assert item["external_urls"] == {}
    assert item["album"]["images"] == []


async def test_gap_between_items_is_204(sim_env: SimEnv) -> None:
    """After every few items comes a short gap in which nothing plays."""
    player = sim_env.sim.player("demo")
    player.play(3)
    await sim_env.clock.advance(player.playlist[3]["duration_ms"] / 1000 + 1)
    response = await sim_env.playing()
    assert response.status_code == 204
    assert response.content == b""


async def test_playback_resumes_after_the_gap(sim_env: SimEnv) -> None:
    """The gap lasts about 20 seconds, then the next item plays."""
    player = sim_env.sim.player("demo")
    player.play(3)
    await sim_env.clock.advance(player.playlist[3]["duration_ms"] / 1000 + 21)
    body = (await sim_env.playing(**EPISODES)).json()
    assert body["item"]["name"] == player.playlist[4]["name"]


async def test_stop_gives_204_until_resume(sim_env: SimEnv) -> None:
    """stop(): 204; resume(): the same item again."""
    player = sim_env.sim.player("demo")
    player.stop()
    assert (await sim_env.playing()).status_code == 204
    player.resume()
    assert (await sim_env.playing()).json()["item"]["name"] == player.playlist[0]["name"]


async def test_private_session_is_204(sim_env: SimEnv) -> None:
    """A private session hides playback."""
    sim_env.sim.player("demo").private_session(True)
    assert (await sim_env.playing()).status_code == 204


async def test_private_session_off_shows_playback_again(sim_env: SimEnv) -> None:
    """Leaving the private session shows what plays."""
    player = sim_env.sim.player("demo")
    player.private_session(True)
    player.private_session(False)
    assert (await sim_env.playing()).status_code == 200


async def test_images_are_absolute_and_widest_first(sim_env: SimEnv) -> None:
    """Cover URLs point at the simulator; 640, 300, 64."""
    images = (await sim_env.playing()).json()["item"]["album"]["images"]
    assert [i["width"] for i in images] == [640, 300, 64]
    assert all(i["url"].startswith("http://sim.test/covers/") for i in images)


async def test_one_album_is_not_square(sim_env: SimEnv) -> None:
    """Like the real API, one cover is 640x575."""
    index = sim_env.index_of(lambda item: item.get("cover_size") == [640, 575])
    sim_env.sim.player("demo").play(index)
    images = (await sim_env.playing()).json()["item"]["album"]["images"]
    assert (images[0]["width"], images[0]["height"]) == (640, 575)


async def test_me_works_with_any_scope(sim_env: SimEnv) -> None:
    """/me: id, display_name, type, uri, external_urls, images."""
    grant = sim_env.sim.grant("demo", scopes=())
    body = (await sim_env.api("/me", grant.access_token)).json()
    assert body["id"] == "demo"
    assert body["display_name"] == "Demo Listener"
    assert body["type"] == "user"
    assert body["uri"] == "spotify:user:demo"
    assert body["external_urls"]["spotify"].endswith("/user/demo")
    assert body["images"][0]["url"].startswith("http://sim.test/covers/")
    assert "product" not in body


async def test_me_shows_product_with_user_read_private(sim_env: SimEnv) -> None:
    """Subscription details need user-read-private."""
    sim_env.sim.add_user("free", "Free User", product="free")
    grant = sim_env.sim.grant("free", scopes=("user-read-private",))
    assert (await sim_env.api("/me", grant.access_token)).json()["product"] == "free"


async def test_missing_token_is_401(sim_env: SimEnv) -> None:
    """No Authorization header."""
    response = await sim_env.http.get("/v1/me/player/currently-playing")
    assert response.status_code == 401
    assert response.json() == {
        "error": {"status": 401, "message": "Missing/invalid/expired access token"}
    }


async def test_unknown_token_is_401(sim_env: SimEnv) -> None:
    """A token the server never issued."""
    assert (await sim_env.playing("made-up")).status_code == 401


async def test_missing_scope_is_403_json(sim_env: SimEnv) -> None:
    """currently-playing without user-read-currently-playing."""
    grant = sim_env.sim.grant("demo", scopes=("user-read-recently-played",))
    response = await sim_env.playing(grant.access_token)
    assert response.status_code == 403
    assert response.json()["error"]["status"] == 403


async def test_user_not_on_allowlist_is_403_plain_text(sim_env: SimEnv) -> None:
    """Development mode: users not registered in the dashboard."""
    sim_env.sim.add_client("dev", "s", [sim_env.redirect], allowlist=["someone-else"])
    grant = sim_env.sim.grant("demo", client_id="dev")
    response = await sim_env.playing(grant.access_token)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "User not registered in the Developer Dashboard"


async def test_user_on_allowlist_is_served(sim_env: SimEnv) -> None:
    """Allowlisted users get their playback."""
    sim_env.sim.add_client("dev", "s", [sim_env.redirect], allowlist=["demo"])
    grant = sim_env.sim.grant("demo", client_id="dev")
    assert (await sim_env.playing(grant.access_token)).status_code == 200


async def test_owner_without_premium_is_403_plain_text(sim_env: SimEnv) -> None:
    """Development mode: the app owner needs Premium."""
    sim_env.sim.add_client("cheap", "s", [sim_env.redirect], owner_premium=False)
    grant = sim_env.sim.grant("demo", client_id="cheap")
    response = await sim_env.playing(grant.access_token)
    assert response.status_code == 403
    assert response.text == "Active premium subscription required for the owner of the app."


async def test_playback_state_has_device_and_recorded_keys(sim_env: SimEnv) -> None:
    """/me/player: currently-playing plus device, repeat and shuffle."""
    grant = sim_env.sim.grant("demo", scopes=("user-read-playback-state",))
    body = (await sim_env.api("/me/player", grant.access_token)).json()
    assert set(sim_env.recorded("playback-state.json")) <= set(body)
    assert body["device"]["is_active"] is True


async def test_playback_state_needs_its_scope(sim_env: SimEnv) -> None:
    """/me/player without user-read-playback-state is 403."""
    assert (
        await sim_env.api("/me/player", sim_env.sim.grant("demo").access_token)
    ).status_code == 403


async def test_playback_state_is_204_when_nothing_plays(sim_env: SimEnv) -> None:
    """/me/player answers 204 when stopped."""
    grant = sim_env.sim.grant("demo", scopes=("user-read-playback-state",))
    sim_env.sim.player("demo").stop()
    assert (await sim_env.api("/me/player", grant.access_token)).status_code == 204


async def test_api_calls_are_counted(sim_env: SimEnv) -> None:
    """Each endpoint has its counter."""
    grant = sim_env.sim.grant("demo")
    await sim_env.playing(grant.access_token)
    await sim_env.playing(grant.access_token)
    await sim_env.api("/me", grant.access_token)
    assert sim_env.sim.calls["currently-playing"] == 2
    assert sim_env.sim.calls["me"] == 1
    sim_env.sim.reset_calls()
    assert sum(sim_env.sim.calls.values()) == 0


async def test_unknown_api_path_is_404_json(sim_env: SimEnv) -> None:
    """Spotify's error shape for paths it does not serve."""
    response = await sim_env.http.get("/v1/nope")
    assert response.status_code == 404
    assert response.json()["error"]["status"] == 404


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
