"""``nowplaying doctor`` against the simulator served on loopback (a real Date header), with
faults: one line per problem with its fix, exit 1 when something is wrong."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from harness.app import SECRET_KEY, make_settings
from harness.live_server import free_port, serve
from pydantic import SecretStr

from nowplaying.cli.doctor import run_doctor, safe_url
from nowplaying.clock import FakeClock, SystemClock
from nowplaying.config import Settings
from nowplaying.crypto import TokenCipher
from nowplaying.runtime import LASTFM_SIM_PREFIX, LISTENBRAINZ_SIM_PREFIX, simulated_upstreams
from nowplaying.simulator import Simulator
from nowplaying.sources.spotify.oauth import SCOPE_CURRENTLY_PLAYING
from nowplaying.store import Account, Pause, SQLiteStore

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0


@dataclass
class Scene:
    sim: Simulator
    base: str
    tmp: Path

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "spotify_accounts_url": self.base,
            "spotify_api_url": f"{self.base}/v1",
            "spotify_redirect_uri": "http://127.0.0.1:8000/callback",
            "lastfm_api_url": f"{self.base}{LASTFM_SIM_PREFIX}/2.0/",
            "listenbrainz_api_url": f"{self.base}{LISTENBRAINZ_SIM_PREFIX}",
        }
        values.update(overrides)
        return make_settings(self.tmp, **values)

    async def connect(
        self, user: str = "demo", *, consented_at: float | None = None, key: str = SECRET_KEY
    ) -> None:
        """Store an account holding a real grant from the simulator."""
        grant = self.sim.accounts.grant(user, [SCOPE_CURRENTLY_PLAYING], "cid")
        assert grant.refresh_token is not None
        store = SQLiteStore(str(self.tmp / "nowplaying.sqlite3"), cipher=TokenCipher(key))
        await store.open()
        await store.put_account(
            Account(
                id=user,
                display_name=self.sim.accounts.users[user].display_name,
                refresh_token=grant.refresh_token,
                scopes=frozenset({SCOPE_CURRENTLY_PLAYING}),
                consented_at=time.time() if consented_at is None else consented_at,
            )
        )
        await store.close()

    async def doctor(self, settings: Settings | None = None, **kw: Any) -> tuple[int, str]:
        out = io.StringIO()
        chosen = settings or self.settings()
        code = await run_doctor(lambda: chosen, out=out, env_file=self.tmp / ".env", **kw)
        return code, out.getvalue()


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    sim = Simulator(
        clock=SystemClock(),
        client_id="cid",
        client_secret="csecret-for-tests",
        redirect_uris=("http://127.0.0.1:8000/callback",),
    )
    with serve(simulated_upstreams(sim, spotify_prefix=""), free_port()) as base:
        yield Scene(sim, base, tmp_path)


def _lines(text: str, level: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(level)]


async def test_a_healthy_installation_passes(scene: Scene) -> None:
    await scene.connect()
    code, text = await scene.doctor()
    assert code == 0, text
    assert not _lines(text, "FAIL") and not _lines(text, "warn"), text
    for check in ("settings", "redirect URI", "database", "secret key", "spotify", "clock"):
        assert any(line.split()[1].startswith(check.split()[0]) for line in _lines(text, "ok"))
    assert "ok    credentials: Spotify accepted" in text
    assert "ok    lastfm: Last.fm accepted the API key and secret" in text
    assert "ok    listenbrainz: ListenBrainz answers at" in text
    assert "ok    account: 'Demo Listener' (demo): Spotify answers for it" in text
    assert "all good" in text


async def test_each_source_is_checked_over_a_socket(scene: Scene) -> None:
    """A Last.fm key or secret it refuses fails with the fix; ListenBrainz unreachable warns;
    without Last.fm configured, it says so; without Spotify, Spotify is not asked."""
    code, text = await scene.doctor(scene.settings(lastfm_api_key="not-a-key"))
    assert code == 1 and "FAIL  lastfm: Last.fm refused the API key" in text, text
    assert "LASTFM_API_SECRET again" in text
    code, text = await scene.doctor(scene.settings(lastfm_api_secret="wrong-secret"))
    assert code == 1 and "FAIL  lastfm: Last.fm refused the signature" in text, text
    closed = f"http://127.0.0.1:{free_port()}"
    code, text = await scene.doctor(scene.settings(listenbrainz_api_url=closed, lastfm_api_key=""))
    assert code == 0, text
    assert "warn  listenbrainz: could not reach ListenBrainz" in text
    assert "ok    lastfm: not configured" in text
    calls = scene.sim.calls["token:client_credentials"]
    code, text = await scene.doctor(
        scene.settings(nowplaying_spotify=False, spotify_client_id="", spotify_client_secret="")
    )
    assert code == 0, text
    assert "ok    spotify: not used (NOWPLAYING_SPOTIFY=false)" in text
    assert scene.sim.calls["token:client_credentials"] == calls


async def test_a_wrong_secret_fails_with_its_fix(scene: Scene) -> None:
    code, text = await scene.doctor(scene.settings(spotify_client_secret="not-the-secret-at-all"))
    assert code == 1
    [line] = _lines(text, "FAIL")
    assert "credentials" in line and "Invalid client secret" in line and "setup --force" in line
    assert "not-the-secret-at-all" not in text


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"owner_premium": False}, "needs an active Premium subscription"),
        ({"allowlist": frozenset({"someone-else"})}, "User Management"),
    ],
)
async def test_spotify_dev_mode_refusals_are_named(
    scene: Scene, change: dict[str, Any], expected: str
) -> None:
    await scene.connect()
    client = scene.sim.accounts.clients["cid"]
    for name, value in change.items():
        setattr(client, name, value)
    code, text = await scene.doctor()
    assert code == 1
    [line] = _lines(text, "FAIL")
    assert line.startswith("FAIL  account: 'Demo Listener' (demo): ") and expected in line


async def test_accounts_the_key_cannot_open_fail_with_the_old_keys_fix(scene: Scene) -> None:
    await scene.connect(key="an-older-secret-key-that-is-long-enough-000")
    code, text = await scene.doctor()
    assert code == 1
    [line] = _lines(text, "FAIL")
    assert "1 of 1 account(s) were sealed with a key" in line
    assert "NOWPLAYING_OLD_SECRET_KEYS" in line


async def test_a_grant_near_its_six_month_end_warns(scene: Scene) -> None:
    await scene.connect(consented_at=time.time() - 176 * DAY)
    code, text = await scene.doctor()
    assert code == 0, "a warning does not fail"
    assert any("ends its grant in 5 day(s)" in line for line in _lines(text, "warn")), text


async def test_a_stored_pause_is_reported(scene: Scene) -> None:
    await scene.connect()
    store = SQLiteStore(str(scene.tmp / "nowplaying.sqlite3"), cipher=TokenCipher(SECRET_KEY))
    await store.open()
    now = time.time()
    await store.set_pause(Pause(now + 4.9 * 3600, "QUOTA_EXCEEDED"))
    await store.close()
    calls = scene.sim.calls["token"]
    code, text = await scene.doctor(clock=FakeClock(now))
    [line] = [line for line in _lines(text, "warn") if "rate limit" in line]
    assert "QUOTA_EXCEEDED" in line and "4.9 h left" in line and "extends the pause" in line
    assert code == 0
    assert scene.sim.calls["token"] == calls, "no credential check or account probe meanwhile"
    assert "not checked during Spotify's pause" in text


async def test_dns_failure_is_named(scene: Scene) -> None:
    async def unresolvable(host: str) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    code, text = await scene.doctor(resolve=unresolvable)
    assert code == 1
    assert any(
        "cannot resolve 127.0.0.1" in line and "DNS" in line for line in _lines(text, "FAIL")
    )
    assert "credentials" not in text, "nothing is sent where nothing resolves"


async def test_tls_failure_is_named(scene: Scene) -> None:
    """An https URL at a plain-http server: the handshake fails, and the line says TLS."""
    https = scene.base.replace("http://", "https://")
    settings = scene.settings(spotify_accounts_url=https, spotify_api_url=f"{https}/v1")
    code, text = await scene.doctor(settings)
    assert code == 1
    [line] = _lines(text, "FAIL")
    assert "TLS failed" in line and "CA certificates" in line


async def test_clock_skew_against_spotifys_date_fails(scene: Scene) -> None:
    """Spotify's Date has one-second resolution: the skew read is within 2 s of the offset."""
    for offset, word in ((120, "ahead of"), (-3600, "behind")):
        code, text = await scene.doctor(clock=FakeClock(time.time() + offset))
        assert code == 1
        [line] = [line for line in _lines(text, "FAIL") if "clock" in line]
        found = re.search(r"clock is (\d+) s (ahead of|behind)", line)
        assert found, line
        assert abs(int(found.group(1)) - abs(offset)) <= 2 and found.group(2) == word
        assert "ntp" in line
    code, text = await scene.doctor(clock=FakeClock(time.time() + 10))
    assert any(line.startswith("ok    clock: within") for line in text.splitlines()), text


