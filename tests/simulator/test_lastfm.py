"""The simulated Last.fm: the documented shapes (harness/fixtures/lastfm), web auth with its
signature, now playing as an extra first item, the errors, the per-key rate; and pylast, a
third-party client, reading it unchanged but for its server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from xml.dom import minidom

import httpx
import httpx2
import pylast
import pytest
from harness.helpers import fixture_json, shape
from harness.live_server import free_port, serve

from nowplaying.clock import FakeClock, SystemClock
from nowplaying.simulator.lastfm import PLACEHOLDER, LastFm, Scrobble, signature

KEY, SECRET = "lfkey", "lfsecret"
TRACK = Scrobble("Tame Impala", "Apocalypse Dreams", "Lonerism", duration=360.0)
DONE = Scrobble("Tame Impala", "Endors Toi", "Lonerism", image="7c9c4d1009514b178c82f2201e3a1fce")

pytestmark = pytest.mark.anyio


def recorded(name: str) -> Any:
    return fixture_json(name, "lastfm")


@pytest.fixture
async def lastfm(sim_clock: FakeClock) -> AsyncIterator[tuple[LastFm, httpx.AsyncClient]]:
    fm = LastFm(sim_clock)
    transport = httpx.ASGITransport(app=fm.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lastfm.test") as http:
        yield fm, http


async def recent(http: httpx.AsyncClient, user: str = "demo", **extra: str) -> httpx.Response:
    params = {"method": "user.getrecenttracks", "user": user, "limit": "1", "api_key": KEY}
    return await http.get("/2.0/", params={**params, "format": "json", **extra})


async def test_recent_tracks_match_the_recorded_shapes(lastfm: Any) -> None:
    """Idle, then playing: the answers have the documented keys and string values."""
    fm, http = lastfm
    fm.scrobble("demo", DONE)
    idle = (await recent(http)).json()
    assert shape(idle) == shape(recorded("recenttracks-idle.json"))
    fm.play("demo", TRACK)
    playing = (await recent(http)).json()
    assert shape(playing) == shape(recorded("recenttracks-nowplaying.json"))
    first, last = playing["recenttracks"]["track"]
    assert first["@attr"] == {"nowplaying": "true"} and "date" not in first
    assert last["name"] == "Endors Toi" and last["date"]["uts"].isdigit()


async def test_limit_one_gives_two_items_while_playing(lastfm: Any) -> None:
    fm, http = lastfm
    fm.scrobble("demo", DONE)
    fm.play("demo", TRACK)
    assert len((await recent(http)).json()["recenttracks"]["track"]) == 2


async def test_now_playing_ends_with_its_duration_or_a_scrobble(
    lastfm: Any, sim_clock: Any
) -> None:
    fm, http = lastfm
    fm.play("demo", TRACK)
    await sim_clock.advance(359)
    assert len((await recent(http)).json()["recenttracks"]["track"]) == 1
    await sim_clock.advance(2)
    assert (await recent(http)).json()["recenttracks"]["track"] == []
    fm.play("demo", TRACK)
    fm.scrobble("demo", TRACK)
    (only,) = (await recent(http)).json()["recenttracks"]["track"]
    assert "date" in only


async def test_a_track_without_art_shows_the_blank_placeholder(lastfm: Any) -> None:
    fm, http = lastfm
    fm.play("demo", TRACK)
    (item,) = (await recent(http)).json()["recenttracks"]["track"]
    assert all(PLACEHOLDER in image["#text"] for image in item["image"])
    assert item["mbid"] == "" and item["album"]["mbid"] == ""


@pytest.mark.parametrize(
    ("setup", "status", "fixture"),
    [("private", 403, "error-17.json"), ("unknown", 404, "error-6.json")],
)
async def test_errors_are_the_recorded_ones(
    lastfm: Any, setup: str, status: int, fixture: str
) -> None:
    """A profile hiding its listening is error 17 (HTTP 403); an unknown user is 6 (404)."""
    fm, http = lastfm
    fm.add_user("hidden", private=True)
    response = await recent(http, "hidden" if setup == "private" else "nobody")
    assert (response.status_code, response.json()) == (status, recorded(fixture))


async def test_bad_and_suspended_shape(lastfm: Any) -> None:
    fm, http = lastfm
    assert (await recent(http, api_key="nope")).json()["error"] == 10
    fm.suspended.add(KEY)
    assert (await recent(http)).json()["error"] == 26


async def test_past_the_rate_a_key_gets_error_29(lastfm: Any, sim_clock: FakeClock) -> None:
    fm, http = lastfm
    fm.calls_per_second = 2
    assert [(await recent(http)).status_code for _ in range(3)] == [200, 200, 429]
    assert (await recent(http)).json()["error"] == 29
    await sim_clock.advance(1)
    assert (await recent(http)).status_code == 200
    assert fm.calls["rate_limited"] == 2


async def test_web_auth_and_a_signed_get_session(lastfm: Any) -> None:
    """Consent redirects to the callback (its own query kept) with a token, which a correctly
    signed auth.getSession exchanges once for the user's name and session key."""
    fm, http = lastfm
    cb = "http://127.0.0.1:8000/callback/lastfm?next=1"
    page = await http.get("/api/auth/", params={"api_key": KEY, "cb": cb})
    assert page.status_code == 200 and "allow" in page.text.lower()
    allowed = await http.post("/api/auth/", data={"api_key": KEY, "cb": cb, "user": "demo"})
    location = httpx.URL(allowed.headers["location"])
    assert str(location).startswith(cb + "&token=")
    params = {"method": "auth.getSession", "api_key": KEY, "token": location.params["token"]}
    wrong = await http.get("/2.0/", params={**params, "api_sig": "0" * 32, "format": "json"})
    assert wrong.json()["error"] == 13
    signed = {**params, "api_sig": signature(params, SECRET), "format": "json"}
    session = (await http.get("/2.0/", params=signed)).json()
    assert shape(session) == shape(recorded("getsession.json"))
    assert session["session"]["name"] == "demo" and fm.sessions[session["session"]["key"]]
    assert (await http.get("/2.0/", params=signed)).json()["error"] == 15  # once only


