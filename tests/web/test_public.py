"""Share links: publishing, rotation, the public JSON/SVG/PNG/embed/events/open endpoints."""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from harness.app import ORIGIN, SAME, Env, published
from harness.cards import png_of
from harness.fuzz import (
    FUZZ,
    REAL_ID,
    Fuzz,
    assert_sane,
    describe,
    percent,
)
from harness.helpers import fixture_json
from harness.sse import SSEReader
from hypothesis import example, given
from hypothesis import strategies as st

from nowplaying.cards import png
from nowplaying.cards.colours import MIN_CONTRAST, contrast
from nowplaying.cards.covers import CoverFetcher
from nowplaying.cards.themes import THEMES, Theme
from nowplaying.sources import bounds
from nowplaying.web.public import EDGE_CACHE, SVG_BUDGET

pytestmark = pytest.mark.anyio


async def fresh(env: Env) -> None:
    """Drop the shared state so the next request polls again."""
    await env.services.runtime.hub.forget("demo")


async def test_nothing_is_public_until_published(connected: Env) -> None:
    """A new account has no public id; /api/account says so."""
    info = (await connected.client.get("/api/account")).json()
    assert info["published"] is False
    assert info["publicId"] is None
    assert info["links"] is None


async def test_publish_gives_an_unguessable_id(connected: Env) -> None:
    """Publishing yields >= 128 random bits, not the Spotify user id, and the share links."""
    public_id = await connected.publish()
    assert len(public_id) >= 22  # 16 bytes, base64url
    assert "demo" not in public_id
    info = (await connected.client.get("/api/account")).json()
    assert info["links"]["svg"] == f"{ORIGIN}/p/{public_id}.svg"
    assert info["links"]["json"] == f"{ORIGIN}/p/{public_id}.json"
    assert await connected.publish() == public_id  # publishing twice keeps the link


async def test_owner_api_needs_session_and_same_origin(env: Env, connected: Env) -> None:
    """No session: 401. Another site's Origin: 403, nothing published."""
    cross = await connected.client.post(
        "/api/account/publish", headers={"Origin": "https://evil.test"}
    )
    assert cross.status_code == 403
    assert (await connected.client.get("/api/account")).json()["published"] is False
    connected.client.cookies.clear()
    assert (await connected.client.post("/api/account/publish", headers=SAME)).status_code == 401
    assert (await connected.client.get("/api/account")).status_code == 401


async def test_rotate_kills_old_links(connected: Env) -> None:
    """After rotation: old .json 404, old .svg a 200 'Not found' card, old page 404."""
    old = await connected.publish()
    assert (await connected.client.get(f"/p/{old}.json")).status_code == 200
    rotated = await connected.client.post("/api/account/rotate", headers=SAME)
    new = rotated.json()["publicId"]
    assert new != old
    assert (await connected.client.get(f"/p/{new}.json")).status_code == 200
    await _assert_dead(connected, old)


async def test_unpublish_kills_links(connected: Env) -> None:
    """After unpublishing, the id is dead everywhere."""
    public_id = await connected.publish()
    response = await connected.client.post("/api/account/unpublish", headers=SAME)
    assert response.json()["published"] is False
    await _assert_dead(connected, public_id)


async def _assert_dead(env: Env, public_id: str) -> None:
    js = await env.client.get(f"/p/{public_id}.json")
    assert js.status_code == 404
    assert js.json() == {"error": "not_found"}
    svg = await env.client.get(f"/p/{public_id}.svg")
    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert "Not found" in svg.text
    assert (await env.client.get(f"/p/{public_id}")).status_code == 404
    assert (await env.client.get(f"/p/{public_id}/open")).status_code == 404


@pytest.mark.parametrize("bad", ["x", "a.b-c", "a" * 200, "%00", "demo"])
async def test_malformed_public_ids(connected: Env, bad: str) -> None:
    """Garbage ids are simply not found, never a 500."""
    await connected.publish()
    assert (await connected.client.get(f"/p/{bad}.json")).status_code == 404
    assert (await connected.client.get(f"/p/{bad}.svg")).status_code == 200


