"""``nowplaying setup``: the client-credentials check, ``.env`` written safely, the rules shown."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from harness.helpers import consent
from harness.live_server import free_port, serve
from pydantic import SecretStr

from nowplaying.cli.main import setup_flow
from nowplaying.cli.setup import SetupOptions, merge_env, read_env, redirect_problem, run_setup
from nowplaying.clock import SystemClock
from nowplaying.config import Settings
from nowplaying.runtime import LASTFM_SIM_PREFIX, LISTENBRAINZ_SIM_PREFIX, simulated_upstreams
from nowplaying.simulator import Simulator
from nowplaying.sources.spotify.client import SpotifyClient
from nowplaying.sources.spotify.errors import InvalidClient

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
SECRET = "csecret-for-tests"
SIM = "http://sim.test"


@pytest.fixture
async def sim_http() -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    sim = Simulator(
        clock=SystemClock(),
        client_id="cid",
        client_secret=SECRET,
        redirect_uris=("http://127.0.0.1:8000/callback",),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app)) as http:
        yield sim, http


def _opts(tmp_path: Path, **kw: object) -> SetupOptions:
    values: dict[str, object] = {
        "env_file": tmp_path / ".env",
        "client_id": "cid",
        "client_secret": SECRET,
        "accounts_url": SIM,
        "api_url": f"{SIM}/v1",
    }
    values.update(kw)
    return SetupOptions(**values)  # type: ignore[arg-type]


# -- the simulator's client-credentials grant (contract section 2) -----------------------------


async def test_client_credentials_gives_an_app_token_without_user_or_refresh(
    sim_http: tuple[Simulator, httpx.AsyncClient],
) -> None:
    sim, http = sim_http
    response = await http.post(
        f"{SIM}/api/token", data={"grant_type": "client_credentials"}, auth=("cid", SECRET)
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 3600)
    me = await http.get(f"{SIM}/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 401, "an app token reads no user data"
    assert sim.calls["token:client_credentials"] == 1


@pytest.mark.parametrize(
    ("auth", "form", "description"),
    [
        (("cid", "wrong"), {}, "Invalid client secret"),
        (("nobody", SECRET), {}, "Invalid client"),
        (None, {"client_id": "cid"}, "Invalid client"),
        (None, {"client_id": "cid", "client_secret": "wrong"}, "Invalid client secret"),
    ],
)
async def test_client_credentials_refusals_are_invalid_client(
    sim_http: tuple[Simulator, httpx.AsyncClient],
    auth: tuple[str, str] | None,
    form: dict[str, str],
    description: str,
) -> None:
    _, http = sim_http
    response = await http.post(
        f"{SIM}/api/token",
        data={"grant_type": "client_credentials", **form},
        auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
    )
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_client", "error_description": description}


async def test_client_checks_credentials(sim_http: tuple[Simulator, httpx.AsyncClient]) -> None:
    _, http = sim_http

    def client(secret: str) -> SpotifyClient:
        return SpotifyClient(
            http, client_id="cid", client_secret=SecretStr(secret), accounts_url=SIM
        )

    token = await client(SECRET).check_credentials()
    assert token.refresh_token is None and token.scope == frozenset()
    with pytest.raises(InvalidClient, match="Invalid client secret"):
        await client("wrong").check_credentials()


# -- writing .env ------------------------------------------------------------------------------


async def test_setup_writes_a_private_env_the_server_can_start_with(
    tmp_path: Path, sim_http: tuple[Simulator, httpx.AsyncClient]
) -> None:
    _, http = sim_http
    out = io.StringIO()
    code = await run_setup(_opts(tmp_path), out=out, http=http, environ={})
    assert code == 0, out.getvalue()
    env_file = tmp_path / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = read_env(env_file)
    assert values["SPOTIFY_CLIENT_ID"] == "cid"
    assert values["SPOTIFY_CLIENT_SECRET"] == SECRET
    assert len(values["NOWPLAYING_SECRET_KEY"]) >= 32
    assert values["SPOTIFY_ACCOUNTS_URL"] == SIM
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert not settings.demo and settings.spotify_redirect_uri == "http://127.0.0.1:8000/callback"
    text = out.getvalue()
    assert "ok: Spotify accepted" in text
    assert "Add this redirect URI exactly: http://127.0.0.1:8000/callback" in text
    assert "Premium" in text and "User Management" in text and "5 Spotify users" in text
    assert SECRET not in text and values["NOWPLAYING_SECRET_KEY"] not in text


async def test_a_wrong_secret_is_caught_and_nothing_is_written(
    tmp_path: Path, sim_http: tuple[Simulator, httpx.AsyncClient]
) -> None:
    sim, http = sim_http
    out = io.StringIO()
    code = await run_setup(_opts(tmp_path, client_secret="wrong"), out=out, http=http, environ={})
    assert code == 1
    assert "the client secret is wrong" in out.getvalue()
    assert not (tmp_path / ".env").exists()
    assert sim.calls["token:client_credentials"] == 1


async def test_an_unreachable_spotify_writes_nothing(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route", request=request)

    out = io.StringIO()
    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        code = await run_setup(_opts(tmp_path), out=out, http=http, environ={})
    assert code == 1
    assert "could not check with Spotify" in out.getvalue() and "--no-check" in out.getvalue()
    assert not (tmp_path / ".env").exists()


async def test_an_existing_env_is_kept_unless_forced_and_keeps_its_key_and_lines(
    tmp_path: Path, sim_http: tuple[Simulator, httpx.AsyncClient]
) -> None:
    _, http = sim_http
    env_file = tmp_path / ".env"
    key = "k" * 48
    before = (
        f"# mine\nNOWPLAYING_SECRET_KEY={key}\nNOWPLAYING_POLL_SECONDS=7\nSPOTIFY_CLIENT_ID=old\n"
    )
    env_file.write_text(before)
    out = io.StringIO()
    assert await run_setup(_opts(tmp_path), out=out, http=http, environ={}) == 3
    assert env_file.read_text() == before, "left unchanged without --force"
    assert await run_setup(_opts(tmp_path, force=True), out=out, http=http, environ={}) == 0
    values = read_env(env_file)
    assert values["NOWPLAYING_SECRET_KEY"] == key, "a new key would lock stored accounts out"
    assert values["NOWPLAYING_POLL_SECONDS"] == "7" and values["SPOTIFY_CLIENT_ID"] == "cid"
    assert env_file.read_text().startswith("# mine\n")
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


async def test_interactive_setup_asks_and_asks_before_replacing(
    tmp_path: Path, sim_http: tuple[Simulator, httpx.AsyncClient]
) -> None:
    _, http = sim_http
    asked: list[str] = []
    answers = iter(["", "cid", "", "", "n", "n"])

    def ask(question: str) -> str:
        asked.append(question)
        return next(answers)

    def ask_secret(question: str) -> str:
        asked.append(question)
        return SECRET

    opts = _opts(tmp_path, client_id=None, client_secret=None, interactive=True)
    out = io.StringIO()
    code = await setup_flow(opts, out=out, login=None, http=http, ask=ask, ask_secret=ask_secret)
    assert code == 0, out.getvalue()
    assert asked[:6] == [
        "Use Spotify (an app; in development mode, Premium)? [Y/n] ",
        "Client ID: ",
        "Client secret: ",
        "Last.fm API key (Enter: no Last.fm): ",
        "Redirect URI [http://127.0.0.1:8000/callback]: ",
        "Check that ListenBrainz answers? [Y/n] ",
    ]
    assert "nowplaying login" in asked[6]
    assert "Next: `nowplaying login`" in out.getvalue()
    assert read_env(tmp_path / ".env")["SPOTIFY_CLIENT_SECRET"] == SECRET

    answers = iter(["", "n", "no"])
    code = await setup_flow(opts, out=out, login=None, http=http, ask=ask, ask_secret=ask_secret)
    assert code == 3 and "exists" in asked[-1]


async def test_setup_then_login_connects_the_account(
    tmp_path: Path, sim_http: tuple[Simulator, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--login``: the account is connected with the settings just written."""
    monkeypatch.chdir(tmp_path)  # the default SQLite file lands here
    for name in [n for n in os.environ if n.startswith(("SPOTIFY_", "NOWPLAYING_"))]:
        monkeypatch.delenv(name)
    _, http = sim_http
    out = io.StringIO()

    async def paste() -> str:
        # login_flow asks for the paste after printing the URL
        url = next(w for w in out.getvalue().split() if w.startswith(f"{SIM}/authorize?"))
        redirect = await consent(http, url)
        return str(redirect.headers["location"]) + "\n"

    port = free_port()
    opts = _opts(tmp_path, redirect_uri=f"http://127.0.0.1:{port}/callback")
    code = await setup_flow(
        opts, out=out, login=True, http=http, pasted=lambda: asyncio.ensure_future(paste())
    )
    assert code == 0, out.getvalue()
    assert "Connected Demo Listener (demo)" in out.getvalue()


