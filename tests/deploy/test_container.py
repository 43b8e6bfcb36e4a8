"""The Dockerfile, built and run for real, and compose.yaml's shape.

The image is built offline on a local Debian base (see :mod:`harness.container`), then run with
``--network host`` (``dockerd --bridge=none``: no container address exists, traffic stays on
loopback) in demo mode on SQLite and against this machine's PostgreSQL and Redis: ``/healthz``
answers, Docker's own HEALTHCHECK reports healthy, a signed-in owner publishes and the widget page
and public JSON are served, the process runs as an unprivileged user, and ``docker stop`` ends it
cleanly. Docker that cannot be used skips with the reason, or fails in CI
(``NOWPLAYING_REQUIRE_SERVICES=1``). Waits are bounded conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from harness.cluster import _create_database, _drop_database
from harness.container import BASE_TAG, ROOT, build_image, docker, docker_problem, logs
from harness.live_server import free_port
from harness.servers import sign_in
from harness.services import POSTGRES_URL, REDIS_URL, require
from PIL import Image

pytestmark = pytest.mark.anyio
TAG = "nowplaying-test:latest"
UP_SECONDS = 60.0


def require_docker() -> None:
    problem = docker_problem()
    if problem is None:
        return
    if os.environ.get("NOWPLAYING_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{problem}, and NOWPLAYING_REQUIRE_SERVICES=1 (.ci/run starts dockerd)")
    pytest.skip(problem)


@pytest.fixture(scope="module")
def image() -> str:
    require_docker()
    return build_image(TAG)


@contextlib.contextmanager
def container(image: str, **env: str) -> Iterator[tuple[str, str]]:
    """The image running with ``--network host`` on a free loopback port: (name, base URL)."""
    port = free_port()
    name = f"np-test-{secrets.token_hex(4)}"
    settings = {"HOST": "127.0.0.1", "PORT": str(port), **env}
    args = [f"--env={k}={v}" for k, v in settings.items()]
    docker("run", "--detach", "--network", "host", "--name", name, "--health-interval=1s",
           "--health-start-period=30s", *args, image)  # fmt: skip
    try:
        yield name, f"http://127.0.0.1:{port}"
    finally:
        docker("rm", "--force", name, check=False)


def inspect(name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(docker("inspect", name))
    return found[0]


async def wait_up(name: str, base: str) -> None:
    """Until ``/healthz`` answers and Docker's HEALTHCHECK says healthy (bounded)."""
    deadline = time.monotonic() + UP_SECONDS
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            state = inspect(name)["State"]
            assert state["Running"], logs(name)
            with contextlib.suppress(httpx.HTTPError):
                answered = (await http.get(f"{base}/healthz")).status_code == 200
                if answered and state.get("Health", {}).get("Status") == "healthy":
                    return
            await asyncio.sleep(0.2)
    pytest.fail(f"container not healthy within {UP_SECONDS:g}s:\n{docker('logs', name)}")


async def publish_and_view(base: str) -> None:
    """Sign in (the demo's simulated Spotify), publish, and fetch the widget page and JSON."""
    cookie = await sign_in(base)
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        published = await http.post(
            "/api/account/publish", headers={"Cookie": cookie, "Origin": base}
        )
        assert published.status_code == 200, published.text
        public_id = published.json()["publicId"]
        page = await http.get(f"/p/{public_id}")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert f"/p/{public_id}/events" in page.text
        data = await http.get(f"/p/{public_id}.json")
        assert data.status_code == 200
        assert "isPlaying" in data.json()
        await png_has_text(http, public_id)


async def png_has_text(http: httpx.AsyncClient, public_id: str) -> None:
    """The PNG card drawn in the image has its text: the fonts are there (resvg draws nothing
    for text when no font is installed)."""
    card = await http.get(f"/p/{public_id}.png?idle_text=Fonts%20present&theme=light")
    assert card.status_code == 200 and card.headers["content-type"] == "image/png"
    title = Image.open(io.BytesIO(card.content)).convert("L").crop((240, 70, 780, 116))
    ink = title.point(lambda v: 255 if v < 128 else 0).histogram()[255]
    assert ink > 500, f"only {ink} dark pixels where the title goes: no text drawn"


async def test_image_serves_the_widget_on_sqlite_as_an_unprivileged_user(image: str) -> None:
    with container(image) as (name, base):
        await wait_up(name, base)
        await publish_and_view(base)
        info = inspect(name)
        assert info["Config"]["User"] == "nowplaying"
        assert docker("exec", name, "id", "-u").strip() != "0"
        assert "nowplaying.sqlite3" in docker("exec", name, "ls", "/data").split()