async def test_public_json_track_with_cors(connected: Env) -> None:
    """The public JSON is /api/spotify's, with CORS open and no cookie needed."""
    connected.sim.player("demo").play(1, progress_ms=3000)
    public_id = await connected.publish()
    await fresh(connected)
    connected.client.cookies.clear()
    response = await connected.client.get(f"/p/{public_id}.json")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    body = response.json()
    assert body["title"] == '<Intro> & "Outro"'
    assert body["isPlaying"] is True


async def test_public_json_episode_nothing_and_reconnect(connected: Env) -> None:
    """Episode shows the show; nothing is isPlaying false; a dead grant is reconnect."""
    player = connected.sim.player("demo")
    public_id = await connected.publish()
    player.play(4)
    await fresh(connected)
    episode = (await connected.client.get(f"/p/{public_id}.json")).json()
    assert episode["type"] == "episode"
    assert episode["artist"] == "The Escaping Hour"
    player.stop()
    await fresh(connected)
    assert (await connected.client.get(f"/p/{public_id}.json")).json() == {"isPlaying": False}
    connected.sim.revoke("demo")
    connected.services.runtime.tokens.forget("demo")
    await fresh(connected)
    response = await connected.client.get(f"/p/{public_id}.json")
    assert response.status_code == 200
    assert response.json() == {"error": "reconnect_required"}
    svg = await connected.client.get(f"/p/{public_id}.svg")
    assert "Reconnect needed" in svg.text


async def test_public_json_stale(connected: Env) -> None:
    """Spotify failing after good data: stale data, still 200."""
    public_id = await connected.publish()
    await fresh(connected)
    await connected.client.get(f"/p/{public_id}.json")
    connected.sim.faults.add("currently-playing", status=503, times=3)
    await connected.clock.advance(5.5)
    body = (await connected.client.get(f"/p/{public_id}.json")).json()
    assert body["stale"] is True