@pytest.mark.parametrize(
    ("uri", "fine"),
    [
        ("http://127.0.0.1:8000/callback", True),
        ("http://[::1]:8000/callback", True),
        ("https://np.example.org/callback", True),
        ("http://localhost:8000/callback", False),
        ("http://np.example.org/callback", False),
        ("https://np.example.org/cb", False),
        ("https://np.example.org/callback?x=1", False),
        ("ftp://np.example.org/callback", False),
        ("http://127.0.0.1:99999/callback", False),
    ],
)
def test_redirect_uri_shape(uri: str, fine: bool) -> None:
    assert (redirect_problem(uri) is None) is fine


async def test_a_localhost_redirect_is_refused_before_anything_is_written(
    tmp_path: Path, sim_http: tuple[Simulator, httpx.AsyncClient]
) -> None:
    _, http = sim_http
    out = io.StringIO()
    opts = _opts(tmp_path, redirect_uri="http://localhost:8000/callback")
    assert await run_setup(opts, out=out, http=http, environ={}) == 2
    assert "127.0.0.1" in out.getvalue() and not (tmp_path / ".env").exists()


async def test_missing_values_without_a_terminal_are_an_error(
    tmp_path: Path, sim_http: tuple[Simulator, httpx.AsyncClient]
) -> None:
    _, http = sim_http
    out = io.StringIO()
    opts = _opts(tmp_path, client_secret=None)
    assert await run_setup(opts, out=out, http=http, environ={}) == 2
    assert "--client-secret" in out.getvalue()
    env = {"SPOTIFY_CLIENT_SECRET": SECRET}
    assert await run_setup(opts, out=out, http=http, environ=env) == 0, "the env supplies it"


