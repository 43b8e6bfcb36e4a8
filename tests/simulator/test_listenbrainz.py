"""The simulated ListenBrainz: the documented shapes (harness/fixtures/listenbrainz),
playing-now's expiry, the rate-limit headers and 429; and liblistenbrainz, a third-party
client, submitting and reading through it unchanged but for its base URL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import liblistenbrainz
import pytest
from harness.helpers import fixture_json, shape
from harness.live_server import free_port, serve

from nowplaying.clock import FakeClock, SystemClock
from nowplaying.simulator.listenbrainz import PLAYING_NOW_MAX, ListenBrainz

TOKEN = "lb-demo-token"

pytestmark = pytest.mark.anyio


def recorded(name: str) -> Any:
    return fixture_json(name, "listenbrainz")


@pytest.fixture
async def lb(sim_clock: FakeClock) -> AsyncIterator[tuple[ListenBrainz, httpx.AsyncClient]]:
    sim = ListenBrainz(sim_clock)
    transport = httpx.ASGITransport(app=sim.app)
    headers = {"User-Agent": "nowplaying-tests"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://lb.test", headers=headers
    ) as http:
        yield sim, http


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


async def test_playing_now_matches_the_recorded_shapes(lb: Any) -> None:
    _sim, http = lb
    idle = (await http.get("/1/user/demo/playing-now")).json()
    assert shape(idle) == shape(recorded("playing-now-idle.json")) and idle["payload"]["count"] == 0
    body = recorded("submit-playing-now.json")
    assert (await http.post("/1/submit-listens", json=body, headers=auth())).json() == {
        "status": "ok"
    }
    playing = (await http.get("/1/user/demo/playing-now")).json()
    (listen,) = playing["payload"]["listens"]
    assert playing["payload"]["count"] == 1 and "listened_at" not in listen
    assert listen["track_metadata"] == body["payload"][0]["track_metadata"]
    assert set(shape(playing)["payload"]) == set(shape(recorded("playing-now.json"))["payload"])


async def test_validate_token_answers_as_recorded(lb: Any) -> None:
    _sim, http = lb
    good = (await http.get("/1/validate-token", headers=auth())).json()
    assert shape(good) == shape(recorded("validate-token-valid.json"))
    assert good["user_name"] == "demo"
    bad = (await http.get("/1/validate-token", headers=auth("nope"))).json()
    assert bad == recorded("validate-token-invalid.json")


async def test_playing_now_lasts_its_duration_or_ten_minutes(lb: Any, sim_clock: FakeClock) -> None:
    sim, http = lb
    sim.play("demo", {"artist_name": "A", "track_name": "T", "additional_info": {"duration": 30}})
    await sim_clock.advance(29)
    assert (await http.get("/1/user/demo/playing-now")).json()["payload"]["count"] == 1
    await sim_clock.advance(2)
    assert (await http.get("/1/user/demo/playing-now")).json()["payload"]["count"] == 0
    sim.play("demo", {"artist_name": "A", "track_name": "T"})
    await sim_clock.advance(PLAYING_NOW_MAX - 1)
    assert (await http.get("/1/user/demo/playing-now")).json()["payload"]["count"] == 1
    await sim_clock.advance(2)
    assert (await http.get("/1/user/demo/playing-now")).json()["payload"]["count"] == 0


async def test_an_unknown_user_is_404(lb: Any) -> None:
    _sim, http = lb
    response = await http.get("/1/user/nobody/playing-now")
    assert response.status_code == 404 and response.json()["code"] == 404


async def test_rate_limit_headers_count_down_then_429(lb: Any, sim_clock: FakeClock) -> None:
    sim, http = lb
    sim.limit, sim.window = 3, 10.0
    remaining = []
    for _ in range(3):
        response = await http.get("/1/user/demo/playing-now")
        remaining.append(response.headers["X-RateLimit-Remaining"])
        assert response.headers["X-RateLimit-Reset-In"] == "10"
    assert remaining == ["2", "1", "0"]
    limited = await http.get("/1/user/demo/playing-now")
    assert limited.status_code == 429 and limited.headers["X-RateLimit-Remaining"] == "0"
    await sim_clock.advance(10)
    assert (await http.get("/1/user/demo/playing-now")).status_code == 200
    assert sim.calls["rate_limited"] == 1 and sim.user_agents["nowplaying-tests"] == 5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"listen_type": "single"}, "Invalid JSON"),
        ({"listen_type": "loved", "payload": []}, "listen_type"),
        (
            {"listen_type": "single", "payload": [{"track_metadata": {"artist_name": "A"}}]},
            "track_name",
        ),
    ],
)
async def test_submissions_are_checked(lb: Any, body: Any, message: str) -> None:
    _sim, http = lb
    response = await http.post("/1/submit-listens", json=body, headers=auth())
    assert response.status_code == 400 and message in response.json()["error"]
    unauthorised = await http.post("/1/submit-listens", json=body, headers=auth("nope"))
    assert unauthorised.json() == {"code": 401, "error": "Invalid authorization token."}


# -- liblistenbrainz, unchanged, over a real socket ------------------------------------------------


@pytest.fixture
def live() -> Iterator[tuple[ListenBrainz, str]]:
    sim = ListenBrainz(SystemClock())
    with serve(sim.app, free_port()) as url:
        yield sim, url


def test_liblistenbrainz_submits_and_reads_playing_now(live: Any) -> None:
    _sim, url = live
    client = liblistenbrainz.ListenBrainz(api_base_url=url)
    client.set_auth_token(TOKEN)  # validates it against /1/validate-token
    assert client.get_playing_now("demo") is None
    client.submit_playing_now(
        liblistenbrainz.Listen(track_name="Fade", artist_name="Kanye West", release_name="TLOP")
    )
    playing = client.get_playing_now("demo")
    assert playing is not None and (playing.track_name, playing.artist_name) == (
        "Fade",
        "Kanye West",
    )
    client.submit_single_listen(
        liblistenbrainz.Listen(track_name="Fade", artist_name="Kanye West", listened_at=1443521965)
    )
    (listen,) = client.get_listens("demo")
    assert listen.listened_at == 1443521965
    assert client.remaining_requests is not None and client.ratelimit_reset_in is not None


def test_liblistenbrainz_refuses_a_bad_token(live: Any) -> None:
    _sim, url = live
    client = liblistenbrainz.ListenBrainz(api_base_url=url)
    with pytest.raises(liblistenbrainz.errors.InvalidAuthTokenException):
        client.set_auth_token("not-a-token")
