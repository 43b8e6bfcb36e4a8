"""The OpenAPI document against real answers: every state, event and error the app sends is
what /openapi.json describes."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from harness.app import ORIGIN, SAME, Env
from harness.contract import DOC_URI, contract
from harness.fuzz import (
    FUZZ,
    SESSION,
    Fuzz,
    assert_host_refusal,
    describe,
    encode_headers,
    headers_strategy,
    host_refused,
    query_pairs,
)
from harness.sse import SSEReader
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

pytestmark = pytest.mark.anyio


async def test_openapi_describes_every_state(connected: Env) -> None:
    """/api/spotify, /api/account and /p/{id}.json in every state validate against the document."""
    api = await contract(connected)
    owner, player = connected.client, connected.sim.player("demo")
    api.check("/api/account", await owner.get("/api/account"))  # before publishing
    published = await owner.post("/api/account/publish", headers=SAME)
    api.check("/api/account/publish", published)
    public_id = published.json()["publicId"]
    api.check("/api/account", await owner.get("/api/account"))
    public = f"/p/{public_id}.json"

    def paused() -> None:
        player.play(0, progress_ms=10_000)
        player.pause()

    states: dict[str, Callable[[], None]] = {
        "track": lambda: player.play(0),
        "hostile track": lambda: player.play(1, progress_ms=3000),
        "episode": lambda: player.play(4),
        "ad": player.play_ad,
        "paused": paused,
        "local file": lambda: player.play(7),
        "nothing": player.stop,
    }
    seen: dict[str, int] = {}
    for name, arrange in states.items():
        arrange()
        await connected.services.runtime.hub.forget("demo")
        private = await owner.get("/api/spotify")
        api.check("/api/spotify", private)
        api.check("/p/{public_id}.json", await owner.get(public))
        seen[name] = private.status_code

    # Stale: good data, then Spotify failing.
    player.play(0)
    await connected.services.runtime.hub.forget("demo")
    await owner.get("/api/spotify")
    connected.sim.faults.add("currently-playing", status=503, times=3)
    await connected.clock.advance(5.5)
    stale = await owner.get("/api/spotify")
    assert stale.json().get("stale") is True
    api.check("/api/spotify", stale)
    api.check("/p/{public_id}.json", await owner.get(public))
    connected.sim.faults.clear()

    # Unavailable: Spotify failing before anything is known.
    connected.sim.faults.add("currently-playing", status=503, times=50)
    await connected.services.runtime.hub.forget("demo")
    unavailable = await owner.get("/api/spotify")
    assert unavailable.status_code == 503
    api.check("/api/spotify", unavailable)
    api.check("/p/{public_id}.json", await owner.get(public))
    connected.sim.faults.clear()

    settings_on = await owner.post("/api/account/settings", json={"lastPlayed": True}, headers=SAME)
    assert "reconsentUrl" in settings_on.json()
    api.check("/api/account/settings", settings_on)
    api.check("/api/account/rotate", await owner.post("/api/account/rotate", headers=SAME))
    api.check("/api/account/publish", await owner.post("/api/account/publish", headers={}))

    # Not connected, then a revoked grant (reconnect).
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=connected.app), base_url=ORIGIN
    ) as anonymous:
        for path in ("/api/spotify", "/api/account"):
            api.check(path, await anonymous.get(path))
        api.check("/p/{public_id}.json", await anonymous.get(public))  # the rotated-away id
    connected.sim.revoke("demo")
    connected.services.runtime.tokens.forget("demo")
    await connected.services.runtime.hub.forget("demo")
    reconnect = await owner.get("/api/spotify")
    assert reconnect.json() == {"error": "reconnect_required"}
    api.check("/api/spotify", reconnect)
    api.check("/api/account", await owner.get("/api/account"))
    new_id = (await owner.get("/api/account")).json()["publicId"]
    api.check("/p/{public_id}.json", await owner.get(f"/p/{new_id}.json"))
    assert seen == dict.fromkeys(states, 200)


async def test_openapi_describes_pause_and_reconnect_reason(connected: Env) -> None:
    """/api/account with Spotify's pause in force and with a reconnect reason."""
    api = await contract(connected)
    hub = connected.services.runtime.hub
    hub.app_pause.until, hub.app_pause.reason = connected.clock.now() + 3600, "QUOTA_EXCEEDED"
    paused = await connected.client.get("/api/account")
    assert paused.json()["pauseReason"] == "QUOTA_EXCEEDED"
    api.check("/api/account", paused)
    hub.app_pause.until = 0.0  # (a pause would keep the revoke from being seen)
    connected.sim.revoke("demo")
    connected.services.runtime.tokens.forget("demo")
    await connected.services.runtime.hub.forget("demo")
    await connected.client.get("/api/spotify")
    revoked = await connected.client.get("/api/account")
    assert revoked.json()["reconnectReason"] == "revoked"
    api.check("/api/account", revoked)


