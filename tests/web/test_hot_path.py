"""The hot path's shortcuts answer exactly as the straightforward code did.

Security headers are added to the raw header list in one pass (not through ``MutableHeaders``),
a ``Host`` verdict is remembered per value, the latency histogram's children are kept, and the
request id is set on the raw list: each checked here against the behaviour it replaced.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.app import Env, open_env
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.datastructures import MutableHeaders

from nowplaying.clock import FakeClock
from nowplaying.web.edge import Edge, response_headers
from nowplaying.web.security import (
    HOST_VERDICTS,
    JSON_CSP,
    PAGE_CSP,
    TrustedHosts,
    with_security_headers,
)

pytestmark = pytest.mark.anyio

NAMES = st.sampled_from(
    [
        b"content-type",
        b"content-security-policy",
        b"x-frame-options",
        b"x-content-type-options",
        b"referrer-policy",
        b"cross-origin-opener-policy",
        b"etag",
    ]
)
VALUES = st.sampled_from(
    [
        b"x",
        PAGE_CSP.encode(),
        b"frame-ancestors *",
        b"default-src 'none'",
        b"DENY",
        b"application/json",
        b"text/event-stream",
    ]
)


def _reference(raw: list[tuple[bytes, bytes]], exempt: bool) -> list[tuple[bytes, bytes]]:
    """What SecurityHeaders did before: ``MutableHeaders.setdefault``, one header at a time."""
    message = {"type": "http.response.start", "headers": list(raw)}
    headers = MutableHeaders(scope=message)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if not exempt:
        is_json = headers.get("content-type", "").startswith("application/json")
        csp = headers.setdefault("Content-Security-Policy", JSON_CSP if is_json else PAGE_CSP)
        if "frame-ancestors 'none'" in csp:
            headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    return headers.raw


@given(raw=st.lists(st.tuples(NAMES, VALUES), max_size=6), exempt=st.booleans())
@example(raw=[], exempt=False)  # a bare response: every header added
@example(raw=[(b"content-security-policy", b"frame-ancestors *")], exempt=False)  # an embed
@example(raw=[(b"content-security-policy", PAGE_CSP.encode())], exempt=False)  # XFO added
@example(raw=[(b"x-frame-options", b"x"), (b"x-frame-options", b"DENY")], exempt=True)
@example(raw=[(b"content-type", b"application/json")], exempt=False)  # the API's own policy
def test_security_headers_match_setdefault(raw: list[tuple[bytes, bytes]], exempt: bool) -> None:
    mine = list(raw)
    with_security_headers(mine, exempt)
    assert mine == _reference(raw, exempt)


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
def test_the_edge_rewritesresponse_headers_as_its_steps_did(
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


async def test_json_answers_carry_the_json_policy_and_pages_the_page_policy(
    connected: Env,
) -> None:
    """A JSON document may load nothing (``default-src 'none'``), a page what it needs; both
    refuse framing (CSP and X-Frame-Options)."""
    for path in ("/api/spotify", "/api/account", "/api/nothing-here"):
        response = await connected.client.get(path)
        assert response.headers["content-type"] == "application/json", path
        assert response.headers["content-security-policy"] == JSON_CSP, path
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
    page = await connected.client.get("/")
    assert page.headers["content-security-policy"] == PAGE_CSP
    assert page.headers["x-frame-options"] == "DENY"


async def test_a_refused_host_stays_refused_and_verdicts_are_bounded(connected: Env) -> None:
    """The verdict per Host value is a memo: the same answers, and no more than HOST_VERDICTS."""
    for _ in range(2):
        assert (
            await connected.client.get("/api/spotify", headers={"Host": "evil.test"})
        ).status_code == 400
        assert (await connected.client.get("/api/spotify")).status_code == 200
    guard = _trusted_hosts(connected)
    for n in range(HOST_VERDICTS + 10):
        await connected.client.get("/healthz-nope", headers={"Host": f"h{n}.evil.test"})
    assert len(guard._verdicts) == HOST_VERDICTS
    assert (
        await connected.client.get("/api/spotify", headers={"Host": "h1.evil.test"})
    ).status_code == 400
    late = await connected.client.get("/api/spotify", headers={"Host": "late.evil.test"})
    assert late.status_code == 400  # past the bound: parsed each time, still refused


def _trusted_hosts(env: Env) -> TrustedHosts:
    app = env.app.middleware_stack
    while not isinstance(app, Edge):
        app = app.app  # type: ignore[union-attr]
    return app.hosts


async def test_latency_is_counted_once_per_request_per_route(
    tmp_path: Path, clock: FakeClock
) -> None:
    """With /metrics on, the kept histogram children count every request (a lower and an upper
    bound)."""
    async with open_env(tmp_path, clock, nowplaying_metrics_token="t" * 32) as env:
        assert (await env.connect()).status_code == 303
        before = _count(env, "/api/spotify")
        for _ in range(5):
            assert (await env.client.get("/api/spotify")).status_code == 200
        assert _count(env, "/api/spotify") == before + 5


async def test_latency_is_not_observed_while_metrics_are_off(connected: Env) -> None:
    """Nobody can scrape the histogram without a token: the edge does not fill it."""
    for _ in range(3):
        assert (await connected.client.get("/api/spotify")).status_code == 200
    assert _count(connected, "/api/spotify") == 0
    assert (await connected.client.get("/metrics")).status_code == 404


def _count(env: Env, route: str) -> float:
    registry = env.services.metrics.registry
    value = registry.get_sample_value(
        "nowplaying_http_request_duration_seconds_count",
        {"route": route, "method": "GET", "status": "200"},
    )
    return value or 0.0


async def test_the_request_id_is_set_once(connected: Env) -> None:
    response = await connected.client.get("/api/spotify", headers={"X-Request-Id": "edge-1"})
    assert response.headers.get_list("x-request-id") == ["edge-1"]
