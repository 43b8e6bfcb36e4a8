"""``/api/spotify`` and its SSE twin, in-process against the simulator."""

from __future__ import annotations

import asyncio

import pytest
from harness.app import Env
from harness.sse import SSEReader

from nowplaying.engine.live import Status

pytestmark = pytest.mark.anyio

TRACK_KEYS = {
    "isPlaying",
    "type",
    "title",
    "artist",
    "album",
    "albumImageUrl",
    "songUrl",
    "progressMs",
    "durationMs",
    "at",
    "source",
}


async def api(env: Env) -> dict[str, object]:
    """GET /api/spotify after letting the poller see the latest state."""
    await env.services.runtime.hub.forget("demo")
    response = await env.client.get("/api/spotify")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "private, no-store"
    body: dict[str, object] = response.json()
    return body


async def test_not_connected(env: Env) -> None:
    """No session: 401 not_connected, private."""
    response = await env.client.get("/api/spotify")
    assert response.status_code == 401
    assert response.json() == {"error": "not_connected"}
    assert response.headers["cache-control"] == "private, no-store"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_now_playing_answers_get_and_head_only(connected: Env, method: str) -> None:
    """``/api/spotify`` is a bare endpoint: other methods get the app's JSON 405, HEAD the
    headers of the GET without its body."""
    refused = await connected.client.request(method, "/api/spotify")
    assert refused.status_code == 405
    assert refused.json()["error"] == "method_not_allowed"
    assert refused.headers["allow"] == "GET, HEAD"
    get = await connected.client.get("/api/spotify")
    head = await connected.client.head("/api/spotify")
    assert (get.status_code, head.status_code) == (200, 200)
    assert head.headers["content-length"] == get.headers["content-length"] != "0"
    assert head.content == b""


async def test_track(connected: Env) -> None:
    """A playing track: every field of the contract, artists joined by ', '."""
    connected.sim.player("demo").play(1, progress_ms=5000)
    body = await api(connected)
    assert set(body) == TRACK_KEYS
    assert body["isPlaying"] is True
    assert body["type"] == "track"
    assert body["title"] == '<Intro> & "Outro"'
    assert body["artist"] == "The Ampersands & Co., Quote 'Unquote'"
    assert body["album"] == "<b>Bold</b> Moves"
    assert str(body["albumImageUrl"]).startswith("http")
    assert str(body["songUrl"]).startswith("https://open.spotify.com/track/")
    assert body["progressMs"] == 5000
    assert body["durationMs"] == 127_000


async def test_episode(connected: Env) -> None:
    """A podcast episode: the show is the artist, the episode's art is the image."""
    connected.sim.player("demo").play(4)
    body = await api(connected)
    assert body["type"] == "episode"
    assert body["artist"] == "The Escaping Hour"
    assert body["album"] == "The Escaping Hour"
    assert str(body["title"]).startswith("Episode 42")
    assert body["albumImageUrl"]


async def test_ad(connected: Env) -> None:
    """An ad: isPlaying with type ad and nothing else to show."""
    connected.sim.player("demo").play_ad()
    body = await api(connected)
    assert body["type"] == "ad"
    assert body["isPlaying"] is True
    assert "title" not in body


async def test_paused(connected: Env) -> None:
    """Paused: isPlaying false, the item still there, progress frozen."""
    player = connected.sim.player("demo")
    player.play(0, progress_ms=10_000)
    player.pause()
    body = await api(connected)
    assert body["isPlaying"] is False
    assert body["title"] == "Hoppípolla"
    await connected.clock.advance(3)
    again = (await connected.client.get("/api/spotify")).json()
    assert again["progressMs"] == 10_000


async def test_local_file(connected: Env) -> None:
    """A local file: no URL, no art, still shown."""
    connected.sim.player("demo").play(7)
    body = await api(connected)
    assert body["type"] == "track"
    assert body["songUrl"] is None
    assert body["albumImageUrl"] is None
    assert body["title"] == "Demo #3 (Final) (Really Final)"