def test_merge_env_replaces_in_place_and_quotes() -> None:
    text = merge_env("A=1\n# B=old\nB=2\n", {"B": "x y", "C": 'q"'})
    assert text == 'A=1\n# B=old\nB="x y"\n\nC="q\\""\n'


# -- the command, against the simulator served on loopback --------------------------------------


@pytest.fixture
def simulator_process() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nowplaying.cli",
            "simulator",
            "--port",
            str(port),
            "--client-id",
            "cid",
            "--client-secret",
            SECRET,
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "simulator did not start"
            try:
                httpx.post(f"{base}/api/token", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def _setup(tmp_path: Path, base: str, secret: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "NOWPLAYING_"))}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "nowplaying.cli",
            "setup",
            "--non-interactive",
            "--no-login",
            "--client-id",
            "cid",
            "--accounts-url",
            base,
            "--api-url",
            f"{base}/v1",
        ],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT), "SPOTIFY_CLIENT_SECRET": secret},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_setup_command_against_a_served_simulator(tmp_path: Path, simulator_process: str) -> None:
    wrong = _setup(tmp_path, simulator_process, "not-the-secret")
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert "Invalid client secret" in wrong.stdout
    assert not (tmp_path / ".env").exists()
    right = _setup(tmp_path, simulator_process, SECRET)
    assert right.returncode == 0, right.stdout + right.stderr
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert SECRET not in right.stdout + right.stderr
    again = _setup(tmp_path, simulator_process, SECRET)
    assert again.returncode == 3, "never replaced without asking"


