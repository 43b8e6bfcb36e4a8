"""The command line: settings errors, terminal login, `now`, schema and key maintenance."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from harness.accounts import account
from harness.app import make_settings
from harness.helpers import consent
from harness.live_server import free_port
from pydantic import SecretStr

from nowplaying.cli.login import LoginFailed, Waiting, parse_redirect, terminal_login
from nowplaying.cli.main import (
    describe_playing,
    load_settings,
    login_flow,
    main,
    maintenance,
    now_flow,
)
from nowplaying.clock import SystemClock
from nowplaying.config import Settings
from nowplaying.crypto import TokenCipher
from nowplaying.models import Item, Kind, NowPlaying
from nowplaying.runtime import open_runtime
from nowplaying.simulator import Simulator
from nowplaying.store import SQLiteStore

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sim_http() -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    sim = Simulator(
        clock=SystemClock(),
        client_id="cid",
        client_secret="csecret-for-tests",
        redirect_uris=("https://np.test/callback", "http://127.0.0.1:8000/callback"),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app), base_url="http://sim.test"
    ) as http:
        yield sim, http


def _url_in(out: io.StringIO) -> str:
    match = re.search(r"(http://sim\.test/authorize\?\S+)", out.getvalue())
    assert match, out.getvalue()
    return match.group(1)


async def test_login_by_pasting_the_redirect(
    tmp_path: Path, sim_http: tuple[Simulator, httpx.AsyncClient]
) -> None:
    """Browser elsewhere: the user pastes the redirect; the account is stored and published."""
    sim, http = sim_http
    settings = make_settings(tmp_path)
    out = io.StringIO()

    async def paste() -> str:
        redirect = await consent(http, _url_in(out))
        return str(redirect.headers["location"]) + "\n"

    code = await login_flow(
        settings, out=out, pasted=lambda: asyncio.ensure_future(paste()), http=http
    )
    assert code == 0, out.getvalue()
    text = out.getvalue()
    assert "Connected Demo Listener (demo)" in text
    assert re.search(r"https://np\.test/p/[A-Za-z0-9_-]{22}\.svg", text)
    assert "[![Now playing on Spotify]" in text
    store = SQLiteStore(
        settings.sqlite_path or "", cipher=TokenCipher(settings.secret_key.get_secret_value())
    )
    await store.open()
    account = await store.get_account("demo")
    await store.close()
    assert account is not None and account.public_id
    assert sim.calls["token:authorization_code"] == 1


async def test_login_on_the_loopback_redirect(
    tmp_path: Path, sim_http: tuple[Simulator, httpx.AsyncClient]
) -> None:
    """Browser on this machine: the redirect lands on a one-route loopback listener."""
    _, http = sim_http
    port = free_port()
    settings = make_settings(tmp_path, spotify_redirect_uri=f"http://127.0.0.1:{port}/callback")
    urls: list[str] = []
    announced = asyncio.Event()

    def announce(url: str, how: Waiting) -> None:
        assert how.listener and not how.server
        urls.append(url)
        announced.set()

    async with open_runtime(settings, public_origin="http://127.0.0.1", http=http) as rt:
        task = asyncio.create_task(terminal_login(rt, announce=announce, wait_seconds=20))
        await asyncio.wait_for(announced.wait(), 5)
        redirect = await consent(http, urls[0])
        target = redirect.headers["location"]
        assert target.startswith(f"http://127.0.0.1:{port}/callback?")
        async with httpx.AsyncClient() as browser:
            for _ in range(100):  # the listener may still be starting
                try:
                    page = await browser.get(target)
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
        assert "close this tab" in page.text
        account = await task
    assert account.id == "demo"


async def test_login_refuses_a_foreign_state(
    tmp_path: Path, sim_http: tuple[Simulator, httpx.AsyncClient]
) -> None:
    """A pasted redirect from another login is refused, with no token request."""
    sim, http = sim_http
    settings = make_settings(tmp_path)

    async def paste() -> str:
        return "https://np.test/callback?code=abc&state=someone-elses"

    async with open_runtime(settings, public_origin="https://np.test", http=http) as rt:
        with pytest.raises(LoginFailed, match="state"):
            await terminal_login(
                rt, announce=lambda url, how: None, pasted=lambda: asyncio.ensure_future(paste())
            )
    assert sim.calls["token"] == 0


async def test_login_flow_reports_failure(
    tmp_path: Path, sim_http: tuple[Simulator, httpx.AsyncClient]
) -> None:
    """Cancel at the consent page: exit status 1 and a message."""
    _, http = sim_http
    out = io.StringIO()

    async def paste() -> str:
        redirect = await consent(http, _url_in(out), decision="cancel")
        return str(redirect.headers["location"])

    code = await login_flow(
        make_settings(tmp_path), out=out, pasted=lambda: asyncio.ensure_future(paste()), http=http
    )
    assert code == 1
    assert "access_denied" in out.getvalue()


async def test_now_prints_the_playing_track(
    tmp_path: Path, sim_http: tuple[Simulator, httpx.AsyncClient]
) -> None:
    """`now` after `login`: one line with title, artist and position."""
    sim, http = sim_http
    settings = make_settings(tmp_path)
    out = io.StringIO()

    async def paste() -> str:
        return str((await consent(http, _url_in(out))).headers["location"])

    assert (
        await login_flow(
            settings, out=out, pasted=lambda: asyncio.ensure_future(paste()), http=http
        )
        == 0
    )
    sim.player("demo").play(0, progress_ms=61_000)
    sim.player("demo").pause()
    now_out = io.StringIO()
    assert await now_flow(settings, account_id=None, out=now_out, http=http) == 0
    assert now_out.getvalue().strip() == "⏸ Hoppípolla — Sigur Rós (1:01 / 4:28)"
    assert await now_flow(settings, account_id="nobody", out=io.StringIO(), http=http) == 1


def test_describe_playing_escapes_control_characters() -> None:
    """A title with terminal escape codes is printed inert."""
    item = Item(Kind.TRACK, "evil\x1b[2Jtitle", ("a\nb",), None, None, None, 1000)
    line = describe_playing(NowPlaying(True, Kind.TRACK, item, 0))
    assert "\x1b" not in line and "\n" not in line
    assert describe_playing(NowPlaying(False)) == "Nothing playing."


async def test_rotate_key_reseals(tmp_path: Path) -> None:
    """rotate-key re-encrypts every token with the new key; the old key is then unneeded."""
    old = make_settings(tmp_path, nowplaying_secret_key="o" * 40)
    store = SQLiteStore(old.sqlite_path or "", cipher=TokenCipher("o" * 40))
    await store.open()
    await store.put_account(account())
    await store.close()
    new = make_settings(
        tmp_path, nowplaying_secret_key="n" * 40, nowplaying_old_secret_keys=["o" * 40]
    )
    out = io.StringIO()
    assert await maintenance(new, reseal=True, out=out) == 0
    assert "re-encrypted 1" in out.getvalue()
    only_new = SQLiteStore(old.sqlite_path or "", cipher=TokenCipher("n" * 40))
    await only_new.open()
    assert (await only_new.get_account("alice")) is not None
    await only_new.close()


def test_missing_secret_outside_demo_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A client id without a secret key: a clear message and exit 2, no traceback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "abc")
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", "real-secret-value")
    monkeypatch.delenv("NOWPLAYING_SECRET_KEY", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        load_settings()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "NOWPLAYING_SECRET_KEY" in err
    assert "real-secret-value" not in err


def test_secrets_never_print() -> None:
    """Settings' repr hides every secret."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        spotify_client_id="abc",
        spotify_client_secret=SecretStr("the-client-secret"),
        nowplaying_secret_key=SecretStr("k" * 40),
    )
    assert "the-client-secret" not in repr(settings)
    assert "k" * 40 not in repr(settings)