async def test_svg_card_is_xml_with_embedded_cover_and_etag(connected: Env) -> None:
    """The card: well-formed SVG, hostile title escaped, cover as a data URI, ETag/304."""
    connected.sim.player("demo").play(1, progress_ms=3000)
    public_id = await connected.publish()
    await fresh(connected)
    response = await connected.client.get(f"/p/{public_id}.svg")
    assert response.status_code == 200
    assert response.headers["cache-control"] == EDGE_CACHE["Cache-Control"]
    root = ET.fromstring(response.text)
    assert root.tag.endswith("svg")
    texts = " ".join(t for t in root.itertext())
    assert '<Intro> & "Outro"' in texts
    assert "<script" not in response.text
    assert "data:image/png;base64," in response.text
    etag = response.headers["etag"]
    again = await connected.client.get(f"/p/{public_id}.svg", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""


async def test_svg_themes_and_compact(connected: Env) -> None:
    """theme=dark and size=compact change the card; a junk theme is a 400 that is still an image."""
    public_id = await connected.publish()
    light = (await connected.client.get(f"/p/{public_id}.svg?theme=light")).text
    dark = (await connected.client.get(f"/p/{public_id}.svg?theme=dark")).text
    junk = await connected.client.get(f"/p/{public_id}.svg?theme=<script>")
    compact = (await connected.client.get(f"/p/{public_id}.svg?size=compact")).text
    assert light != dark
    assert junk.status_code == 400  # a bad option: still an image, naming it
    assert junk.headers["content-type"].startswith("image/svg+xml")
    assert "<script>" not in junk.text
    assert ET.fromstring(compact).get("width") != ET.fromstring(light).get("width")


async def test_card_flood_costs_no_extra_spotify_calls(connected: Env) -> None:
    """100 card and JSON views at once: one currently-playing call."""
    public_id = await connected.publish()
    await fresh(connected)
    connected.sim.reset_calls()
    paths = [f"/p/{public_id}.svg", f"/p/{public_id}.json"] * 50
    responses = await asyncio.gather(*(connected.client.get(p) for p in paths))
    assert all(r.status_code == 200 for r in responses)
    assert connected.sim.calls["currently-playing"] == 1
    assert connected.sim.calls["cover"] == 1  # fetched once, embedded in all 50 cards


async def get_while_time_passes(
    env: Env, path: str, *, limit: float = 30.0
) -> tuple[httpx.Response, float]:
    """GET ``path`` while fake time moves on in small steps (a budget waits on the clock, so a
    hung upstream is given up only as fake time passes); the response and the fake seconds."""
    start = env.clock.now()
    request = asyncio.create_task(env.client.get(path))
    while not request.done() and env.clock.now() - start < limit:
        await env.clock.advance(0.02)
        await asyncio.wait({request}, timeout=0.005)  # the condition, not a fixed nap
    if not request.done():
        request.cancel()
        pytest.fail(f"{path}: no answer within {limit} fake seconds")
    return request.result(), env.clock.now() - start


async def test_svg_answers_when_spotify_hangs(connected: Env) -> None:
    """Spotify hanging and nothing known: the card still answers, as 'unavailable', once its
    state budget has passed on the clock (well within the 2 s the card promises)."""
    public_id = await connected.publish()
    await fresh(connected)
    connected.sim.faults.add("currently-playing", hang=True)
    response, took = await get_while_time_passes(connected, f"/p/{public_id}.svg")
    assert response.status_code == 200
    assert "unavailable" in response.text.lower()
    assert SVG_BUDGET * 0.6 <= took < 2.0


async def test_svg_answers_without_art_when_the_cover_hangs(connected: Env) -> None:
    """The image host hanging: the card comes without art."""
    public_id = await connected.publish()
    await fresh(connected)
    await connected.client.get(f"/p/{public_id}.json")

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()  # until the card gives up and cancels the request
        return httpx.Response(200)

    hanging = httpx.AsyncClient(transport=httpx.MockTransport(hang))
    connected.services.covers = CoverFetcher(
        hanging, allowed_hosts=("http://sim.test",), clock=connected.clock
    )
    response, took = await get_while_time_passes(connected, f"/p/{public_id}.svg")
    assert response.status_code == 200
    assert "data:image" not in response.text
    assert SVG_BUDGET <= took < 2.0  # given up at the card's budget, on the clock


async def test_embed_page_can_be_framed_anywhere(connected: Env) -> None:
    """/p/{id}: frame-ancestors *, no X-Frame-Options, no cookies needed, theme kept safe."""
    public_id = await connected.publish()
    connected.client.cookies.clear()
    response = await connected.client.get(f"/p/{public_id}?theme=dark")
    assert response.status_code == 200
    assert "frame-ancestors *" in response.headers["content-security-policy"]
    assert "x-frame-options" not in response.headers
    assert f'data-endpoint="/p/{public_id}.json"' in response.text
    assert 'data-theme="dark"' in response.text
    hostile = await connected.client.get(f'/p/{public_id}?theme="><script>')
    assert "<script>" not in hostile.text.replace('<script src="/static/widget.js"', "")


async def test_public_events(connected: Env) -> None:
    """/p/{id}/events streams the same states as the private stream."""
    connected.sim.player("demo").play(0)
    public_id = await connected.publish()
    await fresh(connected)
    async with SSEReader(connected.app, f"/p/{public_id}/events") as sse:
        events = await sse.wait_for(1)
        assert events[0].data["title"] == "Hoppípolla"
        assert sse.response_headers["access-control-allow-origin"] == "*"
    async with SSEReader(connected.app, "/p/not-a-real-id-0000000/events") as missing:
        assert await missing.wait_status() == 404


async def test_open_redirects_only_to_open_spotify(connected: Env) -> None:
    """/open goes to open.spotify.com for the playing track; nothing else, ever."""
    connected.sim.player("demo").play(0)
    public_id = await connected.publish()
    await fresh(connected)
    response = await connected.client.get(f"/p/{public_id}/open")
    assert response.status_code == 302
    assert response.headers["location"].startswith("https://open.spotify.com/track/")
    hostile: dict[str, Any] = fixture_json("currently-playing-track.json")["item"]
    hostile["external_urls"] = {"spotify": "https://evil.test/phish"}
    connected.sim.player("demo").set_playlist([hostile])
    await fresh(connected)
    refused = await connected.client.get(f"/p/{public_id}/open")
    assert refused.status_code == 404
    connected.sim.player("demo").play(0)
    connected.sim.player("demo").stop()
    await fresh(connected)
    assert (await connected.client.get(f"/p/{public_id}/open")).status_code == 404


async def test_last_played_needs_consent_then_shows(connected: Env) -> None:
    """Turning on last played asks for the extra scope; then nothing playing shows it, labelled."""
    public_id = await connected.publish()
    response = await connected.client.post(
        "/api/account/settings", json={"lastPlayed": True}, headers=SAME
    )
    assert response.json()["reconsentUrl"] == "/login?with=recently-played"
    login = await connected.client.get("/login?with=recently-played")
    assert "user-read-recently-played" in login.headers["location"]
    assert "show_dialog=true" in login.headers["location"]
    await connected.connect(login_path="/login?with=recently-played")  # consent to one more scope
    info = (await connected.client.get("/api/account")).json()
    assert info["lastPlayedGranted"] is True
    assert info["lastPlayed"] is True
    connected.sim.player("demo").stop()
    await fresh(connected)
    body = (await connected.client.get(f"/p/{public_id}.json")).json()
    assert body["isPlaying"] is False
    assert body["lastPlayed"]["title"]
    assert body["lastPlayed"]["playedAt"].endswith("Z")
    svg = (await connected.client.get(f"/p/{public_id}.svg")).text
    assert "Last played" in svg


async def test_last_played_off_by_default(connected: Env) -> None:
    """Without the setting, nothing playing is just {"isPlaying": false} and no extra call."""
    connected.sim.player("demo").stop()
    await fresh(connected)
    connected.sim.reset_calls()
    assert (await connected.client.get("/api/spotify")).json() == {"isPlaying": False}
    assert connected.sim.calls["recently-played"] == 0


async def test_settings_rejects_bad_bodies(connected: Env) -> None:
    """Malformed settings bodies: a 400 with a message."""
    for body in (b"not json", b"[]", b'{"lastPlayed": "yes"}'):
        response = await connected.client.post(
            "/api/account/settings",
            content=body,
            headers={**SAME, "Content-Type": "application/json"},
        )
        assert response.status_code == 400
        assert response.json()["message"]


async def test_home_shows_share_controls_and_snippets(connected: Env) -> None:
    """The owner's page offers Publish, then the snippets with the public URLs."""
    home = (await connected.client.get("/")).text
    assert "Publish my widget" in home
    public_id = await connected.publish()
    home = (await connected.client.get("/")).text
    assert f"{ORIGIN}/p/{public_id}.svg" in home
    assert "[![Now playing on Spotify]" in home
    assert "&lt;iframe" in home
    assert "reconnect every six months" in home


async def test_owner_page_shows_spotifys_quota_pause(connected: Env) -> None:
    """QUOTA_EXCEEDED (hours): the owner page says until when; /api/account has the numbers."""
    hub = connected.services.runtime.hub
    until = connected.clock.now() + 5.7 * 3600
    hub.app_pause.until, hub.app_pause.reason = until, "QUOTA_EXCEEDED"
    account = (await connected.client.get("/api/account")).json()
    assert (account["pausedUntil"], account["pauseReason"]) == (
        round(until * 1000),
        "QUOTA_EXCEEDED",
    )
    home = (await connected.client.get("/")).text
    assert f"Spotify paused this app until {datetime.fromtimestamp(until, UTC):%H:%M} (UTC)" in home


async def test_a_rolling_window_pause_is_data_not_a_notice(connected: Env) -> None:
    """A seconds-long 429 pause: in /api/account, not on the page; gone once it has passed."""
    hub = connected.services.runtime.hub
    until = connected.clock.now() + 30
    hub.app_pause.until, hub.app_pause.reason = until, "rate_limit"
    account = (await connected.client.get("/api/account")).json()
    assert (account["pausedUntil"], account["pauseReason"]) == (round(until * 1000), "rate_limit")
    assert "paused this app" not in (await connected.client.get("/")).text
    await connected.clock.advance(31)
    account = (await connected.client.get("/api/account")).json()
    assert (account["pausedUntil"], account["pauseReason"]) == (None, None)


async def test_a_hostile_upstream_answer_reaches_viewers_bounded(connected: Env) -> None:
    """A 10 MB title, a negative progress and a javascript: link reach the public JSON and the
    card as 512 characters, 0 and nothing."""
    public_id = await connected.publish()
    await fresh(connected)
    item = {
        "type": "track",
        "name": "\U0001f3b5" * 5_000_000,
        "duration_ms": 200_000,
        "artists": [{"name": "A"}],
        "external_urls": {"spotify": "javascript:alert(1)"},
    }
    body = {"is_playing": True, "currently_playing_type": "track", "progress_ms": -1, "item": item}
    connected.sim.faults.add("currently-playing", status=200, body=body)
    answer = await connected.client.get(f"/p/{public_id}.json")
    assert answer.status_code == 200
    data = answer.json()
    assert len(data["title"]) == bounds.MAX_TEXT
    assert data["progressMs"] == 0
    assert len(answer.content) < 10_000
    card = await connected.client.get(f"/p/{public_id}.svg")
    assert card.status_code == 200
    assert len(card.content) < 200_000
    assert "javascript:" not in card.text + answer.text


@FUZZ
@given(
    raw_id=st.one_of(
        st.text(max_size=80).map(lambda s: quote(s, safe="")),
        st.binary(max_size=40).map(percent),
        st.from_regex(r"[A-Za-z0-9_-]{16,64}", fullmatch=True),
        st.text("%0123456789ABCDEFabcdefgz/", max_size=40),
        st.just(REAL_ID),
    ),
    suffix=st.sampled_from([".json", ".svg", "", "/open", "/"]),
)
@example(raw_id="%00", suffix=".json").via("hand-picked")
@example(raw_id="%FF%FE", suffix=".svg").via("hand-picked")
@example(raw_id="0%2F", suffix="").via("found by Hypothesis: the trailing-slash redirect")
@example(raw_id="%2F%2Fevil.example", suffix="").via("a protocol-relative path")
@example(raw_id=REAL_ID, suffix="/").via("the real id with a trailing slash")
@example(raw_id=REAL_ID, suffix="/open").via("the one redirect")
@example(raw_id=REAL_ID, suffix=".json").via("the real id")
@example(raw_id=REAL_ID, suffix=".svg").via("the real id")
async def test_public_ids_never_500(fuzz: Fuzz, raw_id: str, suffix: str) -> None:
    """Any public id: a 404 (JSON for .json), a 200 card for .svg, never a 500; a trailing
    slash is a 404; the only redirect is /open of a real id, to open.spotify.com."""
    real = raw_id == REAL_ID
    if real:
        raw_id = await fuzz.public_id()
        fuzz.env.sim.player("demo").play(0)
        await fuzz.env.services.runtime.hub.forget("demo")
    response = await fuzz.anon.get(f"/p/{raw_id}{suffix}")
    routed = unquote(response.request.url.path)  # what the router sees
    assert_sane(response, json_route=re.fullmatch(r"/p/[^/]+\.json", routed) is not None)
    if re.fullmatch(r"/p/[^/]+\.svg", routed):
        assert response.status_code == 200, describe(response)
        assert response.headers["content-type"].startswith("image/svg+xml")
    if routed.endswith("/") and routed.startswith("/p/"):  # ("/p/.." is the home page)
        assert response.status_code == 404, describe(response)
    if "location" in response.headers:
        assert real and suffix == "/open", describe(response)
        assert response.headers["location"].startswith("https://open.spotify.com/")
    if real and suffix != "/":
        assert response.status_code == (302 if suffix == "/open" else 200), describe(response)


NS = "{http://www.w3.org/2000/svg}"


def svg_of(response: httpx.Response, status: int = 200) -> ET.Element:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("image/svg+xml")
    return ET.fromstring(response.text)


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("theme=neon", "theme"),
        ("bg=red", "bg"),
        ("width=5000", "width"),
        ("width=abc", "width"),
        ("radius=-1", "radius"),
        ("hide=cover,lyrics", "hide"),
        ("idle=maybe", "idle"),
        ("transparent=perhaps", "transparent"),
        ("idle_text=" + "x" * 61, "idle_text"),
    ],
)
async def test_a_bad_parameter_is_an_image_that_names_it(
    connected: Env, query: str, param: str
) -> None:
    """400 (the document says so), still image/svg+xml (a browser draws an ``<img>`` whatever its
    status): the parameter named in the picture and its alt text; no Spotify call."""
    public_id = await published(connected)
    connected.sim.reset_calls()
    root = svg_of(await connected.client.get(f"/p/{public_id}.svg?{query}"), 400)
    assert f"Bad parameter: {param}" in "".join(root.itertext())
    assert "bad-option" in (root.get("class") or "")
    assert connected.sim.calls["currently-playing"] == 0