async def test_a_token_must_be_allowed_and_fresh(lastfm: Any, sim_clock: FakeClock) -> None:
    fm, http = lastfm
    token = fm.issue_token(KEY)
    params = {"method": "auth.getSession", "api_key": KEY, "token": token}
    signed = {**params, "api_sig": signature(params, SECRET), "format": "json"}
    assert (await http.get("/2.0/", params=signed)).json()["error"] == 14
    fm.authorize(token, "demo")
    await sim_clock.advance(3601)
    assert (await http.get("/2.0/", params=signed)).json()["error"] == 15


async def test_without_format_json_the_answer_is_xml(lastfm: Any) -> None:
    fm, http = lastfm
    fm.play("demo", TRACK)
    params = {"method": "user.getRecentTracks", "user": "demo", "limit": "1", "api_key": KEY}
    doc = minidom.parseString((await http.get("/2.0/", params=params)).text)  # noqa: S318 - ours
    (track,) = doc.getElementsByTagName("track")
    assert doc.documentElement is not None
    assert doc.documentElement.getAttribute("status") == "ok"
    assert track.getAttribute("nowplaying") == "true"


# -- pylast, unchanged, over a real socket ---------------------------------------------------------


class ToLoopback(httpx2.HTTPTransport):
    """pylast speaks https (through httpx2) to its server; this sends its requests to the
    loopback simulator instead."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = httpx2.URL(base)

    def handle_request(self, request: Any) -> Any:
        request.url = request.url.copy_with(
            scheme=self.base.scheme, host=self.base.host, port=self.base.port
        )
        return super().handle_request(request)


@pytest.fixture
def live() -> Iterator[tuple[LastFm, pylast.LastFMNetwork]]:
    fm = LastFm(SystemClock())
    with serve(fm.app, free_port()) as url:
        network = pylast.LastFMNetwork(api_key=KEY, api_secret=SECRET)
        network.enable_proxy({"https://": ToLoopback(url)})
        yield fm, network


def test_pylast_reads_now_playing(live: Any) -> None:
    fm, network = live
    user = network.get_user("demo")
    assert user.get_now_playing() is None
    fm.scrobble("demo", DONE)
    fm.play("demo", TRACK)
    playing = user.get_now_playing()
    assert playing is not None
    assert (str(playing.artist), playing.title) == ("Tame Impala", "Apocalypse Dreams")


def test_pylast_web_auth_gets_a_session_key(live: Any) -> None:
    """pylast's own signature is accepted: its token, allowed by the user, gives a session."""
    fm, network = live
    generator = pylast.SessionKeyGenerator(network)
    url = generator.get_web_auth_url()
    token = httpx.URL(url).params["token"]
    fm.authorize(token, "demo")
    key, name = generator.get_web_auth_session_key_username(url)
    assert name == "demo" and fm.sessions[key] == "demo"