async def test_a_failing_spotify_warns_through_the_control_api(scene: Scene) -> None:
    """Faults planned over the simulator's control API: a 503 on the probe, then on the token."""
    async with httpx.AsyncClient(base_url=scene.base) as http:
        for endpoint in ("me", "token"):
            response = await http.post(
                "/_control/faults", json={"endpoint": endpoint, "status": 503}
            )
            assert response.status_code == 201
    code, text = await scene.doctor()
    warns = _lines(text, "warn")
    assert any("Spotify answered 503" in line for line in warns), text
    assert any("credentials: not checked" in line for line in warns), text
    assert code == 0


async def test_unreachable_database_and_redis_fail_without_printing_passwords(
    scene: Scene,
) -> None:
    settings = scene.settings(
        nowplaying_database_url="postgresql://postgres:hunter2-password@127.0.0.1:1/none",
        nowplaying_redis_url="redis://:hunter2-password@127.0.0.1:1/0",
    )
    code, text = await scene.doctor(settings)
    assert code == 1
    fails = _lines(text, "FAIL")
    assert any(
        line.startswith("FAIL  database: cannot open postgresql://127.0.0.1:1/none")
        for line in fails
    )
    assert any(line.startswith("FAIL  redis: cannot reach redis://127.0.0.1:1/0") for line in fails)
    assert "hunter2" not in text