# -- the other sources -------------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[str]:
    """Spotify, Last.fm and ListenBrainz simulated on one loopback socket (demo's prefixes)."""
    sim = Simulator(clock=SystemClock(), client_id="cid", client_secret=SECRET)
    with serve(simulated_upstreams(sim, spotify_prefix=""), free_port()) as base:
        yield base


def _sources(tmp_path: Path, base: str, **kw: object) -> SetupOptions:
    values: dict[str, object] = {
        "spotify": False,
        "lastfm_key": "lfkey",
        "lastfm_secret": "lfsecret",
        "lastfm_url": f"{base}{LASTFM_SIM_PREFIX}/2.0/",
        "listenbrainz_url": f"{base}{LISTENBRAINZ_SIM_PREFIX}",
    }
    values.update(kw)
    return _opts(tmp_path, client_id=None, client_secret=None, **values)


async def test_setup_without_spotify_checks_lastfm_and_listenbrainz(
    tmp_path: Path, served: str
) -> None:
    """No Spotify app: NOWPLAYING_SPOTIFY=false, the Last.fm key and secret checked with a signed
    auth.getToken and written, ListenBrainz asked; the server starts from it, not in demo."""
    out = io.StringIO()
    async with httpx.AsyncClient() as http:
        code = await run_setup(_sources(tmp_path, served), out=out, http=http, environ={})
    assert code == 0, out.getvalue()
    values = read_env(tmp_path / ".env")
    assert values["NOWPLAYING_SPOTIFY"] == "false" and "SPOTIFY_CLIENT_ID" not in values
    assert (values["LASTFM_API_KEY"], values["LASTFM_API_SECRET"]) == ("lfkey", "lfsecret")
    text = out.getvalue()
    assert "ok: Last.fm accepted the API key and secret" in text
    assert "ok: ListenBrainz answers at" in text and "lfsecret" not in text
    assert "NOWPLAYING_SPOTIFY=false" in text
    settings = Settings(_env_file=tmp_path / ".env")  # type: ignore[call-arg]
    assert not settings.demo and settings.lastfm_configured and not settings.nowplaying_spotify


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"lastfm_secret": "wrong"}, "problem: Last.fm refused the signature"),
        ({"lastfm_key": "nokey"}, "problem: Last.fm refused the API key"),
        ({"lastfm_url": "http://127.0.0.1:9/2.0/"}, "problem: could not check with Last.fm"),
    ],
)
async def test_a_lastfm_key_it_refuses_writes_nothing(
    tmp_path: Path, served: str, change: dict[str, str], said: str
) -> None:
    out = io.StringIO()
    async with httpx.AsyncClient() as http:
        code = await run_setup(_sources(tmp_path, served, **change), out=out, http=http, environ={})
    assert code == 1 and said in out.getvalue(), out.getvalue()
    assert not (tmp_path / ".env").exists()


async def test_an_unreachable_listenbrainz_is_a_warning(tmp_path: Path, served: str) -> None:
    out = io.StringIO()
    opts = _sources(tmp_path, served, listenbrainz_url="http://127.0.0.1:9", lastfm_key=None)
    async with httpx.AsyncClient() as http:
        code = await run_setup(opts, out=out, http=http, environ={})
    assert code == 0 and "warning: could not reach ListenBrainz" in out.getvalue()
    assert "LASTFM_API_KEY" not in read_env(tmp_path / ".env")


async def test_a_lastfm_key_without_its_secret_is_missing(tmp_path: Path, served: str) -> None:
    out = io.StringIO()
    async with httpx.AsyncClient() as http:
        opts = _sources(tmp_path, served, lastfm_secret=None)
        assert await run_setup(opts, out=out, http=http, environ={}) == 2
    assert "missing LASTFM_API_SECRET" in out.getvalue()