async def test_image_runs_on_postgres_and_redis_and_stops_cleanly(image: str) -> None:
    """The scale-out layout (the one compose.yaml runs), then ``docker stop``: exit status 0,
    and the drain logged."""
    require(POSTGRES_URL, "PostgreSQL")
    require(REDIS_URL, "Redis")
    db = f"np_container_{secrets.token_hex(4)}"
    await _create_database(db)
    try:
        env = {
            "NOWPLAYING_DATABASE_URL": POSTGRES_URL.rsplit("/", 1)[0] + f"/{db}",
            "NOWPLAYING_REDIS_URL": REDIS_URL,
            "NOWPLAYING_SHUTDOWN_SECONDS": "3",
        }
        with container(image, **env) as (name, base):
            await wait_up(name, base)
            await publish_and_view(base)
            docker("stop", "--time", "15", name, timeout=60)
            state = inspect(name)["State"]
            assert state["ExitCode"] == 0, logs(name)
            assert "shutdown clean" in logs(name)
    finally:
        await _drop_database(db)


async def test_image_is_small(image: str) -> None:
    """What the image adds to its base: the virtualenv and a user, no build tools or caches."""

    def size(tag: str) -> int:
        return int(docker("image", "inspect", "--format", "{{.Size}}", tag))

    added = size(image) - size(BASE_TAG)
    # About 90 MB (2026-12-07): the virtualenv's compiled parts are most of it (Pillow and its
    # libraries ~22 MB, uvloop ~14 MB, cryptography, pydantic-core, asyncpg, resvg); a compiler,
    # pip's cache or a second copy of the tree would each add far more than the margin.
    assert 0 < added < 120 * 1024 * 1024, added


# -- compose.yaml ----------------------------------------------------------------------------


def compose_config(tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` (Debian's) on a copy of compose.yaml, with an empty ``.env``."""
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("NOWPLAYING_REQUIRE_SERVICES") == "1":
            pytest.fail("docker-compose is not installed, and NOWPLAYING_REQUIRE_SERVICES=1")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    shutil.copy2(ROOT / "compose.yaml", tmp / "compose.yaml")
    (tmp / ".env").touch()
    clean = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    return subprocess.run(
        [binary, "--file", str(tmp / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=tmp,
        timeout=60,
        check=False,
    )


@pytest.fixture
def resolved(tmp_path: Path) -> dict[str, Any]:
    """compose.yaml as Compose resolves it (validated, anchors merged, variables set)."""
    done = compose_config(tmp_path, POSTGRES_PASSWORD="from-the-environment")
    assert done.returncode == 0, done.stderr
    loaded: dict[str, Any] = yaml.safe_load(done.stdout)
    return loaded


def test_compose_refuses_to_start_without_a_database_password(tmp_path: Path) -> None:
    done = compose_config(tmp_path)
    assert done.returncode != 0
    assert "set POSTGRES_PASSWORD" in done.stderr


def test_compose_runs_two_app_instances_postgres_redis_and_nginx(
    resolved: dict[str, Any],
) -> None:
    """Validated by Compose itself; the database password comes from the environment."""
    services = resolved["services"]
    assert set(services) == {"app1", "app2", "db", "redis", "proxy"}
    for name in ("app1", "app2"):
        app = services[name]
        assert "context" in app["build"]
        env = app["environment"]
        assert env["NOWPLAYING_DATABASE_URL"].startswith("postgresql://")
        assert ":from-the-environment@db:5432/" in env["NOWPLAYING_DATABASE_URL"]
        assert env["NOWPLAYING_REDIS_URL"].startswith("redis://redis:6379/")
        assert app["depends_on"] == {
            "db": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
        grace = int(app["stop_grace_period"].removesuffix("s"))
        assert grace > 10  # above NOWPLAYING_SHUTDOWN_SECONDS' default
    for name in ("db", "redis", "proxy"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    assert services["proxy"]["depends_on"] == {
        "app1": {"condition": "service_healthy"},
        "app2": {"condition": "service_healthy"},
    }


def test_compose_matches_the_dockerfile_and_the_nginx_config(resolved: dict[str, Any]) -> None:
    """The app's health comes from the Dockerfile's HEALTHCHECK; nginx is given the shipped
    file, its upstream names the app services, and the apps trust exactly nginx's address."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD .*/healthz", dockerfile, re.M)
    assert re.search(r"^USER nowplaying$", dockerfile, re.M)
    services = resolved["services"]
    proxy = services["proxy"]
    conf = "/deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro"
    assert any(v.endswith(conf) for v in proxy["volumes"]), proxy["volumes"]
    upstream = re.search(
        r"upstream nowplaying \{(.*?)\}", (ROOT / "deploy/nginx.conf").read_text(), re.S
    )
    assert upstream is not None
    servers = re.findall(r"server (\S+?):(\d+)", upstream.group(1))
    assert servers == [("app1", "8000"), ("app2", "8000")]
    address = proxy["networks"]["nowplaying"]["ipv4_address"]
    for name in ("app1", "app2"):
        env = services[name]["environment"]
        assert json.loads(env["NOWPLAYING_TRUSTED_PROXIES"]) == [address]
        assert env["PORT"] == "8000"
