"""Push from any player: ListenBrainz's submit API and Web Scrobbler's webhook on nowplaying, the
push token on /api/account, bad input refused in ListenBrainz's shape, and liblistenbrainz
submitting to a live server."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import liblistenbrainz
import pytest
from harness.app import ORIGIN, SAME, Env, open_env
from harness.browser import account_over_http, demo_settings
from harness.helpers import fixture_json
from harness.live_server import free_port, serve

from nowplaying.clock import FakeClock
from nowplaying.models import SourceKind
from nowplaying.sources.push import MAX_BODY_BYTES
from nowplaying.web import create_app

pytestmark = pytest.mark.anyio


async def token_of(env: Env) -> str:
    account = (await env.client.get("/api/account")).json()
    token: str = account["pushToken"]
    assert account["push"] == {
        "listenbrainzUrl": ORIGIN,
        "webScrobblerUrl": f"{ORIGIN}/hooks/web-scrobbler/{token}",
    }
    return token


def listen(title: str = "Fade", **info: Any) -> dict[str, Any]:
    meta = {"artist_name": "Kanye West", "track_name": title, "release_name": "TLOP"}
    return {"track_metadata": {**meta, "additional_info": info}}


async def submit(env: Env, body: Any, token: str) -> Any:
    return await env.client.post(
        "/1/submit-listens", content=json.dumps(body), headers={"Authorization": f"Token {token}"}
    )


def upstream_calls(env: Env) -> int:
    return sum(env.sim.calls.values())


async def test_a_push_reaches_every_viewer_with_no_upstream_call(connected: Env) -> None:
    """playing_now is what two subscribed viewers get next; the simulated Spotify is not asked."""
    env = connected
    token = await token_of(env)
    hub = env.services.runtime.hub
    await hub.current("demo")
    async with hub.subscribe("demo") as one, hub.subscribe("demo") as two:
        while not one.empty():
            one.get_nowait()
        while not two.empty():
            two.get_nowait()
        before = upstream_calls(env)
        response = await submit(env, fixture_json("submit-playing-now.json", "listenbrainz"), token)
        assert response.json() == {"status": "ok"}
        for viewer in (one, two):
            snap = await viewer.get()
            assert snap.playing is not None and snap.playing.item is not None
            assert (snap.playing.item.title, snap.playing.source) == ("Fade", SourceKind.PUSH)
        assert upstream_calls(env) == before


async def test_a_playing_now_lasts_its_duration(connected: Env) -> None:
    env = connected
    token = await token_of(env)
    hub = env.services.runtime.hub
    await submit(env, {"listen_type": "playing_now", "payload": [listen(duration=30)]}, token)
    shown = hub.peek("demo")
    assert shown is not None and shown.playing is not None
    assert shown.playing.source is SourceKind.PUSH
    await env.clock.advance(31, step=1)
    after = hub.peek("demo")
    assert after is not None and (after.playing is None or after.playing.source != "push")


async def test_a_finished_listen_ends_the_matching_playing_now(connected: Env) -> None:
    env = connected
    token = await token_of(env)
    hub = env.services.runtime.hub
    await submit(env, {"listen_type": "playing_now", "payload": [listen()]}, token)
    done = {**listen(), "listened_at": int(env.clock.now())}
    await submit(env, {"listen_type": "single", "payload": [done]}, token)
    shown = hub.peek("demo")
    assert shown is None or shown.playing is None or shown.playing.source != "push"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Cannot parse JSON"),
        ({"listen_type": "loved", "payload": [listen()]}, "listen_type"),
        ({"listen_type": "single", "payload": []}, "any listens"),
        ({"listen_type": "playing_now", "payload": [listen(), listen()]}, "more than one"),
        ({"listen_type": "playing_now", "payload": [{"track_metadata": {}}]}, "artist_name"),
        ({"listen_type": "single", "payload": [listen()]}, "listened_at"),
        ({"listen_type": "playing_now", "payload": [listen(note="x" * 11_000)]}, "too large"),
    ],
)
async def test_bad_submissions_are_400_with_a_message(
    connected: Env, body: Any, message: str
) -> None:
    token = await token_of(connected)
    content = body if isinstance(body, bytes) else json.dumps(body)
    response = await connected.client.post(
        "/1/submit-listens", content=content, headers={"Authorization": f"Token {token}"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == 400 and message in response.json()["error"]


def listens(count: int, pad: int = 0) -> list[dict[str, Any]]:
    """``count`` finished listens, each padded with ``pad`` characters of additional_info."""
    return [
        {**listen(f"Song {i}", note="x" * pad), "listened_at": 1_700_000_000 + i}
        for i in range(count)
    ]


async def test_an_import_of_1001_listens_or_an_oversized_listen_is_400(connected: Env) -> None:
    """Past 64 KiB the body is read (ListenBrainz's limit is 1,000 listens of 10,240 bytes), and
    its limits are ListenBrainz's 400s with their messages."""
    token = await token_of(connected)
    many = await submit(connected, {"listen_type": "import", "payload": listens(1001)}, token)
    assert many.status_code == 400 and "at most 1000" in many.json()["error"]
    big = [*listens(20, pad=3000), {**listen(note="x" * 10_300), "listened_at": 1_700_000_000}]
    oversized = await submit(connected, {"listen_type": "import", "payload": big}, token)
    assert oversized.status_code == 400 and "too large" in oversized.json()["error"]
    ok = await submit(
        connected, {"listen_type": "import", "payload": listens(1000, pad=200)}, token
    )
    assert ok.status_code == 200, ok.text


async def test_a_body_past_listenbrainz_limit_is_413_and_other_paths_keep_64_kib(
    connected: Env,
) -> None:
    """Over 10,240,000 bytes (1,000 listens of 10,240) is refused before it is read, declared
    or streamed; every other path keeps the edge's 64 KiB."""
    token = await token_of(connected)
    headers = {"Authorization": f"Token {token}"}
    huge = await connected.client.post(
        "/1/submit-listens", content=b"x" * (MAX_BODY_BYTES + 1), headers=headers
    )
    assert huge.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 65_536 + 2):
            yield b"x" * 65_536

    streamed = await connected.client.post("/1/submit-listens", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    hook = await connected.client.post(f"/hooks/web-scrobbler/{token}", content=b"x" * 70_000)
    assert hook.status_code == 413


class Slots(asyncio.Semaphore):
    """A semaphore that says when someone starts waiting for it."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.asked = asyncio.Event()

    async def acquire(self) -> Literal[True]:
        self.asked.set()
        return await super().acquire()


async def test_large_bodies_wait_for_a_free_slot(connected: Env) -> None:
    """While no slot for large bodies is free, an import waits before reading (memory stays
    bounded) and is answered once one frees; a small push does not wait."""
    env = connected
    token = await token_of(env)
    env.services.large_reads = slots = Slots(0)
    small = await submit(env, {"listen_type": "playing_now", "payload": [listen()]}, token)
    assert small.status_code == 200 and not slots.asked.is_set()
    body = {"listen_type": "import", "payload": listens(300, pad=300)}
    task = asyncio.create_task(submit(env, body, token))
    asked = asyncio.create_task(slots.asked.wait())
    await asyncio.wait({task, asked}, return_when=asyncio.FIRST_COMPLETED)
    assert asked.done() and not task.done()
    slots.release()
    assert (await task).status_code == 200


async def test_wrong_or_missing_tokens_are_401_in_listenbrainz_shape(connected: Env) -> None:
    body = {"listen_type": "playing_now", "payload": [listen()]}
    missing = await connected.client.post("/1/submit-listens", json=body)
    assert (missing.status_code, missing.json()) == (
        401,
        {"code": 401, "error": "You need to provide an Authorization header."},
    )
    wrong = await submit(connected, body, "not-a-push-token")
    assert wrong.json() == {"code": 401, "error": "Invalid authorization token."}
    hook = await connected.client.post("/hooks/web-scrobbler/not-a-push-token", json={})
    assert hook.status_code == 401


async def test_validate_token_answers_for_push_tokens(connected: Env) -> None:
    token = await token_of(connected)
    good = await connected.client.get(
        "/1/validate-token", headers={"Authorization": f"Token {token}"}
    )
    assert good.json() == {
        "code": 200,
        "message": "Token valid.",
        "valid": True,
        "user_name": "Demo Listener",
    }
    bad = await connected.client.get("/1/validate-token", params={"token": "nope"})
    assert bad.json() == fixture_json("validate-token-invalid.json", "listenbrainz")


async def test_rotating_the_push_token_refuses_the_old_one(connected: Env) -> None:
    env = connected
    old = await token_of(env)
    rotated = await env.client.post("/api/account/push-token", headers={"Origin": ORIGIN})
    new = rotated.json()["pushToken"]
    assert new != old
    body = {"listen_type": "playing_now", "payload": [listen()]}
    assert (await submit(env, body, old)).status_code == 401
    assert (await submit(env, body, new)).status_code == 200


def web_scrobbler_event(name: str, **song: Any) -> dict[str, Any]:
    parsed = {
        "track": "Fade",
        "artist": "Kanye West",
        "album": "TLOP",
        "duration": None,
        "currentTime": None,
        "isPlaying": name != "paused",
        **song,
    }
    return {"eventName": name, "time": 1, "data": {"song": {"parsed": parsed, "processed": {}}}}


async def test_web_scrobbler_events_show_progress_when_told(connected: Env) -> None:
    env = connected
    token = await token_of(env)
    url = f"/hooks/web-scrobbler/{token}"
    hub = env.services.runtime.hub
    event = web_scrobbler_event("nowplaying", duration=200, currentTime=20)
    assert (await env.client.post(url, json=event)).json() == {"status": "ok"}
    shown = hub.peek("demo")
    assert shown is not None and shown.playing is not None and shown.playing.item is not None
    assert (shown.playing.progress_ms, shown.playing.item.duration_ms) == (20_000, 200_000)
    assert (await env.client.post(url, json=web_scrobbler_event("loved"))).status_code == 200
    bad = await env.client.post(url, json={"eventName": "nowplaying", "data": {}})
    assert bad.status_code == 400 and "song" in bad.json()["error"]


async def test_pushed_text_is_escaped_in_the_card(connected: Env) -> None:
    env = connected
    token = await token_of(env)
    hostile = '<script>alert("x")</script>'
    await submit(env, {"listen_type": "playing_now", "payload": [listen(hostile)]}, token)
    public_id = (await env.client.post("/api/account/publish", headers={"Origin": ORIGIN})).json()[
        "publicId"
    ]
    svg = await env.client.get(f"/p/{public_id}.svg")
    assert "<script>" not in svg.text and "&lt;script&gt;" in svg.text


RELEASE = "76df3287-6cda-33eb-8e9a-044b5e15ffdd"


async def public_json(env: Env) -> Any:
    public_id = (await env.client.post("/api/account/publish", headers=SAME)).json()["publicId"]
    return public_id, (await env.client.get(f"/p/{public_id}.json")).json()


async def test_a_listens_release_mbid_gives_the_archives_cover(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The card draws the cover of ``release_mbid``, fetched from the (simulated) Cover Art
    Archive (``COVERART_URL``) through its two redirects; the public JSON names its URL."""
    async with open_env(tmp_path, clock, coverart_url="http://sim.test/coverart") as env:
        assert (await env.connect()).status_code == 303
        await archive_cover_is_drawn(env)


async def archive_cover_is_drawn(env: Env) -> None:
    token = await token_of(env)
    await submit(
        env, {"listen_type": "playing_now", "payload": [listen(release_mbid=RELEASE)]}, token
    )
    public_id, shown = await public_json(env)
    assert shown["albumImageUrl"] == f"http://sim.test/coverart/release/{RELEASE}/front-250"
    svg = (await env.client.get(f"/p/{public_id}.svg")).text
    assert "data:image/png;base64," in svg
    assert (env.sim.calls["coverart"], env.sim.calls["archive"], env.sim.calls["archive_node"]) == (
        1,
        1,
        1,
    )


async def test_web_scrobbler_track_art_only_from_allowed_origins(connected: Env) -> None:
    """``trackArt`` on an allowed origin (``NOWPLAYING_IMAGE_ORIGINS``) is the cover; from
    anywhere else it is dropped, so neither the card nor a viewer's browser fetches it."""
    env = connected
    url = f"/hooks/web-scrobbler/{await token_of(env)}"
    art = "http://sim.test/covers/abc-300x300.png"
    await env.client.post(url, json=web_scrobbler_event("nowplaying", trackArt=art))
    public_id, shown = await public_json(env)
    assert shown["albumImageUrl"] == art
    assert "data:image/png;base64," in (await env.client.get(f"/p/{public_id}.svg")).text
    tracker = "https://tracker.example/pixel.gif"
    await env.client.post(url, json=web_scrobbler_event("nowplaying", track="B", trackArt=tracker))
    _, shown = await public_json(env)
    assert shown["title"] == "B", shown
    assert shown.get("albumImageUrl") is None, shown


# -- liblistenbrainz, unchanged, submitting to a live nowplaying --------------------------------


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    port = free_port()
    with serve(create_app(demo_settings(port, tmp_path)), port) as base:
        yield base, account_over_http(base)


def test_liblistenbrainz_imports_1000_listens(live: tuple[str, dict[str, Any]]) -> None:
    """A real import (1,000 listens of about 8 KB, 8 MB in all) is accepted over a socket, and
    the listen in it that finishes the playing-now ends it."""
    base, account = live
    client = liblistenbrainz.ListenBrainz(api_base_url=base)
    client.set_auth_token(account["pushToken"])
    client.submit_playing_now(
        liblistenbrainz.Listen(track_name="Song 999", artist_name="Kanye West")
    )
    url = f"{base}/p/{account['publicId']}.json"
    assert httpx.get(url, timeout=10).json()["title"] == "Song 999"
    imported = [
        liblistenbrainz.Listen(
            track_name=f"Song {i}",
            artist_name="Kanye West",
            listened_at=1_700_000_000 + i,
            additional_info={"note": "x" * 8000},
        )
        for i in range(1000)
    ]
    assert client.submit_multiple_listens(imported) == {"status": "ok"}
    assert httpx.get(url, timeout=10).json().get("source") != "push"


def test_liblistenbrainz_submits_to_nowplaying(live: tuple[str, dict[str, Any]]) -> None:
    base, account = live
    client = liblistenbrainz.ListenBrainz(api_base_url=base)
    client.set_auth_token(account["pushToken"])  # checked against nowplaying's validate-token
    client.submit_playing_now(
        liblistenbrainz.Listen(track_name="Pushed Song", artist_name="Any Player")
    )

    shown = httpx.get(f"{base}/p/{account['publicId']}.json", timeout=10).json()
    assert (shown["title"], shown["artist"]) == ("Pushed Song", "Any Player")
    with pytest.raises(liblistenbrainz.errors.InvalidAuthTokenException):
        liblistenbrainz.ListenBrainz(api_base_url=base).set_auth_token("not-a-token")


async def test_the_owner_page_shows_the_token_and_both_urls(connected: Env) -> None:
    token = await token_of(connected)
    page = (await connected.client.get("/")).text
    assert f"<code data-np-push-token>{token}</code>" in page
    assert f"{ORIGIN}/hooks/web-scrobbler/{token}" in page
    assert 'data-np-action="push-token"' in page


async def test_the_push_token_never_reaches_a_log(
    connected: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """The webhook's path carries the token: the access log shows the path without it."""
    token = await token_of(connected)
    caplog.set_level(logging.DEBUG)
    event = web_scrobbler_event("nowplaying")
    assert (await connected.client.post(f"/hooks/web-scrobbler/{token}", json=event)).is_success
    await submit(connected, {"listen_type": "playing_now", "payload": [listen()]}, token)
    await connected.client.post("/hooks/web-scrobbler/wrong-token", json=event)
    # The test's own client (httpx) logs the URLs it asks for; the server's lines are the rest.
    ours = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )
    assert "/hooks/web-scrobbler/<token>" in ours
    assert token not in ours and "wrong-token" not in ours


async def test_a_pushed_track_opens_nothing(connected: Env) -> None:
    """/p/{id}/open never leads where a push says: a pushed track has no link to follow."""
    env = connected
    token = await token_of(env)
    public_id = await env.publish()
    body = {"listen_type": "playing_now", "payload": [listen(origin_url="https://evil.example/")]}
    await submit(env, body, token)
    response = await env.client.get(f"/p/{public_id}/open")
    assert response.status_code == 404 and "evil" not in response.text