async def test_nothing_playing(connected: Env) -> None:
    """Spotify's 204 becomes exactly {"isPlaying": false}."""
    connected.sim.player("demo").stop()
    assert await api(connected) == {"isPlaying": False}


async def test_progress_moves_between_polls(connected: Env) -> None:
    """Served from shared state, progress is extrapolated to the moment of the answer."""
    connected.sim.player("demo").play(0, progress_ms=0)
    await api(connected)
    await connected.clock.advance(2)
    body = (await connected.client.get("/api/spotify")).json()
    assert 2000 <= body["progressMs"] <= 2100


async def test_twenty_concurrent_requests_share_one_call(connected: Env) -> None:
    """20 concurrent viewers cost at most one or two currently-playing calls."""
    await connected.services.runtime.hub.forget("demo")
    connected.sim.reset_calls()
    responses = await asyncio.gather(*(connected.client.get("/api/spotify") for _ in range(20)))
    assert all(r.status_code == 200 for r in responses)
    assert 1 <= connected.sim.calls["currently-playing"] <= 2


async def test_requests_within_the_poll_interval_make_no_calls(connected: Env) -> None:
    """Requests spread over 0.8 s (within the 1 s poll floor) reuse the shared state: one call."""
    await connected.services.runtime.hub.forget("demo")
    connected.sim.reset_calls()
    for _ in range(8):
        assert (await connected.client.get("/api/spotify")).status_code == 200
        await connected.clock.advance(0.1)
    assert connected.sim.calls["currently-playing"] == 1


async def test_expired_access_token_is_refreshed_once_for_ten_requests(connected: Env) -> None:
    """After expiry, 10 concurrent requests make exactly one token call."""
    await connected.services.runtime.hub.forget("demo")
    await connected.clock.advance(3600)
    connected.sim.reset_calls()
    responses = await asyncio.gather(*(connected.client.get("/api/spotify") for _ in range(10)))
    assert all(r.status_code == 200 for r in responses)
    assert connected.sim.calls["token:refresh_token"] == 1


async def test_token_manager_single_flight(connected: Env) -> None:
    """Ten concurrent token() calls after expiry: exactly one refresh."""
    await connected.clock.advance(3600)
    connected.sim.reset_calls()
    tokens = await asyncio.gather(
        *(connected.services.runtime.tokens.token("demo") for _ in range(10))
    )
    assert len({t.access_token for t in tokens}) == 1
    assert connected.sim.calls["token:refresh_token"] == 1


async def test_401_from_api_refreshes_once_and_retries(connected: Env) -> None:
    """An access token Spotify stops accepting early: one refresh, one retry, data served."""
    connected.sim.expire_access_tokens("demo")
    connected.sim.reset_calls()
    await api(connected)
    assert connected.sim.calls["token:refresh_token"] == 1
    assert connected.sim.calls["currently-playing"] == 2


async def test_rotated_refresh_token_is_stored(connected: Env) -> None:
    """Rotation: the new refresh token replaces the stored one, and the next refresh works."""
    connected.sim.set_refresh_mode("rotate")
    store = connected.services.runtime.store
    before = await store.get_account("demo")
    await connected.clock.advance(3600)
    await connected.services.runtime.tokens.token("demo")
    after = await store.get_account("demo")
    assert before and after and after.refresh_token != before.refresh_token
    await connected.clock.advance(3600)
    await connected.services.runtime.tokens.token("demo")  # would raise if the old one were reused
    assert connected.services.runtime.tokens.counts["rotated"] == 2


async def test_omitted_refresh_token_keeps_the_stored_one(connected: Env) -> None:
    """No refresh_token in the answer (2026 default): the stored one is kept."""
    store = connected.services.runtime.store
    before = await store.get_account("demo")
    await connected.clock.advance(3600)
    await connected.services.runtime.tokens.token("demo")
    after = await store.get_account("demo")
    assert before and after and after.refresh_token == before.refresh_token
    assert connected.services.runtime.tokens.counts["rotated"] == 0


