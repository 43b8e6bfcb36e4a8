"""Operator logs: request ids, JSON lines, one line per record, no secrets, the real address."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness.app import SECRET_KEY, Env, open_env
from harness.live_server import free_port
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nowplaying.clock import FakeClock
from nowplaying.ops import logs

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
CLIENT_SECRET = "csecret-for-tests"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger configured by :func:`logs.configure` (JSON, DEBUG) into a buffer."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    quiet = {name: logging.getLogger(name).level for name in logs.QUIET}
    out = io.StringIO()
    logs.configure("DEBUG", "json", secrets=(CLIENT_SECRET, SECRET_KEY), stream=out)
    try:
        yield out
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)


def _records(out: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_every_response_names_its_request_id(env: Env) -> None:
    first = await env.client.get("/healthz")
    second = await env.client.get("/healthz")
    ids = {first.headers["x-request-id"], second.headers["x-request-id"]}
    assert len(ids) == 2 and all(len(i) == 16 for i in ids)
    kept = await env.client.get("/healthz", headers={"X-Request-Id": "edge-abc.123"})
    assert kept.headers["x-request-id"] == "edge-abc.123", "a proxy's id is kept"
    forged = await env.client.get("/healthz", headers={"X-Request-Id": "a b\r\nSet-Cookie: x"})
    assert forged.headers["x-request-id"] != "a b\r\nSet-Cookie: x"
    assert len(forged.headers["x-request-id"]) == 16


async def test_a_line_logged_in_a_request_carries_its_id_and_spotify_text_is_escaped(
    env: Env, captured: io.StringIO
) -> None:
    """Spotify's 403 text with a newline stays on one line, inside the request's record."""
    env.sim.faults.add("me", status=403, body="nope\nERROR forged line")
    response = await env.connect()
    assert response.status_code == 403
    rid = response.headers["x-request-id"]
    refused = [r for r in _records(captured) if "refused the profile read" in r["message"]]
    assert len(refused) == 1, captured.getvalue()
    assert refused[0]["request_id"] == rid
    assert "\n" not in refused[0]["message"]
    assert "ERROR forged line" in refused[0]["message"]


def test_text_format_keeps_one_record_on_one_line() -> None:
    out = io.StringIO()
    handler = logs.make_handler("text", stream=out)
    record = logging.LogRecord(
        "t", logging.WARNING, __file__, 1, "track %s", ("a\nb\u2028c",), None
    )
    handler.emit(record)
    assert out.getvalue().count("\n") == 1
    assert "a\\x0ab\\u2028c" in out.getvalue()


def test_an_access_line_names_its_client_in_both_formats() -> None:
    """The access line's client (a trusted proxy's forwarded one, or the peer) is written beside
    the request id: ``[client ...]`` in text, ``client`` in JSON."""
    for kind in ("text", "json"):
        out = io.StringIO()
        handler = logs.make_handler(kind, stream=out)
        record = logging.LogRecord(
            "nowplaying.access", logging.INFO, __file__, 1, "GET /p/x.json 200 0.1ms", (), None
        )
        record.client = "203.0.113.7"
        handler.emit(record)
        line = out.getvalue()
        if kind == "json":
            assert json.loads(line)["client"] == "203.0.113.7"
        else:
            assert "[client 203.0.113.7]: GET /p/x.json 200" in line


def test_a_secret_that_reaches_a_message_is_redacted() -> None:
    out = io.StringIO()
    handler = logs.make_handler("json", secrets=(CLIENT_SECRET, "short"), stream=out)
    msg = "secret=%s other=short"
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, msg, (CLIENT_SECRET,), None)
    handler.emit(record)
    line = json.loads(out.getvalue())
    assert line["message"] == "secret=[redacted] other=short", "values under 8 chars are not"


async def test_no_secret_reaches_the_logs_through_login_poll_refresh_and_failures(
    tmp_path: Path, clock: FakeClock, captured: io.StringIO
) -> None:
    """At DEBUG, through a login, polls, a refresh, a refused code and a refused client: no
    client secret, secret key, refresh or access token, session cookie; no httpx line."""
    async with open_env(tmp_path, clock) as env:
        assert (await env.connect()).status_code == 303
        cookie = next(iter(env.client.cookies.values()))
        await env.client.get("/api/spotify")
        env.sim.accounts.expire_access_tokens()
        await env.services.runtime.tokens.drop("demo")
        await env.services.runtime.hub.forget("demo")
        await env.client.get("/api/spotify")
        account = await env.services.runtime.store.get_account("demo")
        assert account is not None
        access = (await env.services.runtime.tokens.token("demo")).access_token
        refused = await env.client.get("/callback", params={"code": "x", "state": "unknown"})
        assert refused.status_code >= 400
        env.sim.accounts.clients["cid"].client_secret = "rotated-in-the-dashboard"
        await env.services.runtime.tokens.drop("demo")
        env.sim.accounts.expire_access_tokens()
        await env.services.runtime.hub.forget("demo")
        await env.client.get("/api/spotify")
    text = captured.getvalue()
    assert text, "something was logged"
    for secret in (CLIENT_SECRET, SECRET_KEY, account.refresh_token, access, cookie):
        assert secret not in text
    assert not [r for r in _records(captured) if r["logger"].startswith(("httpx", "httpcore"))]


def _serve(tmp_path: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "NOWPLAYING_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "nowplaying.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _until_up(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    pytest.fail("server did not come up")


def _stop(proc: subprocess.Popen[bytes]) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    return out.decode()


def test_banner_names_the_port_served_and_json_lines_parse(tmp_path: Path) -> None:
    """``serve --port N`` (a configured app) says it serves on N; with the JSON format every
    line, uvicorn's too, is one JSON object; a request logs no access line at INFO."""
    port = free_port()
    proc = _serve(
        tmp_path,
        port,
        SPOTIFY_CLIENT_ID="cid",
        SPOTIFY_CLIENT_SECRET=CLIENT_SECRET,
        SPOTIFY_REDIRECT_URI=f"http://127.0.0.1:{port}/callback",
        SPOTIFY_ACCOUNTS_URL="http://127.0.0.1:9/",
        NOWPLAYING_SECRET_KEY=SECRET_KEY,
        NOWPLAYING_LOG_FORMAT="json",
    )
    try:
        _until_up(proc, port)
    finally:
        out = _stop(proc)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    messages = [line["message"] for line in lines]
    assert f"serving on http://127.0.0.1:{port}/" in messages, out
    assert not any(":8000" in m for m in messages)
    assert CLIENT_SECRET not in out and SECRET_KEY not in out