async def test_openapi_describes_last_played(connected: Env) -> None:
    """Nothing playing with last played on (and granted) matches Nothing + LastPlayed."""
    api = await contract(connected)
    owner = connected.client
    await owner.post("/api/account/settings", json={"lastPlayed": True}, headers=SAME)
    await connected.connect(login_path="/login?with=recently-played")
    public_id = (await owner.post("/api/account/publish", headers=SAME)).json()["publicId"]
    connected.sim.player("demo").stop()
    await connected.services.runtime.hub.forget("demo")
    nothing = await owner.get("/api/spotify")
    assert "lastPlayed" in nothing.json()
    api.check("/api/spotify", nothing)
    api.check("/p/{public_id}.json", await owner.get(f"/p/{public_id}.json"))
    api.check("/api/account", await owner.get("/api/account"))


async def test_openapi_describes_event_data(connected: Env) -> None:
    """Each SSE ``data:`` is a NowPlaying or Error object, as the document says."""
    api = await contract(connected)
    either = {
        "oneOf": [
            {"$ref": f"{DOC_URI}#/components/schemas/NowPlaying"},
            {"$ref": f"{DOC_URI}#/components/schemas/Error"},
        ]
    }
    validator = Draft202012Validator(either, registry=api.registry)
    cookie = f"{SESSION}={connected.client.cookies.get(SESSION)}"
    connected.sim.player("demo").play(0)
    await connected.services.runtime.hub.forget("demo")
    async with SSEReader(connected.app, "/api/spotify/events", {"Cookie": cookie}) as sse:
        await sse.wait_for(1)
        connected.sim.player("demo").play_ad()
        await connected.clock.advance(5.5)
        await sse.wait_for(2)
        connected.sim.faults.add("currently-playing", status=503, times=20)
        await connected.services.runtime.hub.forget("demo")
        await sse.wait_for(3)
    assert len(sse.events) >= 3
    for event in sse.events:
        assert list(validator.iter_errors(event.data)) == [], event.data


DOCUMENTED_GETS = ("/api/spotify", "/api/account", "/p/{id}.json", "/p/{id}.svg", "/p/{id}")


@FUZZ
@given(route=st.sampled_from(DOCUMENTED_GETS), pairs=query_pairs, headers=headers_strategy)
async def test_fuzzed_answers_match_the_document(
    fuzz: Fuzz, route: str, pairs: list[tuple[str, str]], headers: dict[str, str]
) -> None:
    """Fuzzed queries and headers on documented GETs: documented status, content and schema."""
    if fuzz.contract is None:
        fuzz.contract = await contract(fuzz.env)
    api = fuzz.contract
    public_id = await fuzz.public_id()
    path = route.replace("{id}", public_id)
    template = route.replace("{id}", "{public_id}")
    for client in (fuzz.env.client, fuzz.anon):
        response = await client.get(f"{path}?{urlencode(pairs)}", headers=encode_headers(headers))
        assert response.status_code < 500, describe(response)
        if host_refused(response):  # refused before any route, like a 429: the same everywhere
            assert_host_refusal(response)
            continue
        assert api.errors(template, response) == [], describe(response)


async def test_open_answers_are_documented(connected: Env) -> None:
    """/p/{id}/open with something playing is the documented 302 to open.spotify.com."""
    api = await contract(connected)
    public_id = (await connected.client.post("/api/account/publish", headers=SAME)).json()[
        "publicId"
    ]
    connected.sim.player("demo").play(0)
    await connected.services.runtime.hub.forget("demo")
    response = await connected.client.get(f"/p/{public_id}/open")
    api.check("/p/{public_id}/open", response)
    assert urlsplit(response.headers["location"]).netloc == "open.spotify.com"


async def test_error_answers_of_public_paths_are_documented(connected: Env) -> None:
    """Unknown ids and nothing to open: every status a documented path answers is documented."""
    api = await contract(connected)
    public_id = (await connected.client.post("/api/account/publish", headers=SAME)).json()[
        "publicId"
    ]
    connected.sim.player("demo").stop()
    await connected.services.runtime.hub.forget("demo")
    unknown = "A" * 22
    answers = {
        "/p/{public_id}.json": await connected.client.get(f"/p/{unknown}.json"),
        "/p/{public_id}.svg": await connected.client.get(f"/p/{unknown}.svg"),
        "/p/{public_id}": await connected.client.get(f"/p/{unknown}"),
        "/p/{public_id}/open": await connected.client.get(f"/p/{unknown}/open"),
    }
    problems = [e for template, r in answers.items() for e in api.errors(template, r)]
    nothing = await connected.client.get(f"/p/{public_id}/open")
    problems += [f"nothing playing: {e}" for e in api.errors("/p/{public_id}/open", nothing)]
    async with SSEReader(connected.app, f"/p/{unknown}/events") as sse:
        status = str(await sse.wait_status())
    if status not in api.doc["paths"]["/p/{public_id}/events"]["get"]["responses"]:
        problems.append(f"/p/{{public_id}}/events: undocumented status {status}")
    assert not problems, "\n".join(problems)


async def test_the_png_routes_are_in_the_openapi_document(env: Env) -> None:
    paths = (await env.client.get("/openapi.json")).json()["paths"]
    for path in ("/p/{public_id}.png", "/p/{public_id}/social.png", "/p/{public_id}/recent.png"):
        assert "image/png" in paths[path]["get"]["responses"]["200"]["content"]