async def test_unknown_parameters_are_ignored(connected: Env) -> None:
    """A cache buster (?v=2) changes nothing."""
    public_id = await published(connected)
    plain = await connected.client.get(f"/p/{public_id}.svg")
    busted = await connected.client.get(f"/p/{public_id}.svg?v=2&cache=now")
    assert busted.text == plain.text


async def test_options_shape_the_card(connected: Env) -> None:
    """Width, colours, transparency and hidden parts arrive in the card; no cover, no fetch."""
    connected.sim.player("demo").play(1, progress_ms=3000)
    public_id = await published(connected)
    connected.sim.reset_calls()
    query = "theme=dark&width=520&bg=%230d1117&text=e6edf3&accent=f0a&radius=4&hide=cover,progress"
    response = await connected.client.get(f"/p/{public_id}.svg?{query}")
    root = svg_of(response)
    assert root.get("width") == "520"
    style = "".join(s.text or "" for s in root.iter(f"{NS}style"))
    assert ".bg{fill:#0d1117" in style and ".title{fill:#e6edf3}" in style
    assert ".dot{fill:#ff00aa}" in style
    assert 'rx="4"' in response.text
    assert root.find(f"{NS}image") is None and 'class="track"' not in response.text
    assert connected.sim.calls["cover"] == 0
    clear = svg_of(await connected.client.get(f"/p/{public_id}.svg?transparent=1"))
    assert ".bg{fill:none;stroke:none}" in "".join(s.text or "" for s in clear.iter(f"{NS}style"))


