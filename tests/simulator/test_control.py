"""The ``/_control`` HTTP API, the generated covers, and base URLs (public_url, mounting)."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from nowplaying.clock import FakeClock
from nowplaying.simulator import Simulator

if TYPE_CHECKING:
    from harness.simulated import SimEnv

pytestmark = pytest.mark.anyio


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_calls_are_listed_and_reset(sim_env: SimEnv) -> None:
    """GET /_control/calls, then POST /_control/calls/reset."""
    await sim_env.playing()
    calls = (await sim_env.http.get("/_control/calls")).json()
    assert calls == {"currently-playing": 1, "currently-playing:demo": 1}
    await sim_env.http.post("/_control/calls/reset")
    assert (await sim_env.http.get("/_control/calls")).json() == {}


async def test_call_times_are_listed_per_user_and_reset(sim_env: SimEnv) -> None:
    """GET /_control/calls/times: each per-user call at its clock time; reset forgets them."""
    started = sim_env.clock.now()
    await sim_env.playing()
    await sim_env.clock.advance(2.5)
    await sim_env.playing()
    times = (await sim_env.http.get("/_control/calls/times")).json()
    assert times == {"currently-playing:demo": [started, started + 2.5]}
    await sim_env.http.post("/_control/calls/reset")
    assert (await sim_env.http.get("/_control/calls/times")).json() == {}


async def test_player_state_over_http(sim_env: SimEnv) -> None:
    """GET the player: kind, item, progress."""
    await sim_env.clock.advance(5)
    state = (await sim_env.http.get("/_control/users/demo/player")).json()
    assert state["kind"] == "track"
    assert state["index"] == 0
    assert state["progress_ms"] == 5000
    assert state["item"]["name"] == sim_env.sim.player("demo").playlist[0]["name"]


@pytest.mark.parametrize(
    ("action", "body", "expected"),
    [
        ("skip", None, {"index": 1, "progress_ms": 0}),
        ("previous", None, {"index": 11}),
        ("pause", None, {"is_playing": False}),
        ("stop", None, {"kind": None, "visible": False}),
        ("ad", {"duration_ms": 5000}, {"kind": "ad"}),
        ("seek", {"progress_ms": 1234}, {"progress_ms": 1234}),
        ("play", {"item": 2, "progress_ms": 10}, {"index": 2, "progress_ms": 10}),
        ("private", {"on": True}, {"private_session": True, "visible": False}),
    ],
)
async def test_player_actions_over_http(
    sim_env: SimEnv, action: str, body: dict[str, object] | None, expected: dict[str, object]
) -> None:
    """Each action answers with the new state."""
    response = await sim_env.http.post(f"/_control/users/demo/player/{action}", json=body)
    assert response.status_code == 200
    state = response.json()
    assert {key: state[key] for key in expected} == expected


async def test_resume_over_http(sim_env: SimEnv) -> None:
    """stop, then resume: playing again."""
    await sim_env.http.post("/_control/users/demo/player/stop")
    state = (await sim_env.http.post("/_control/users/demo/player/resume")).json()
    assert (state["kind"], state["is_playing"]) == ("track", True)


async def test_play_by_item_id_over_http(sim_env: SimEnv) -> None:
    """play accepts an item id as well as an index."""
    item_id = sim_env.sim.player("demo").playlist[5]["id"]
    response = await sim_env.http.post("/_control/users/demo/player/play", json={"item": item_id})
    assert response.json()["index"] == 5


async def test_play_unknown_item_is_400(sim_env: SimEnv) -> None:
    """An item that is not in the playlist."""
    response = await sim_env.http.post("/_control/users/demo/player/play", json={"item": "nope"})
    assert response.status_code == 400


async def test_unknown_action_is_400(sim_env: SimEnv) -> None:
    """Typos in the action fail loudly."""
    response = await sim_env.http.post("/_control/users/demo/player/dance")
    assert response.status_code == 400
    assert "unknown action" in response.json()["error"]


async def test_unknown_user_is_404(sim_env: SimEnv) -> None:
    """Control calls for a user that does not exist."""
    response = await sim_env.http.post("/_control/users/ghost/player/skip")
    assert response.status_code == 404


async def test_malformed_json_is_400(sim_env: SimEnv) -> None:
    """The body must be a JSON object."""
    response = await sim_env.http.post(
        "/_control/users/demo/player/seek",
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400


async def test_revoke_over_http(sim_env: SimEnv) -> None:
    """POST /_control/users/{id}/revoke: the user's tokens stop working."""
    grant = sim_env.sim.grant("demo")
    await sim_env.http.post("/_control/users/demo/revoke")
    assert (await sim_env.playing(grant.access_token)).status_code == 401