def test_demo_banner_follows_the_port(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve(tmp_path, port)
    try:
        _until_up(proc, port)
    finally:
        out = _stop(proc)
    assert f"serving on http://127.0.0.1:{port}/" in out
    assert "127.0.0.1:8000" not in out


async def test_an_unhandled_error_is_logged_and_answered_with_its_request_id(
    tmp_path: Path, clock: FakeClock, captured: io.StringIO
) -> None:
    """The 500 handler runs outside the request-id middleware: the id still reaches both."""

    async def boom(request: Request) -> Response:
        raise RuntimeError("a bug")

    async with open_env(tmp_path, clock, raise_app_exceptions=False) as env:
        env.app.router.routes.append(Route("/boom-for-test", boom))
        response = await env.client.get("/boom-for-test")
    assert response.status_code == 500
    rid = response.headers["x-request-id"]
    [line] = [r for r in _records(captured) if r["message"].startswith("unhandled RuntimeError")]
    assert line["request_id"] == rid


def _failure(created: float, text: str = "poll failed: %s") -> logging.LogRecord:
    record = logging.makeLogRecord(
        {"name": "nowplaying.engine.live", "levelno": logging.WARNING, "levelname": "WARNING"}
    )
    record.msg, record.args, record.created = text, ("Spotify answered 502",), created
    return record


def test_ten_thousand_identical_failures_are_a_few_lines_that_count_the_rest() -> None:
    """10,000 in a minute: one line per interval, each naming how many it held back."""
    repeats = logs.RepeatFilter()
    kept = [r for i in range(10_000) if repeats.filter(r := _failure(i * 60 / 10_000))]
    assert 1 < len(kept) <= 60 / logs.REPEAT_SECONDS + 1
    held = [int(r.getMessage().split("(")[1].split()[0]) for r in kept[1:]]
    assert sum(held) + len(kept) > 10_000 * (1 - logs.REPEAT_SECONDS / 60) - 1


def test_many_different_lines_of_one_template_are_bounded_too() -> None:
    repeats = logs.RepeatFilter()
    kept = [
        r
        for i in range(10_000)
        if repeats.filter(r := _failure(1.0, f"poll failed for account {i}: %s"))
    ]
    assert len(kept) == logs.LOGGER_LINES  # each its own template: the logger's bound holds
    repeats = logs.RepeatFilter()
    same = [_failure(1.0) for _ in range(10_000)]
    for i, r in enumerate(same):
        r.args = (f"Spotify answered {i}",)
    assert sum(repeats.filter(r) for r in same) == logs.SIMILAR_LINES


def test_info_lines_are_never_held_back() -> None:
    repeats = logs.RepeatFilter()
    record = _failure(1.0)
    record.levelno = logging.INFO
    assert all(repeats.filter(record) for _ in range(100))


def test_an_accept_loop_out_of_descriptors_writes_a_bounded_number_of_lines(
    captured: io.StringIO,
) -> None:
    """asyncio logs 'socket.accept() out of system resource' with a traceback per attempt."""
    loop = asyncio.new_event_loop()
    try:
        error = OSError(errno.EMFILE, "Too many open files")
        for _ in range(10_000):
            loop.call_exception_handler(
                {"message": "socket.accept() out of system resource", "exception": error}
            )
    finally:
        loop.close()
    lines = captured.getvalue().splitlines()
    assert len(lines) < 100
    assert sum("out of system resource" in line for line in lines) == 1