def test_login_needs_a_spotify_app(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`login` in demo mode explains what to configure."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPOTIFY_CLIENT_ID", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["login"])
    assert exit_info.value.code == 2
    assert "SPOTIFY_CLIENT_ID" in capsys.readouterr().err
    monkeypatch.setenv("NOWPLAYING_SPOTIFY", "false")  # a server without Spotify: not demo
    monkeypatch.setenv("NOWPLAYING_SECRET_KEY", "k" * 40)
    for command in ("login", "now"):
        with pytest.raises(SystemExit) as exit_info:
            main([command])
        assert exit_info.value.code == 2
        assert "NOWPLAYING_SPOTIFY=false" in capsys.readouterr().err


def test_migrate_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`migrate` creates the schema in the configured database."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPOTIFY_CLIENT_ID", raising=False)
    monkeypatch.setenv("NOWPLAYING_DATABASE_URL", f"sqlite:///{tmp_path}/m.sqlite3")
    assert main(["migrate"]) == 0
    assert (tmp_path / "m.sqlite3").exists()
    assert "up to date" in capsys.readouterr().out


def test_parse_redirect() -> None:
    """A pasted redirect URL yields its query; junk yields nothing."""
    assert parse_redirect(" https://x/cb?code=a&state=b \n") == {"code": "a", "state": "b"}
    assert parse_redirect("garbage") == {}
    assert urlsplit("x").path == "x"