async def test_idle_text_and_hidden_idle_card(connected: Env) -> None:
    """While nothing plays: the owner's text, or a 1x1 empty image."""
    connected.sim.player("demo").stop()
    public_id = await published(connected)
    text = svg_of(await connected.client.get(f"/p/{public_id}.svg?idle=text&idle_text=Offline"))
    assert "Offline" in "".join(text.itertext())
    hidden = svg_of(await connected.client.get(f"/p/{public_id}.svg?idle=hide"))
    assert (hidden.get("width"), hidden.get("height")) == ("1", "1")
    assert not list(hidden.iter(f"{NS}text"))


async def test_the_card_revalidates_while_a_track_plays(connected: Env) -> None:
    """Within one progress step the ETag holds (304); the next step is a new card."""
    connected.sim.player("demo").play(1, progress_ms=1000)
    public_id = await published(connected)
    first = await connected.client.get(f"/p/{public_id}.svg")
    etag = first.headers["etag"]
    await connected.clock.advance(3.0)  # 4.0 s into the track: the same 5 s step
    same = await connected.client.get(f"/p/{public_id}.svg", headers={"If-None-Match": etag})
    assert same.status_code == 304 and same.headers["etag"] == etag
    await connected.clock.advance(1.5)  # 5.5 s: the next step, drawn at most 5 s late
    moved = await connected.client.get(f"/p/{public_id}.svg", headers={"If-None-Match": etag})
    assert moved.status_code == 200
    assert moved.headers["etag"] != etag