async def test_expire_tokens_over_http(sim_env: SimEnv) -> None:
    """POST /_control/tokens/expire: access tokens answer 401."""
    grant = sim_env.sim.grant("demo")
    await sim_env.http.post("/_control/tokens/expire")
    assert (await sim_env.playing(grant.access_token)).status_code == 401


async def test_refresh_mode_over_http(sim_env: SimEnv) -> None:
    """POST /_control/refresh-mode switches to rotation."""
    grant = sim_env.sim.grant("demo")
    await sim_env.http.post("/_control/refresh-mode", json={"mode": "rotate"})
    response = await sim_env.refresh(grant.refresh_token or "")
    assert "refresh_token" in response.json()


async def test_bad_refresh_mode_is_400(sim_env: SimEnv) -> None:
    """Only omit and rotate exist."""
    response = await sim_env.http.post("/_control/refresh-mode", json={"mode": "sometimes"})
    assert response.status_code == 400


async def test_faults_over_http(sim_env: SimEnv) -> None:
    """POST, GET and DELETE /_control/faults."""
    fault = {"endpoint": "currently-playing", "status": 429, "retry_after": 9, "times": 2}
    assert (await sim_env.http.post("/_control/faults", json=fault)).status_code == 201
    assert len((await sim_env.http.get("/_control/faults")).json()) == 1
    assert (await sim_env.playing()).headers["retry-after"] == "9"
    await sim_env.http.delete("/_control/faults")
    assert (await sim_env.playing()).status_code == 200


async def test_bad_fault_is_400(sim_env: SimEnv) -> None:
    """Unknown fields or endpoints are refused."""
    response = await sim_env.http.post("/_control/faults", json={"endpoint": "me", "colour": 1})
    assert response.status_code == 400


async def test_control_can_be_turned_off(sim_clock: FakeClock) -> None:
    """``control=False``: no /_control routes."""
    sim = Simulator(clock=sim_clock, control=False)
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as http:
        assert (await http.get("/_control/calls")).status_code == 404


async def test_cover_urls_serve_png_images_of_their_size(sim_env: SimEnv) -> None:
    """Every image URL in a payload is a PNG of the advertised size."""
    images = (await sim_env.playing()).json()["item"]["album"]["images"]
    for image in images:
        response = await sim_env.http.get(image["url"])
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert png_size(response.content) == (image["width"], image["height"])
    assert sim_env.sim.calls["cover"] == len(images)


async def test_cover_without_size_is_300_square(sim_env: SimEnv) -> None:
    """``/covers/{name}.png`` is 300x300."""
    response = await sim_env.http.get("/covers/anything.png")
    assert png_size(response.content) == (300, 300)


@pytest.mark.parametrize("name", ["BAD.png", "x-5000x5000.png", "x.gif", "-x.png"])
async def test_bad_cover_names_are_404(sim_env: SimEnv, name: str) -> None:
    """Only lowercase names and sides up to 1024 are drawn."""
    assert (await sim_env.http.get(f"/covers/{name}")).status_code == 404


async def test_public_url_is_used_for_images(sim_clock: FakeClock) -> None:
    """``public_url`` overrides the request's base URL."""
    sim = Simulator(clock=sim_clock, public_url="https://sim.example/spotify/")
    token = sim.grant("demo").access_token
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://internal") as http:
        body = (
            await http.get(
                "/v1/me/player/currently-playing", headers={"Authorization": f"Bearer {token}"}
            )
        ).json()
    assert body["item"]["album"]["images"][0]["url"].startswith(
        "https://sim.example/spotify/covers/"
    )


async def test_mounted_under_a_prefix(sim_clock: FakeClock) -> None:
    """Mounted at /spotify: image URLs and the consent form include the prefix."""
    sim = Simulator(clock=sim_clock)
    token = sim.grant("demo").access_token
    outer = Starlette(routes=[Mount("/spotify", app=sim.app)])
    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url="http://host.test") as http:
        body = (
            await http.get(
                "/spotify/v1/me/player/currently-playing",
                headers={"Authorization": f"Bearer {token}"},
            )
        ).json()
        url = body["item"]["album"]["images"][0]["url"]
        assert url.startswith("http://host.test/spotify/covers/")
        assert (await http.get(url)).status_code == 200
        params = {
            "client_id": "cid",
            "response_type": "code",
            "redirect_uri": "http://127.0.0.1:8000/callback",
        }
        page = (await http.get("/spotify/authorize", params=params)).text
        assert 'action="/spotify/authorize"' in page