async def test_expired_grant_after_six_months(connected: Env) -> None:
    """Six months after consent the refresh fails for good: reconnect_required."""
    sessions = connected.services.sessions
    sessions.idle_seconds = sessions.max_seconds = 10**9  # the browser session outlives the grant
    await connected.services.runtime.hub.forget("demo")
    await connected.clock.advance(183 * 86400)
    response = await connected.client.get("/api/spotify")
    assert response.status_code == 401
    assert response.json() == {"error": "reconnect_required"}
    # No retry loop: the next request does not call Spotify again.
    calls = connected.sim.calls["token"]
    await connected.client.get("/api/spotify")
    assert connected.sim.calls["token"] == calls


async def test_spotify_failure_serves_stale(connected: Env) -> None:
    """Spotify 5xx after good data: the last data with stale: true, never a 500."""
    await api(connected)
    connected.sim.faults.add("currently-playing", status=502, times=5)
    await connected.clock.advance(5.5)
    response = await connected.client.get("/api/spotify")
    assert response.status_code == 200
    assert response.json()["stale"] is True


async def test_spotify_failure_without_data_is_503(connected: Env) -> None:
    """Spotify 5xx and nothing known yet: 503 JSON with Retry-After."""
    await connected.services.runtime.hub.forget("demo")
    connected.sim.faults.add("currently-playing", status=500, times=3)
    response = await connected.client.get("/api/spotify")
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"] == "unavailable"


async def test_rate_limit_serves_stale_with_retry(connected: Env) -> None:
    """A 429 pauses polling; viewers get the last data marked stale."""
    await api(connected)
    connected.sim.faults.add("currently-playing", status=429, retry_after=120)
    await connected.clock.advance(5.5)
    body = (await connected.client.get("/api/spotify")).json()
    assert body["stale"] is True
    assert connected.services.runtime.hub.app_pause.until > connected.clock.now() + 100


async def test_sse_sends_current_state_then_changes(connected: Env) -> None:
    """SSE: the state on connect, then an event when the track changes."""
    connected.sim.player("demo").play(0)
    await connected.services.runtime.hub.forget("demo")
    async with SSEReader(connected.app, "/api/spotify/events", _cookie(connected)) as sse:
        events = await sse.wait_for(1)
        assert sse.status == 200
        assert sse.response_headers["content-type"].startswith("text/event-stream")
        assert events[0].data["title"] == "Hoppípolla"
        connected.sim.player("demo").skip()
        await connected.clock.advance(5.5)
        events = await sse.wait_for(2)
        assert events[1].data["title"] == '<Intro> & "Outro"'
        assert int(events[1].id or 0) > int(events[0].id or 0)


async def test_sse_pause_nothing_and_reconnect(connected: Env) -> None:
    """SSE delivers pause, nothing-playing and reconnect-needed as events."""
    player = connected.sim.player("demo")
    player.play(0)
    await connected.services.runtime.hub.forget("demo")
    async with SSEReader(connected.app, "/api/spotify/events", _cookie(connected)) as sse:
        await sse.wait_for(1)
        player.pause()
        await connected.clock.advance(5.5)
        assert (await sse.wait_for(2))[1].data["isPlaying"] is False
        player.stop()
        await connected.clock.advance(5.5)
        assert (await sse.wait_for(3))[2].data == {"isPlaying": False}
        connected.sim.revoke("demo")
        connected.services.runtime.tokens.forget("demo")
        await connected.clock.advance(30, step=1)
        assert (await sse.wait_for(4))[3].data == {"error": "reconnect_required"}