async def test_a_real_change_is_a_new_card_at_once(connected: Env) -> None:
    """A skip within the same step is not hidden by the step."""
    connected.sim.player("demo").play(1, progress_ms=1000)
    public_id = await published(connected)
    etag = (await connected.client.get(f"/p/{public_id}.svg")).headers["etag"]
    connected.sim.player("demo").play(2, progress_ms=1000)
    await connected.services.runtime.hub.forget("demo")
    after = await connected.client.get(f"/p/{public_id}.svg", headers={"If-None-Match": etag})
    assert after.status_code == 200 and after.headers["etag"] != etag


async def test_the_png_card_is_the_svg_card_at_twice_its_size(connected: Env) -> None:
    connected.sim.player("demo").play(1, progress_ms=3000)
    public_id = await published(connected)
    for query, width in (("", 420), ("?theme=dark&width=520", 520), ("?size=compact", None)):
        svg = await connected.client.get(f"/p/{public_id}.svg{query}")
        size = png.size_of(svg.text)
        assert width is None or size[0] == width
        im = png_of(await connected.client.get(f"/p/{public_id}.png{query}"))
        assert im.size == (size[0] * 2, size[1] * 2)


async def test_the_social_png_is_1200_by_630(connected: Env) -> None:
    public_id = await published(connected)
    im = png_of(await connected.client.get(f"/p/{public_id}/social.png?theme=dark"))
    assert im.size == (1200, 630)