def test_pylast_sees_a_hidden_profile_as_error_17(live: Any) -> None:
    fm, network = live
    fm.add_user("hidden", private=True)
    with pytest.raises(pylast.WSError) as info:
        network.get_user("hidden").get_now_playing()
    assert info.value.status == "17"


async def test_the_image_host_serves_art_and_the_blank_placeholder(sim_clock: FakeClock) -> None:
    """With ``image_host`` pointing at the app, every image URL it gives is served by it: the
    art as a 300 px PNG, the placeholder as a blank one."""
    fm = LastFm(sim_clock, image_host="http://lastfm.test/i/u")
    fm.scrobble("demo", DONE, at=1603186824)
    fm.scrobble("demo", TRACK, at=1603186900)
    transport = httpx.ASGITransport(app=fm.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lastfm.test") as http:
        items = (await recent(http, limit="5")).json()["recenttracks"]["track"]
        urls = {i["name"]: {x["size"]: x["#text"] for x in i["image"]} for i in items}
        art = await http.get(urls[DONE.name]["extralarge"])
        blank = await http.get(urls[TRACK.name]["extralarge"])
        missing = await http.get("/i/u/999x999/abc.png")
    assert urls[DONE.name]["extralarge"] == f"http://lastfm.test/i/u/300x300/{DONE.image}.jpg"
    assert art.status_code == 200 and art.headers["content-type"] == "image/png"
    assert art.content.startswith(b"\x89PNG") and len(art.content) > len(blank.content)
    assert PLACEHOLDER in urls[TRACK.name]["extralarge"] and blank.status_code == 200
    assert missing.status_code == 404
    assert fm.calls["image"] == 3


async def test_a_signed_get_token_checks_its_signature(lastfm: Any) -> None:
    """auth.getToken signed with the key's secret gives a token; with another secret, 13."""
    _, http = lastfm
    params = {"method": "auth.getToken", "api_key": KEY}
    good = {**params, "api_sig": signature(params, "lfsecret"), "format": "json"}
    assert "token" in (await http.get("/2.0/", params=good)).json()
    bad = {**params, "api_sig": signature(params, "another"), "format": "json"}
    response = await http.get("/2.0/", params=bad)
    assert (response.status_code, response.json()["error"]) == (403, 13)


async def test_the_control_api_makes_a_profile_private_or_public(lastfm: Any) -> None:
    """``POST /_control/lastfm/users/{user}/private`` with ``{"private": false}`` makes it public
    again (with no body: private)."""
    fm, http = lastfm
    assert (await http.post("/_control/lastfm/users/shy/private")).status_code == 200
    assert fm.users["shy"].private
    await http.post("/_control/lastfm/users/shy/private", json={"private": False})
    assert not fm.users["shy"].private
