"""Fuzzing the app: Hypothesis strategies for headers, queries, cookies and JSON bodies, and what
every answer must be (never a 500; a JSON route answers JSON with an ``error`` on a 4xx).

The fuzzing runs against one app per test (Hypothesis examples share it, hence the suppressed
``function_scoped_fixture`` health check) with the rate limits off, so every example reaches the
handlers instead of a 429 (the limits are tests/web/test_limits.py's). Its clients see an app
error as the 500 it would be, not as a raised exception. In CI the search is derandomized
(:mod:`harness.profiles`); whatever Hypothesis found once is kept as an ``@example``."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from starlette.requests import cookie_parser

from harness.app import ORIGIN, SAME, Env, open_env
from harness.contract import Contract
from nowplaying.clock import FakeClock
from nowplaying.web.security import PAGE_CSP, host_name

SESSION = "__Host-np_session"


FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def running(tmp_path: Path, clock: FakeClock, **overrides: Any) -> AbstractAsyncContextManager[Env]:
    """Like conftest's ``env``, with settings overrides and app errors answered as 500s."""
    return open_env(tmp_path, clock, raise_app_exceptions=False, **overrides)


@dataclass
class Fuzz:
    """A connected, published owner (``env.client``) and an anonymous browser (``anon``)."""

    env: Env
    anon: httpx.AsyncClient
    contract: Contract | None = None

    async def public_id(self) -> str:
        """The current public id (an example may have rotated or withdrawn it)."""
        response = await self.env.client.post("/api/account/publish", headers=SAME)
        assert response.status_code == 200, response.text
        public_id: str = response.json()["publicId"]
        return public_id


# What a header can carry on the wire: printable latin-1 (no control characters).
HEADER_CHARS = st.characters(codec="latin-1", categories=["L", "M", "N", "P", "S", "Zs"])


header_text = st.text(HEADER_CHARS, max_size=200)


# Huge but under httpx's 64 KiB URL cap even when percent-encoded and repeated.
huge_text = st.sampled_from(["x", "é", "%", "&=", "\u2028", "\x00"]).map(lambda c: c * 1000)


param_text = st.one_of(st.text(max_size=60), huge_text)


URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


urlsafe = st.text(URLSAFE, max_size=60)


url_like = st.builds(
    "{}://{}{}".format,
    st.sampled_from(["https", "http", "HTTPS", "javascript", "", "np.test"]),
    st.one_of(
        st.sampled_from(["np.test", "NP.TEST", "np.test:443", "evil.test", "np.test.evil.test"]),
        st.text("abnp.test-[]:@%0123456789", max_size=20),
    ),
    st.text(HEADER_CHARS, max_size=30),
)


origin_value = st.one_of(st.sampled_from([ORIGIN, "null", "", ORIGIN + "/"]), url_like, header_text)


HEADER_VALUES: dict[str, st.SearchStrategy[str]] = {
    "Origin": origin_value,
    "Referer": st.one_of(st.just(ORIGIN + "/"), url_like, header_text),
    "If-None-Match": st.one_of(
        st.sampled_from(["*", 'W/"x"', '"abc", W/"def"', ",,,", "W/"]), header_text
    ),
    "Accept": st.one_of(
        st.sampled_from(["application/json", "text/html", "*/*", "image/svg+xml;q=0.1"]),
        header_text,
    ),
    "X-Forwarded-For": st.one_of(
        st.sampled_from(["203.0.113.9", "1.2.3.4, 10.0.0.1", "::1", "unknown", ""]), header_text
    ),
    "Host": st.one_of(st.sampled_from(["evil.test", "np.test:1", "[", "a b", ""]), header_text),
}


headers_strategy = st.fixed_dictionaries({}, optional=HEADER_VALUES)


query_keys = st.one_of(
    st.sampled_from(["theme", "size", "with", "compact", "state", "code", "error", "next"]),
    st.text(max_size=20),
)