async def test_a_png_revalidates_and_is_drawn_once_per_look_per_step(connected: Env) -> None:
    """ETag and 304 as the SVG; many viewers in one step cost one rasterisation per look."""
    connected.sim.player("demo").play(1, progress_ms=3000)
    public_id = await published(connected)
    cards = connected.services.cards
    first = await connected.client.get(f"/p/{public_id}.png")
    assert cards.counts["image_render"] == 1
    for _ in range(5):
        again = await connected.client.get(f"/p/{public_id}.png")
        assert again.content == first.content
    assert cards.counts["image_render"] == 1 and cards.counts["image_hit"] == 5
    etag = first.headers["etag"]
    not_modified = await connected.client.get(
        f"/p/{public_id}.png", headers={"If-None-Match": etag}
    )
    assert not_modified.status_code == 304 and not_modified.content == b""
    await connected.client.get(f"/p/{public_id}.png?theme=dark")
    assert cards.counts["image_render"] == 2  # another look, drawn once
    svg = await connected.client.get(f"/p/{public_id}.svg")
    assert first.headers["cache-control"] == svg.headers["cache-control"]


async def test_a_png_is_drawn_again_only_when_its_svg_changes(connected: Env) -> None:
    """The SVG is drawn each card step, the PNG only when the SVG's bytes change (a paused
    track's card holds still; playing, the progress moves every 5 s)."""
    player = connected.sim.player("demo")
    player.play(1, progress_ms=3000)
    player.pause()
    public_id = await published(connected)
    cards = connected.services.cards
    first = await connected.client.get(f"/p/{public_id}.png")
    svg_renders = cards.counts["render"]
    await connected.clock.advance(3)
    again = await connected.client.get(f"/p/{public_id}.png")
    assert cards.counts["render"] > svg_renders  # a new step: the SVG was drawn again
    assert again.content == first.content and cards.counts["image_render"] == 1
    player.resume()
    await connected.services.runtime.hub.forget("demo")
    await connected.clock.advance(6)
    moved = await connected.client.get(f"/p/{public_id}.png")
    assert moved.content != first.content and cards.counts["image_render"] == 2


async def test_a_bad_parameter_or_unknown_link_is_still_an_image(connected: Env) -> None:
    public_id = await published(connected)
    bad = png_of(await connected.client.get(f"/p/{public_id}.png?theme=neon"), 400)
    assert bad.size[0] > 0
    png_of(await connected.client.get("/p/" + "x" * 20 + ".png"))
    png_of(await connected.client.get("/p/" + "x" * 20 + "/social.png"))


async def test_colours_are_the_cover_themes_for_the_cover_shown(connected: Env) -> None:
    """/p/{id}/colours: the cover theme's colours drawn from the cover shown now, every text
    readable, open to any origin; 404 for an unknown link."""
    env = connected
    public_id = await env.publish()
    shown = (await env.client.get(f"/p/{public_id}.json")).json()
    answer = await env.client.get(f"/p/{public_id}/colours")
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "*"
    body = answer.json()
    assert body["cover"] == shown["albumImageUrl"]
    props = body["properties"]
    assert props["--np-bg"] != THEMES[Theme.COVER].palette.bg
    for text in ("--np-fg", "--np-muted", "--np-accent"):
        assert contrast(props[text], props["--np-bg"]) >= MIN_CONTRAST
    assert (await env.client.get("/p/nope/colours")).status_code == 404


async def test_colours_for_another_theme_give_it_the_covers_accent(connected: Env) -> None:
    """/p/{id}/colours?theme=light (the widget's accent=cover): the light theme's colours with
    the cover's accent, readable on its background; an unknown theme is a 400, named."""
    env = connected
    public_id = await env.publish()
    light = THEMES[Theme.LIGHT].palette
    answer = await env.client.get(f"/p/{public_id}/colours?theme=light")
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "*"
    props = answer.json()["properties"]
    assert (props["--np-bg"], props["--np-fg"]) == (light.bg, light.fg)
    assert props["--np-accent"] != light.accent and props["--np-accent-text"] != light.accent_text
    for accent in ("--np-accent", "--np-accent-text"):
        assert contrast(props[accent], light.bg) >= MIN_CONTRAST
    bad = await env.client.get(f"/p/{public_id}/colours?theme=neon")
    assert bad.status_code == 400 and bad.headers["access-control-allow-origin"] == "*"
    assert bad.json()["error"] == "bad_request" and "theme" in bad.json()["message"]
