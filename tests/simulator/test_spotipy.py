"""A third-party client, spotipy, unchanged but for its base URLs, against a real socket.

If spotipy (a second independent reading of Spotify) can log in, refresh and read what is
playing, the simulator speaks Spotify well enough for clients other than ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import spotipy
from spotipy.cache_handler import CacheFileHandler
from spotipy.oauth2 import SpotifyOAuth, SpotifyPKCE

if TYPE_CHECKING:
    from harness.simulated import LiveServer


REDIRECT = "http://127.0.0.1:8000/callback"


def oauth_for(live: LiveServer, cache: Path) -> Any:
    """A SpotifyOAuth pointed at the simulator, caching in ``cache``."""

    class SimulatedOAuth(SpotifyOAuth):  # type: ignore[misc]
        OAUTH_AUTHORIZE_URL = f"{live.url}/authorize"
        OAUTH_TOKEN_URL = f"{live.url}/api/token"

    return SimulatedOAuth(
        client_id="cid",
        client_secret="csecret",
        redirect_uri=REDIRECT,
        scope="user-read-currently-playing user-read-recently-played",
        state="spotipy-state",
        cache_handler=CacheFileHandler(cache_path=str(cache / "token-cache")),
        open_browser=False,
        requests_timeout=5,
    )


def agree(authorize_url: str) -> str:
    """Submit the consent page for spotipy's authorize URL; the code from the redirect."""
    with httpx.Client(timeout=5) as http:
        page = http.get(authorize_url)
        assert page.status_code == 200
        params = dict(httpx.URL(authorize_url).params)
        form_url = str(httpx.URL(authorize_url).copy_with(query=None))
        response = http.post(form_url, data={**params, "decision": "agree", "user": "demo"})
    location = httpx.URL(response.headers["location"])
    assert str(location).startswith(REDIRECT)
    assert location.params["state"] == "spotipy-state"
    return location.params["code"]


def test_spotipy_logs_in_refreshes_and_reads_currently_playing(
    sim_live: LiveServer, tmp_path: Path
) -> None:
    """Authorization code flow, a refresh, then currently_playing, all through spotipy."""
    oauth = oauth_for(sim_live, tmp_path)
    code = agree(oauth.get_authorize_url())
    token = oauth.get_access_token(code, as_dict=False, check_cache=False)
    assert isinstance(token, str)

    cached = oauth.cache_handler.get_cached_token()
    refreshed = oauth.refresh_access_token(cached["refresh_token"])
    assert refreshed["access_token"] != token
    assert refreshed["refresh_token"] == cached["refresh_token"]  # "omit" mode: spotipy keeps it

    client = spotipy.Spotify(auth=refreshed["access_token"], requests_timeout=5, retries=0)
    client.prefix = f"{sim_live.url}/v1/"
    playing = client.currently_playing(additional_types="track,episode")
    assert playing["currently_playing_type"] == "track"
    assert playing["item"]["name"] == sim_live.sim.player("demo").playlist[0]["name"]
    assert client.current_user()["id"] == "demo"
    assert len(client.current_user_recently_played(limit=2)["items"]) == 2
    assert sim_live.sim.calls["token:refresh_token"] == 1


def test_spotipy_pkce_public_client(sim_live: LiveServer, tmp_path: Path) -> None:
    """spotipy's PKCE flow (no secret) logs in and refreshes with client_id only."""

    class SimulatedPKCE(SpotifyPKCE):  # type: ignore[misc]
        OAUTH_AUTHORIZE_URL = f"{sim_live.url}/authorize"
        OAUTH_TOKEN_URL = f"{sim_live.url}/api/token"

    pkce = SimulatedPKCE(
        client_id="cid",
        redirect_uri=REDIRECT,
        scope="user-read-currently-playing",
        state="spotipy-state",
        cache_handler=CacheFileHandler(cache_path=str(tmp_path / "pkce-cache")),
        open_browser=False,
        requests_timeout=5,
    )
    code = agree(pkce.get_authorize_url())
    token = pkce.get_access_token(code, check_cache=False)
    refreshed = pkce.refresh_access_token(pkce.cache_handler.get_cached_token()["refresh_token"])
    assert refreshed["access_token"] != token
    client = spotipy.Spotify(auth=refreshed["access_token"], requests_timeout=5, retries=0)
    client.prefix = f"{sim_live.url}/v1/"
    assert client.currently_playing()["is_playing"] is True


def test_spotipy_sees_nothing_playing_as_none(sim_live: LiveServer, tmp_path: Path) -> None:
    """A 204 reaches spotipy as None."""
    grant = sim_live.sim.grant("demo")
    sim_live.sim.player("demo").stop()
    client = spotipy.Spotify(auth=grant.access_token, requests_timeout=5, retries=0)
    client.prefix = f"{sim_live.url}/v1/"
    assert client.currently_playing() is None


def test_hang_times_out_a_real_client(sim_live: LiveServer) -> None:
    """Over a socket, a hanging answer trips the client's read timeout."""
    grant = sim_live.sim.grant("demo")
    sim_live.sim.faults.add("currently-playing", hang=True)
    with httpx.Client(base_url=sim_live.url, timeout=0.3) as http, pytest.raises(httpx.ReadTimeout):
        http.get(
            "/v1/me/player/currently-playing",
            headers={"Authorization": f"Bearer {grant.access_token}"},
        )
