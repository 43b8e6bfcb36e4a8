"""The owner's JSON API: ``/api/account`` is the ``Account`` model serialized; whatever body
``/api/account/settings`` gets is a 4xx with a message or a change, never a 500."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from harness.app import ORIGIN, SAME, Env
from harness.fuzz import (
    FUZZ,
    Fuzz,
    assert_sane,
    describe,
    json_values,
)
from hypothesis import example, given
from hypothesis import strategies as st

from nowplaying import schema
from nowplaying.models import SourceKind
from nowplaying.store import SourceLink

pytestmark = pytest.mark.anyio


@FUZZ
@given(body=json_values | st.dictionaries(st.just("lastPlayed"), json_values, min_size=1))
@example(body={"lastPlayed": True, "extra": [1, {"x": None}]}).via("hand-picked")
@example(body={"lastPlayed": 0}).via("hand-picked")
async def test_settings_json_bodies(fuzz: Fuzz, body: Any) -> None:
    """Any JSON body: 200 exactly when it is an object whose lastPlayed is a boolean, else 400."""
    response = await fuzz.env.client.post(
        "/api/account/settings",
        content=json.dumps(body),
        headers={**SAME, "Content-Type": "application/json"},
    )
    assert_sane(response, json_route=True)
    valid = isinstance(body, dict) and isinstance(body.get("lastPlayed"), bool)
    assert response.status_code == (200 if valid else 400), describe(response)


@FUZZ
@given(body=st.binary(max_size=2000))
@example(body=b"\xff\xfe{").via("hand-picked")
@example(body=b"[" * 50_000).via("deeply nested JSON, under the 64 KiB limit")
@example(body=b'{"lastPlayed":' * 4_000).via("deeply nested object")
async def test_settings_raw_bodies(fuzz: Fuzz, body: bytes) -> None:
    """Any bytes as the settings body (invalid UTF-8, deep nesting): a 400, never a 500."""
    response = await fuzz.env.client.post(
        "/api/account/settings",
        content=body,
        headers={**SAME, "Content-Type": "application/json"},
    )
    assert_sane(response, json_route=True)
    assert response.status_code in (200, 400), describe(response)


async def test_api_account_is_the_account_model(connected: Env) -> None:
    """/api/account, before and after publishing, is exactly what the model serializes: the
    keys in order, the links, the reconnect date in whole seconds (UTC, ``Z``)."""
    before = (await connected.client.get("/api/account")).json()
    published = await connected.client.post("/api/account/publish", headers=SAME)
    after = published.json()
    for data in (before, after):
        model = schema.Account.model_validate(data)
        assert list(model.data().items()) == list(data.items())  # the keys in order, too
        assert "reconsentUrl" not in data and "spotifyRefusal" in data
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["reconnectBy"])
    assert before["links"] is None and before["published"] is False
    base = f"{ORIGIN}/p/{after['publicId']}"
    assert after["links"] == {
        "page": base,
        "json": f"{base}.json",
        "svg": f"{base}.svg",
        "events": f"{base}/events",
        "open": f"{base}/open",
        "recent": f"{base}/recent.svg",
    }


# -- linked sources ------------------------------------------------------------------------------


async def _link_listenbrainz(env: Env) -> None:
    """Link the simulated ListenBrainz's demo user with its token, the owner's way."""
    data = {"token": "lb-demo-token"}
    response = await env.client.post("/login/listenbrainz", data=data, headers=SAME)
    assert response.status_code == 303, response.text


async def test_api_account_lists_the_sources_and_what_to_connect(connected: Env) -> None:
    """Kind, user and status of each linked source, never a secret; the offered rest to link."""
    body = (await connected.client.get("/api/account")).json()
    assert [(s["kind"], s["userName"], s["status"]) for s in body["sources"]] == [
        ("spotify", "demo", "active")
    ]
    assert body["connect"] == [
        {"kind": "lastfm", "url": "/login/lastfm"},
        {"kind": "listenbrainz", "url": "/login/listenbrainz"},
    ]
    await _link_listenbrainz(connected)
    response = await connected.client.get("/api/account")
    body = response.json()
    assert [s["kind"] for s in body["sources"]] == ["listenbrainz", "spotify"]
    assert body["connect"] == [{"kind": "lastfm", "url": "/login/lastfm"}]
    spotify = await connected.services.runtime.store.get_account("demo")
    assert spotify is not None and spotify.refresh_token not in response.text
    assert "lb-demo-token" not in response.text


async def test_unlinking_a_source_keeps_the_last_way_to_sign_in(connected: Env) -> None:
    """The only source: 409, saying so, nothing changed; with another linked, Spotify goes and
    the widget lives on without it (the session too), offering Spotify to connect again."""
    store = connected.services.runtime.store
    alone = await connected.client.delete("/api/account/sources/spotify", headers=SAME)
    assert alone.status_code == 409 and "only way to sign in" in alone.json()["message"]
    assert [s.kind for s in await store.list_sources("demo")] == ["spotify"]
    await _link_listenbrainz(connected)
    cross = await connected.client.delete("/api/account/sources/spotify")
    assert cross.status_code == 403
    for path in ("/api/account/sources/push", "/api/account/sources/lastfm"):
        assert (await connected.client.delete(path, headers=SAME)).status_code == 404
    response = await connected.client.delete("/api/account/sources/spotify", headers=SAME)
    assert response.status_code == 200, response.text
    assert [s["kind"] for s in response.json()["sources"]] == ["listenbrainz"]
    assert {"kind": "spotify", "url": "/login"} in response.json()["connect"]
    widget = await store.get_account("demo")
    assert widget is not None and not widget.spotify
    assert (await connected.client.get("/api/account")).status_code == 200
    last = await connected.client.delete("/api/account/sources/listenbrainz", headers=SAME)
    assert last.status_code == 409


async def test_the_owner_page_lists_sources_escaped_with_links_to_the_rest(
    connected: Env,
) -> None:
    link = SourceLink("demo", SourceKind.LISTENBRAINZ, "<i>lb</i>", "t", connected_at=1.0)
    await connected.services.runtime.store.put_source(link)
    page = (await connected.client.get("/")).text
    assert 'data-np-source="spotify"' in page and 'data-np-unlink="listenbrainz"' in page
    assert "&lt;i&gt;lb&lt;/i&gt;" in page and "<i>lb</i>" not in page
    assert 'href="/login/lastfm"' in page and 'href="/login/listenbrainz"' not in page


async def test_a_private_lastfm_profile_shows_its_fix_to_the_owner_and_its_notice_to_viewers(
    connected: Env,
) -> None:
    """Error 17 while the widget is watched: /api/account and the owner page name the fix beside
    the Last.fm source; the public JSON carries the notice; never a 500."""
    store = connected.services.runtime.store
    connected.sim.lastfm.add_user("shy", private=True)
    await store.put_source(SourceLink("demo", SourceKind.LASTFM, "shy", "k", connected_at=1.0))
    await connected.services.runtime.hub.restart("demo")
    connected.sim.player("demo").stop()
    public_id = await connected.publish()
    await connected.services.runtime.hub.forget("demo")
    assert (await connected.client.get(f"/p/{public_id}.json")).status_code == 200
    # Spotify's answer first, Last.fm's right after. The widget's sources are listed from the
    # store beside the poller (a thread's I/O the fake clock does not wait for): step until the
    # notice shows, within a bounded number of poll steps, never a fixed count that a loaded
    # machine may outrun.
    for _ in range(40):
        await connected.clock.advance(0.5, step=0.5)
        shown = await connected.client.get(f"/p/{public_id}.json")
        assert shown.status_code == 200
        if "notice" in shown.json():
            break
    assert shown.json()["notice"] == {
        "source": "lastfm",
        "kind": "private",
        "message": "Listening is private on Last.fm",
    }
    sources = (await connected.client.get("/api/account")).json()["sources"]
    lastfm = next(s for s in sources if s["kind"] == "lastfm")
    assert "Hide recent listening information" in lastfm["problem"]
    assert "problem" not in next(s for s in sources if s["kind"] == "spotify")
    page = (await connected.client.get("/")).text
    assert "data-np-source-problem" in page and "Hide recent listening information" in page
