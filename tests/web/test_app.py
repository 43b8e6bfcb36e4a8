"""The app as a whole: no query string or header makes any route answer 500."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from harness.fuzz import (
    FUZZ,
    GET_ROUTES,
    JSON_ROUTES,
    OWNER_POSTS,
    Fuzz,
    assert_host_refusal,
    assert_sane,
    encode_headers,
    headers_strategy,
    host_refused,
    query_pairs,
    raw_query,
)
from hypothesis import example, given
from hypothesis import strategies as st

pytestmark = pytest.mark.anyio


@FUZZ
@given(route=st.sampled_from(GET_ROUTES), pairs=query_pairs, raw=st.none() | raw_query)
@example(route="/p/{id}.svg", pairs=[("theme", "dark"), ("size", "compact")], raw=None).via(
    "hand-picked"
)
async def test_query_strings_never_500(
    fuzz: Fuzz, route: str, pairs: list[tuple[str, str]], raw: str | None
) -> None:
    """Any query string on any GET route, owner or not: never a 500."""
    path = route.replace("{id}", await fuzz.public_id())
    query = raw if raw is not None else urlencode(pairs)
    for client in (fuzz.env.client, fuzz.anon):
        response = await client.get(f"{path}?{query}")
        assert_sane(response, json_route=route in JSON_ROUTES)


@FUZZ
@given(
    target=st.sampled_from([*GET_ROUTES, "POST /logout", *(f"POST {p}" for p in OWNER_POSTS)]),
    headers=headers_strategy,
)
@example(target="POST /logout", headers={"Referer": "http://["}).via("hand-picked")
@example(target="POST /api/account/publish", headers={"Referer": "https://[np.test/"}).via(
    "hand-picked"
)
@example(target="/api/account", headers={"Host": "["}).via("hand-picked")
@example(target="/", headers={"Host": "evil.example"}).via("an unknown host")
@example(target="/healthz", headers={"Host": "10.0.0.7"}).via("a load balancer's probe")
@example(target="/api/spotify", headers={"Host": "NP.TEST:8443"}).via("our name, any port")
async def test_headers_never_500(fuzz: Fuzz, target: str, headers: dict[str, str]) -> None:
    """Hostile Origin, Referer, If-None-Match, Accept, X-Forwarded-For, Host: never a 500."""
    method, _, route = target.rpartition(" ")
    path = route.replace("{id}", await fuzz.public_id())
    # The owner's browser everywhere but /logout, which would end the session under test.
    client = fuzz.anon if route == "/logout" else fuzz.env.client
    body = b'{"lastPlayed": false}' if route.endswith("/settings") else None
    response = await client.request(
        method or "GET", path, headers=encode_headers(headers), content=body
    )
    assert_sane(response, json_route=route in JSON_ROUTES or route.startswith("/api/"))
    if host_refused(response):
        assert_host_refusal(response)