query_values = st.one_of(
    st.sampled_from(["light", "dark", "auto", "compact", "recently-played", "", "<script>"]),
    param_text,
)


query_pairs = st.lists(st.tuples(query_keys, query_values), max_size=6)


raw_query = st.text("abc=&%+;/?[]:@é\x80 0123456789ABCDEFfz", max_size=80)


JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)


json_values = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


def encode_headers(headers: dict[str, str]) -> dict[bytes, bytes]:
    """Header values as the bytes a client puts on the wire (latin-1, like ASGI servers read)."""
    return {k.lower().encode(): v.encode("latin-1") for k, v in headers.items()}


def host_refused(response: httpx.Response) -> bool:
    """Whether the request named a host that is not this site's (refused before any route)."""
    sent = [v.decode("latin-1") for k, v in response.request.headers.raw if k.lower() == b"host"]
    path = unquote(response.request.url.path)
    return bool(sent) and host_name(sent[0]) != "np.test" and path != "/healthz"


def assert_host_refusal(response: httpx.Response) -> None:
    """The refusal of an unknown Host: a 400 JSON error, redirecting nowhere."""
    assert response.status_code == 400, describe(response)
    assert response.json()["error"] == "bad_request", describe(response)
    assert "location" not in response.headers


def describe(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url} -> {response.status_code}"


def assert_sane(response: httpx.Response, *, json_route: bool) -> None:
    """Never a 500; a JSON route answers JSON, with an ``error`` key on a 4xx."""
    assert response.status_code < 500, describe(response) + " " + response.text[:200]
    if json_route and response.status_code != 304:
        assert response.headers["content-type"].startswith("application/json"), describe(response)
        body = response.json()
        if 400 <= response.status_code < 500:
            assert isinstance(body, dict) and "error" in body, describe(response)


GET_ROUTES = (
    "/",
    "/login",
    "/callback",
    "/api/spotify",
    "/api/account",
    "/healthz",
    "/openapi.json",
    "/favicon.ico",
    "/p/{id}",
    "/p/{id}.json",
    "/p/{id}.svg",
    "/p/{id}/open",
    "/p/{id}/overlay",
    "/p/{id}/embed.js",
)


JSON_ROUTES = {"/api/spotify", "/api/account", "/healthz", "/openapi.json", "/p/{id}.json"}


OWNER_POSTS = (
    "/api/account/publish",
    "/api/account/rotate",
    "/api/account/unpublish",
    "/api/account/settings",
)


latin1_bytes = st.binary(max_size=120).map(lambda b: b.decode("latin-1"))


forged = st.one_of(
    st.builds("{}.{}".format, urlsafe, urlsafe),
    st.lists(urlsafe, max_size=5).map(".".join),
    st.builds("{}.{}".format, st.text(URLSAFE, min_size=43, max_size=43), urlsafe),
)


huge_header = st.sampled_from(["x", "é", "=", ";", " ", "."]).map(lambda c: c * 3000)


session_value = st.one_of(header_text, latin1_bytes, forged, huge_header)


def mangle(real: str, how: str, at: int, junk: str) -> str:
    """The real session cookie, truncated, with one character changed, or with junk around it."""
    at %= len(real)
    forged = {
        "truncate": real[:at],
        "flip": real[:at] + ("A" if real[at] != "A" else "B") + real[at + 1 :],
        "append": real + junk,
        "prepend": junk + real,
    }[how]
    # Junk that cookie parsing drops (spaces, quotes, "; ...") leaves the real cookie: flip instead.
    if cookie_parser(f"{SESSION}={forged}").get(SESSION) == real:
        return real[:at] + ("A" if real[at] != "A" else "B") + real[at + 1 :]
    return forged


def percent(raw: bytes) -> str:
    return "".join(f"%{b:02X}" for b in raw)


REAL_ID = "{real}"
"""Stands for the owner's current public id (with a track playing): the one id that redirects."""


# Response header names and values as the edge meets them (for the security header checks).
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