@pytest.mark.parametrize("last_id", ["7", "not-a-number", "9" * 40])
async def test_sse_tolerates_last_event_id(connected: Env, last_id: str) -> None:
    """A reconnecting EventSource sends Last-Event-ID: it gets the current state, whatever it is."""
    connected.sim.player("demo").play(0)
    await connected.services.runtime.hub.forget("demo")
    headers = {**_cookie(connected), "last-event-id": last_id}
    async with SSEReader(connected.app, "/api/spotify/events", headers) as sse:
        events = await sse.wait_for(1)
        assert sse.status == 200
        assert events[0].data["title"] == "Hoppípolla"
        assert sse.comments >= 1  # the "connected" comment


async def test_sse_last_event_id_of_the_current_version_gets_no_duplicate(connected: Env) -> None:
    """Reconnecting with the id of the state it has: no repeat, only the next change."""
    connected.sim.player("demo").play(0)
    await connected.services.runtime.hub.forget("demo")
    async with SSEReader(connected.app, "/api/spotify/events", _cookie(connected)) as first:
        seen = (await first.wait_for(1))[0]
    headers = {**_cookie(connected), "last-event-id": seen.id or ""}
    async with SSEReader(connected.app, "/api/spotify/events", headers) as again:
        connected.sim.player("demo").skip()
        await connected.clock.advance(5.5)
        events = await again.wait_for(1)
        assert [e.data["title"] for e in events] == ['<Intro> & "Outro"']
        assert int(events[0].id or 0) > int(seen.id or 0)


async def test_sse_older_last_event_id_gets_the_current_state_at_once(connected: Env) -> None:
    """A viewer that missed a change (older id) gets the current state on reconnect."""
    connected.sim.player("demo").play(0)
    await connected.services.runtime.hub.forget("demo")
    async with SSEReader(connected.app, "/api/spotify/events", _cookie(connected)) as first:
        seen = (await first.wait_for(1))[0]
    connected.sim.player("demo").skip()
    await connected.clock.advance(5.5)  # polled while nobody watched the stream
    headers = {**_cookie(connected), "last-event-id": seen.id or ""}
    async with SSEReader(connected.app, "/api/spotify/events", headers) as again:
        events = await again.wait_for(1)
        assert events[0].data["title"] == '<Intro> & "Outro"'
        assert int(events[0].id or 0) > int(seen.id or 0)


async def test_public_sse_honours_last_event_id(connected: Env) -> None:
    """The public stream (``/p/ID/events``) skips the event a reconnecting viewer already has."""
    published = await connected.client.post(
        "/api/account/publish", headers={"Origin": "https://np.test"}
    )
    path = f"/p/{published.json()['publicId']}/events"
    connected.sim.player("demo").play(0)
    await connected.services.runtime.hub.forget("demo")
    async with SSEReader(connected.app, path) as first:
        seen = (await first.wait_for(1))[0]
    async with SSEReader(connected.app, path, {"last-event-id": seen.id or ""}) as again:
        connected.sim.player("demo").skip()
        await connected.clock.advance(5.5)
        events = await again.wait_for(1)
        assert [e.data["title"] for e in events] == ['<Intro> & "Outro"']


async def test_sse_drain_ends_every_stream_with_a_jittered_retry(connected: Env) -> None:
    """On drain each open stream sends retry: (500-3000 ms) and ends; the hub has no viewers."""
    hub, streams = connected.services.runtime.hub, connected.services.streams
    await hub.forget("demo")
    readers = [
        SSEReader(connected.app, "/api/spotify/events", _cookie(connected)) for _ in range(3)
    ]
    for r in readers:
        await r.__aenter__()
    try:
        for r in readers:
            await r.wait_for(1)
        streams.drain()
        for r in readers:
            await r.wait_ended()
    finally:
        for r in readers:
            await r.__aexit__(None, None, None)
    for r in readers:
        assert r.retries[0] == 3000  # the preamble
        assert len(r.retries) == 2 and 500 <= r.retries[1] <= 3000
    assert hub.viewers("demo") == 0
    assert streams.counts["drained"] == 3
    assert streams.counts["open"] == 0


