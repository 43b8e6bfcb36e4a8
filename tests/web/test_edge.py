"""The edge middleware (``web/edge.py``) does, in one layer, what the six nested ones did, in their
order: which answers carry which headers, which get an access log line, and the body count."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from harness.app import Env
from harness.fuzz import NAMES, VALUES
from harness.helpers import edge_client
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from nowplaying.web.edge import response_headers
from nowplaying.web.security import (
    with_security_headers,
)

pytestmark = pytest.mark.anyio


async def _echo(request: Request) -> Response:
    return PlainTextResponse(str(len(await request.body())), headers={"X-Request-Id": "forged"})


@pytest.fixture
async def edge() -> AsyncIterator[httpx.AsyncClient]:
    async with edge_client(_echo) as client:
        yield client


async def _chunks(n: int) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield b"x" * 30


async def test_refusals_before_the_app_and_after_it(
    edge: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Limits (431, 413 declared or streamed, 429) answer without the page security headers and
    without an access line; the unknown-host 400 and the app's answers have them; every answer
    carries the edge's request id (never the app's own)."""
    caplog.set_level(logging.INFO, logger="nowplaying.access")
    limited = [
        await edge.get("/p/x", headers={"X-Padding": "x" * 2000}),
        await edge.post("/p/x", content=b"x" * 101),
        await edge.post("/p/x", content=_chunks(4)),
    ]
    assert (await edge.get("/p/limited")).status_code == 200
    limited.append(await edge.get("/p/limited"))
    assert [r.status_code for r in limited] == [431, 413, 413, 429]
    streamed = await edge.post("/p/x", content=_chunks(3))
    host = await edge.get("/p/x", headers={"Host": "evil.example"})
    assert (streamed.status_code, streamed.text) == (200, "90")  # counted, let through
    assert host.status_code == 400
    for response in limited:
        assert "content-security-policy" not in response.headers
        assert response.headers["x-content-type-options"] == "nosniff"
    for response in (streamed, host):
        assert response.headers["content-security-policy"].endswith("frame-ancestors 'none'")
        assert response.headers["x-frame-options"] == "DENY"
    for response in [*limited, streamed, host]:
        assert len(response.headers.get_list("x-request-id")) == 1
        assert response.headers["x-request-id"] != "forged"
    lines = [r.getMessage() for r in caplog.records if r.name == "nowplaying.access"]
    # One line per request past the limits: the streamed overflow (its 413 is sent after the app
    # gave up: "-"), the allowed /p/limited, the counted body, the unknown host.
    assert [line.rsplit(" ", 1)[0] for line in lines] == [
        "POST /p/x -",
        "GET /p/limited 200",
        "POST /p/x 200",
        "GET /p/x 400",
    ]


RAW = st.lists(st.tuples(st.one_of(NAMES, st.just(b"x-request-id")), VALUES), max_size=6)


@given(raw=RAW, secured=st.booleans(), exempt=st.booleans())
@example(raw=[(b"content-type", b"application/json")], secured=True, exempt=False)  # usual
@example(raw=[(b"x-request-id", b"app"), (b"etag", b"x")], secured=False, exempt=False)
@example(raw=[(b"content-type", b"text/event-stream")], secured=True, exempt=False)  # a viewer
@example(
    raw=[(b"content-type", b"x"), (b"content-type", b"text/event-stream")],
    secured=True,
    exempt=False,
)
def test_the_edge_rewrites_response_headers_as_its_steps_did(
    raw: list[tuple[bytes, bytes]], secured: bool, exempt: bool
) -> None:
    """The edge's one pass equals its separate steps: the security headers (when past the
    limits), the app's X-Request-Id replaced by the request's, and "is this an event stream"
    read from the first Content-Type."""
    expected = list(raw)
    if secured:
        with_security_headers(expected, exempt)
    expected = [h for h in expected if h[0] != b"x-request-id"] + [(b"x-request-id", b"rid")]
    first_type = next((v for k, v in raw if k == b"content-type"), b"")
    headers, stream = response_headers(raw, secured=secured, exempt=exempt, rid=b"rid")
    assert headers == expected
    assert stream is first_type.startswith(b"text/event-stream")


async def test_the_request_id_is_set_once(connected: Env) -> None:
    response = await connected.client.get("/api/spotify", headers={"X-Request-Id": "edge-1"})
    assert response.headers.get_list("x-request-id") == ["edge-1"]