async def test_a_reachable_redis_passes_and_its_shared_pause_is_reported(
    scene: Scene, flushed: str
) -> None:
    code, text = await scene.doctor(scene.settings(nowplaying_redis_url=flushed))
    assert f"ok    redis: {safe_url(flushed)}" in text
    assert code == 0, text
    assert "rate limit" not in text
    now = time.time()
    client = aioredis.Redis.from_url(flushed)
    await client.set("np:pause", repr(now + 2 * 3600))
    await client.set("np:pause:reason", "QUOTA_EXCEEDED")
    await client.aclose()
    code, text = await scene.doctor(
        scene.settings(nowplaying_redis_url=flushed), clock=FakeClock(now)
    )
    [line] = [line for line in _lines(text, "warn") if "rate limit" in line]
    assert "QUOTA_EXCEEDED" in line and "2.0 h left" in line


async def test_bad_settings_and_redirect_uri_and_env_mode(scene: Scene) -> None:
    def placeholder() -> Settings:
        return make_settings(scene.tmp, spotify_client_secret=SecretStr("changethis"))

    out = io.StringIO()
    assert await run_doctor(placeholder, out=out, env_file=scene.tmp / ".env") == 1
    assert "FAIL  settings:" in out.getvalue() and "SPOTIFY_CLIENT_SECRET" in out.getvalue()

    (scene.tmp / ".env").write_text("X=1\n")
    (scene.tmp / ".env").chmod(0o644)
    code, text = await scene.doctor(
        scene.settings(spotify_redirect_uri="http://localhost:8000/callback")
    )
    assert code == 1
    assert any("redirect URI" in line and "localhost" in line for line in _lines(text, "FAIL"))
    assert any("chmod 600" in line for line in _lines(text, "warn"))


def test_doctor_command_exits_1_and_prints_one_line_per_problem(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "NOWPLAYING_"))}
    (tmp_path / ".env").write_text(
        "SPOTIFY_CLIENT_ID=cid\nSPOTIFY_CLIENT_SECRET=csecret-for-tests\n"
        f"NOWPLAYING_SECRET_KEY={SECRET_KEY}\nSPOTIFY_REDIRECT_URI=http://localhost:8000/callback\n"
        "SPOTIFY_ACCOUNTS_URL=http://127.0.0.1:9\nSPOTIFY_API_URL=http://127.0.0.1:9/v1\n"
        "LISTENBRAINZ_API_URL=http://127.0.0.1:9\n"
    )
    (tmp_path / ".env").chmod(0o600)
    done = subprocess.run(
        [sys.executable, "-m", "nowplaying.cli", "doctor"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    fails = _lines(done.stdout, "FAIL")
    assert len(fails) == 2, done.stdout
    assert "redirect URI" in fails[0] and "spotify: cannot reach" in fails[1]
    assert all(" Fix: " in line for line in fails)