async def test_sse_opened_while_draining_gets_only_the_hint(connected: Env) -> None:
    """A viewer arriving during the shutdown is sent elsewhere at once, with no subscription."""
    hub = connected.services.runtime.hub
    connected.services.streams.drain()
    async with SSEReader(connected.app, "/api/spotify/events", _cookie(connected)) as sse:
        await sse.wait_ended()
    assert sse.events == []
    assert len(sse.retries) == 2
    assert hub.viewers("demo") == 0


async def test_sse_without_session_is_401(env: Env) -> None:
    """No session, no stream."""
    async with SSEReader(env.app, "/api/spotify/events") as sse:
        assert await sse.wait_status() == 401


async def test_sse_viewers_share_one_poll(connected: Env) -> None:
    """50 SSE viewers and a minute of music cost what one viewer costs."""
    await connected.services.runtime.hub.forget("demo")
    connected.sim.reset_calls()
    readers = [
        SSEReader(connected.app, "/api/spotify/events", _cookie(connected)) for _ in range(50)
    ]
    for r in readers:
        await r.__aenter__()
    try:
        for r in readers:
            await r.wait_for(1)
        await connected.clock.advance(60, step=0.5)
        assert connected.services.runtime.hub.viewers("demo") == 50
        # a minute at the 1 s poll floor (the default budget affords it) plus track ends; a
        # poller that stopped or polled once falls short, one per viewer would be 50 times more
        assert 60 <= connected.sim.calls["currently-playing"] <= 63
    finally:
        for r in readers:
            await r.__aexit__(None, None, None)
    assert connected.services.runtime.hub.viewers("demo") == 0
    assert (
        connected.services.runtime.hub.counts["polls"] == connected.sim.calls["currently-playing"]
    )


async def test_stale_status_is_exposed_in_snapshot(connected: Env) -> None:
    """After a failure the shared snapshot is STALE (what both endpoints read)."""
    await api(connected)
    connected.sim.faults.add("currently-playing", status=503, times=2)
    await connected.clock.advance(5.5)
    snap = await connected.services.runtime.hub.current("demo")
    assert snap is not None and snap.status is Status.STALE


def _cookie(env: Env) -> dict[str, str]:
    value = env.client.cookies.get("__Host-np_session")
    return {"cookie": f"__Host-np_session={value}"}


@pytest.mark.parametrize(
    "path", ["/", "/p/0000000000000000", "/p/0000000000000000.json", "/p/0000000000000000/open"]
)
async def test_an_undeclared_method_is_a_405_that_says_what_is_allowed(env: Env, path: str) -> None:
    """RFC 9110: a 405 carries Allow, on the HTML error page as on the JSON one."""
    refused = await env.client.request("TRACE", path)
    assert refused.status_code == 405
    assert "GET" in refused.headers["allow"]


async def test_database_down_keeps_live_viewers_and_refuses_new_logins(probed: Env) -> None:
    """DB down: an open SSE viewer keeps getting changes; a new login gets a clear 503."""
    connected = probed
    assert (await connected.connect()).status_code == 303
    connected.sim.player("demo").play(0)
    await connected.services.runtime.hub.forget("demo")
    cookie = {"cookie": f"__Host-np_session={connected.client.cookies.get('__Host-np_session')}"}
    async with SSEReader(connected.app, "/api/spotify/events", cookie) as sse:
        await sse.wait_for(1)
        outage = connected.probe
        outage.down = True
        connected.sim.player("demo").skip()
        await connected.clock.advance(5.5)
        events = await sse.wait_for(2)
        assert events[1].data["title"] == '<Intro> & "Outro"'
        login = await connected.client.get("/login")
        assert login.status_code == 503
        assert "Storage is unavailable" in login.text
        await connected.clock.advance(3)  # past the hot-path session cache
        api = await connected.client.get("/api/spotify")
        assert api.status_code == 503
        assert api.json()["error"] == "unavailable"
        assert api.headers["retry-after"]
        outage.down = False
        assert (await connected.client.get("/api/spotify")).status_code == 200
        assert (await connected.client.get("/login")).status_code == 302
