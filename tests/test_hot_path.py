"""The hot path's shortcuts answer exactly as the straightforward code did.

Security headers are added to the raw header list in one pass (not through ``MutableHeaders``),
a ``Host`` verdict is remembered per value, the latency histogram's children are kept, and the
request id is set on the raw list: each checked here against the behaviour it replaced.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.datastructures import MutableHeaders

from nowplaying.web.edge import Edge
from nowplaying.web.security import (
    HOST_VERDICTS,
    PAGE_CSP,
    TrustedHosts,
    with_security_headers,
)
from tests.conftest import Env

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
    [b"x", PAGE_CSP.encode(), b"frame-ancestors *", b"default-src 'none'", b"DENY"]
)


def _reference(raw: list[tuple[bytes, bytes]], exempt: bool) -> list[tuple[bytes, bytes]]:
    """What SecurityHeaders did before: ``MutableHeaders.setdefault``, one header at a time."""
    message = {"type": "http.response.start", "headers": list(raw)}
    headers = MutableHeaders(scope=message)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if not exempt:
        csp = headers.setdefault("Content-Security-Policy", PAGE_CSP)
        if "frame-ancestors 'none'" in csp:
            headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    return headers.raw


@given(raw=st.lists(st.tuples(NAMES, VALUES), max_size=6), exempt=st.booleans())
@example(raw=[], exempt=False)  # a bare response: every header added
@example(raw=[(b"content-security-policy", b"frame-ancestors *")], exempt=False)  # an embed
@example(raw=[(b"content-security-policy", PAGE_CSP.encode())], exempt=False)  # XFO added
@example(raw=[(b"x-frame-options", b"x"), (b"x-frame-options", b"DENY")], exempt=True)
def test_security_headers_match_setdefault(raw: list[tuple[bytes, bytes]], exempt: bool) -> None:
    mine = list(raw)
    with_security_headers(mine, exempt)
    assert mine == _reference(raw, exempt)


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


async def test_latency_is_counted_once_per_request_per_route(connected: Env) -> None:
    """The kept histogram children count every request (a lower and an upper bound)."""
    before = _count(connected, "/api/spotify")
    for _ in range(5):
        await connected.client.get("/api/spotify")
    assert _count(connected, "/api/spotify") == before + 5


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
