"""Property tests: bad input never yields a 500, real answers match the OpenAPI document, and the
abuse limits hold.

In CI the search is derandomized (tests/conftest.py's ``ci`` profile): every run tries the same
examples, so a submission cannot pass or fail by chance; locally it stays random. Whatever
Hypothesis found once is kept as an ``@example``.

The fuzzing runs against one app per test (Hypothesis examples share it, hence the suppressed
``function_scoped_fixture`` health check) with the rate limits off, so every example reaches the
handlers instead of a 429; the limits themselves are tested at the end with the defaults. Its
clients see an app error as the 500 it would be, not as a raised exception.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import httpx
import pytest
from harness.app import ORIGIN, SAME, Env, open_env
from harness.profiles import hypothesis_profile
from harness.sse import SSEReader
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.requests import cookie_parser

from nowplaying.clock import FakeClock
from nowplaying.web.security import host_name

pytestmark = pytest.mark.anyio

SESSION = "__Host-np_session"
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize(
    ("environ", "profile"),
    [
        ({"CI": "true"}, "ci"),
        ({"CI": "1"}, "ci"),
        ({"CI": "false"}, "dev"),
        ({}, "dev"),
        ({"HYPOTHESIS_PROFILE": "ci"}, "ci"),
        ({"CI": "true", "HYPOTHESIS_PROFILE": "dev"}, "dev"),
    ],
)
def test_ci_runs_are_derandomized(environ: dict[str, str], profile: str) -> None:
    """CI (or HYPOTHESIS_PROFILE=ci) picks the derandomized profile; local runs search."""
    assert hypothesis_profile(environ) == profile
    chosen = settings.get_profile(profile)
    assert chosen.derandomize is (profile == "ci")
    if profile == "ci":
        assert chosen.database is None


# -- an app per test, with chosen settings ---------------------------------------------------------


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


@pytest.fixture
async def fuzz(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Fuzz]:
    async with running(
        tmp_path, clock, nowplaying_login_rate_per_minute=0, nowplaying_public_rate_per_second=0
    ) as env:
        assert (await env.connect()).status_code == 303
        transport = httpx.ASGITransport(app=env.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as anon:
            yield Fuzz(env, anon)


# -- strategies ------------------------------------------------------------------------------------

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


# -- /callback -------------------------------------------------------------------------------------


@FUZZ
@given(
    fields=st.fixed_dictionaries(
        {
            "state": st.none() | param_text,
            "code": st.none() | param_text,
            "error": st.none() | st.sampled_from(["access_denied", ""]) | param_text,
        }
    ),
    extra=query_pairs,
    real_state=st.booleans(),
    repeat=st.booleans(),
)
async def test_callback_query_never_500(
    fuzz: Fuzz,
    fields: dict[str, str | None],
    extra: list[tuple[str, str]],
    real_state: bool,
    repeat: bool,
) -> None:
    """Any /callback query: a 400/403 page, no session, and no token request without a state."""
    env, browser = fuzz.env, fuzz.anon
    pairs: list[tuple[str, str]] = []
    if real_state:
        login = await browser.get("/login")
        pairs.append(("state", dict(httpx.URL(login.headers["location"]).params)["state"]))
    for key, value in fields.items():
        if value is not None and not (real_state and key == "state"):
            pairs += [(key, value)] * (2 if repeat else 1)
    pairs += extra
    before = env.sim.calls["token"]
    response = await browser.get("/callback?" + urlencode(pairs))
    assert_sane(response, json_route=False)
    assert response.status_code in (400, 403), describe(response)
    assert SESSION not in response.headers.get("set-cookie", "")
    if not real_state:
        assert env.sim.calls["token"] == before


# -- cookies ---------------------------------------------------------------------------------------

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


@FUZZ
@given(
    kind=st.sampled_from(["raw", "session", "both", "mangled"]),
    value=session_value,
    login=session_value,
    mutation=st.tuples(
        st.sampled_from(["truncate", "flip", "append", "prepend"]), st.integers(0, 500)
    ),
)
@example(kind="raw", value="=;=;;", login="", mutation=("flip", 0)).via("hand-picked")
@example(kind="session", value=".", login="", mutation=("flip", 0)).via("hand-picked")
@example(kind="session", value="abc.é", login="", mutation=("flip", 0)).via("non-ASCII signature")
@example(kind="both", value="", login="nonce.sig¡", mutation=("flip", 0)).via("non-ASCII login")
@example(kind="mangled", value="¡", login="", mutation=("append", 0)).via("found by Hypothesis")
async def test_cookies_never_500_and_never_authenticate(
    fuzz: Fuzz, kind: str, value: str, login: str, mutation: tuple[str, int]
) -> None:
    """Arbitrary Cookie headers and forged session cookies: anonymous everywhere, never a 500."""
    if kind == "mangled":
        value = mangle(fuzz.env.client.cookies.get(SESSION) or "", *mutation, junk=value)
    cookie = {
        "raw": value,
        "session": f"{SESSION}={value}",
        "both": f"{SESSION}={value}; __Host-np_login={login}",
        "mangled": f"{SESSION}={value}",
    }[kind]
    headers = encode_headers({"Cookie": cookie})
    anon = fuzz.anon
    anon.cookies.clear()
    for path in ("/api/spotify", "/api/account"):
        response = await anon.get(path, headers=headers)
        assert_sane(response, json_route=True)
        assert response.status_code == 401, describe(response)
        assert response.json() == {"error": "not_connected"}
    home = await anon.get("/", headers=headers)
    assert_sane(home, json_route=False)
    assert "Connect Spotify" in home.text and "Demo Listener" not in home.text
    publish = await anon.post(
        "/api/account/publish", headers={**headers, b"origin": ORIGIN.encode()}
    )
    assert_sane(publish, json_route=True)
    assert publish.status_code == 401
    logout = await anon.post("/logout", headers={**headers, b"origin": ORIGIN.encode()})
    assert_sane(logout, json_route=False)
    callback = await anon.get("/callback?state=x&code=y", headers=headers)
    assert callback.status_code == 400
    assert await fuzz.env.services.runtime.store.get_account("demo") is not None


# -- public ids ------------------------------------------------------------------------------------


def _percent(raw: bytes) -> str:
    return "".join(f"%{b:02X}" for b in raw)


REAL_ID = "{real}"
"""Stands for the owner's current public id (with a track playing): the one id that redirects."""


@FUZZ
@given(
    raw_id=st.one_of(
        st.text(max_size=80).map(lambda s: quote(s, safe="")),
        st.binary(max_size=40).map(_percent),
        st.from_regex(r"[A-Za-z0-9_-]{16,64}", fullmatch=True),
        st.text("%0123456789ABCDEFabcdefgz/", max_size=40),
        st.just(REAL_ID),
    ),
    suffix=st.sampled_from([".json", ".svg", "", "/open", "/"]),
)
@example(raw_id="%00", suffix=".json").via("hand-picked")
@example(raw_id="%FF%FE", suffix=".svg").via("hand-picked")
@example(raw_id="0%2F", suffix="").via("found by Hypothesis: the trailing-slash redirect")
@example(raw_id="%2F%2Fevil.example", suffix="").via("a protocol-relative path")
@example(raw_id=REAL_ID, suffix="/").via("the real id with a trailing slash")
@example(raw_id=REAL_ID, suffix="/open").via("the one redirect")
@example(raw_id=REAL_ID, suffix=".json").via("the real id")
@example(raw_id=REAL_ID, suffix=".svg").via("the real id")
async def test_public_ids_never_500(fuzz: Fuzz, raw_id: str, suffix: str) -> None:
    """Any public id: a 404 (JSON for .json), a 200 card for .svg, never a 500; a trailing
    slash is a 404; the only redirect is /open of a real id, to open.spotify.com."""
    real = raw_id == REAL_ID
    if real:
        raw_id = await fuzz.public_id()
        fuzz.env.sim.player("demo").play(0)
        await fuzz.env.services.runtime.hub.forget("demo")
    response = await fuzz.anon.get(f"/p/{raw_id}{suffix}")
    routed = unquote(response.request.url.path)  # what the router sees
    assert_sane(response, json_route=re.fullmatch(r"/p/[^/]+\.json", routed) is not None)
    if re.fullmatch(r"/p/[^/]+\.svg", routed):
        assert response.status_code == 200, describe(response)
        assert response.headers["content-type"].startswith("image/svg+xml")
    if routed.endswith("/") and routed.startswith("/p/"):  # ("/p/.." is the home page)
        assert response.status_code == 404, describe(response)
    if "location" in response.headers:
        assert real and suffix == "/open", describe(response)
        assert response.headers["location"].startswith("https://open.spotify.com/")
    if real and suffix != "/":
        assert response.status_code == (302 if suffix == "/open" else 200), describe(response)


# -- query strings and headers on every route ------------------------------------------------------


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


@FUZZ
@given(body=json_values | st.dictionaries(st.just("lastPlayed"), json_values, min_size=1))
@example(body={"lastPlayed": True, "extra": [1, {"x": None}]}).via("hand-picked")
@example(body={"lastPlayed": 0}).via("hand-picked")
async def test_settings_json_bodies(fuzz: Fuzz, body: Any) -> None:
    """Any JSON body: 200 exactly when it is an object whose lastPlayed is a boolean, else 400."""
    response = await fuzz.env.client.post(
        "/api/account/settings",
        content=json.dumps(body),
        headers={**SAME, "Content-Type": "application/json"},
    )
    assert_sane(response, json_route=True)
    valid = isinstance(body, dict) and isinstance(body.get("lastPlayed"), bool)
    assert response.status_code == (200 if valid else 400), describe(response)


@FUZZ
@given(body=st.binary(max_size=2000))
@example(body=b"\xff\xfe{").via("hand-picked")
@example(body=b"[" * 50_000).via("deeply nested JSON, under the 64 KiB limit")
@example(body=b'{"lastPlayed":' * 4_000).via("deeply nested object")
async def test_settings_raw_bodies(fuzz: Fuzz, body: bytes) -> None:
    """Any bytes as the settings body (invalid UTF-8, deep nesting): a 400, never a 500."""
    response = await fuzz.env.client.post(
        "/api/account/settings",
        content=body,
        headers={**SAME, "Content-Type": "application/json"},
    )
    assert_sane(response, json_route=True)
    assert response.status_code in (200, 400), describe(response)


# -- the OpenAPI document against real answers -----------------------------------------------------

DOC_URI = "urn:nowplaying:openapi"


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in ("", *parts))


def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.endswith("Z")


class Contract:
    """The app's own /openapi.json, answering 'does this response match what you document?'."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.registry: Registry[Any] = Registry().with_resource(
            DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012)
        )
        self.formats = FormatChecker()
        self.formats.checks("date-time", raises=ValueError)(_date_time)

    def validator(self, pointer: str) -> Any:
        return Draft202012Validator(
            {"$ref": f"{DOC_URI}#{pointer}"}, registry=self.registry, format_checker=self.formats
        )

    def errors(self, template: str, response: httpx.Response) -> list[str]:
        """Why ``response`` (to a request for ``template``) is not what the document says."""
        method = response.request.method.lower()
        documented = self.doc["paths"][template][method]["responses"]
        status = str(response.status_code)
        if status not in documented:
            return [] if status == "429" else [f"{template}: undocumented status {status}"]
        content = documented[status].get("content")
        if not content:
            return []
        media = response.headers.get("content-type", "").split(";")[0].strip()
        if media not in content:
            return [f"{template} {status}: undocumented content type {media!r}"]
        if not media.endswith("json"):
            return []
        pointer = _pointer("paths", template, method, "responses", status, "content", media)
        validator = self.validator(pointer + "/schema")
        return [
            f"{template} {status}: {e.message} at {list(e.absolute_path)}"
            for e in validator.iter_errors(response.json())
        ]

    def check(self, template: str, response: httpx.Response) -> None:
        assert self.errors(template, response) == [], response.text


async def contract(env: Env) -> Contract:
    response = await env.client.get("/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    return Contract(doc)


async def test_openapi_describes_every_state(connected: Env) -> None:
    """/api/spotify, /api/account and /p/{id}.json in every state validate against the document."""
    api = await contract(connected)
    owner, player = connected.client, connected.sim.player("demo")
    api.check("/api/account", await owner.get("/api/account"))  # before publishing
    published = await owner.post("/api/account/publish", headers=SAME)
    api.check("/api/account/publish", published)
    public_id = published.json()["publicId"]
    api.check("/api/account", await owner.get("/api/account"))
    public = f"/p/{public_id}.json"

    def paused() -> None:
        player.play(0, progress_ms=10_000)
        player.pause()

    states: dict[str, Callable[[], None]] = {
        "track": lambda: player.play(0),
        "hostile track": lambda: player.play(1, progress_ms=3000),
        "episode": lambda: player.play(4),
        "ad": player.play_ad,
        "paused": paused,
        "local file": lambda: player.play(7),
        "nothing": player.stop,
    }
    seen: dict[str, int] = {}
    for name, arrange in states.items():
        arrange()
        await connected.services.runtime.hub.forget("demo")
        private = await owner.get("/api/spotify")
        api.check("/api/spotify", private)
        api.check("/p/{public_id}.json", await owner.get(public))
        seen[name] = private.status_code

    # Stale: good data, then Spotify failing.
    player.play(0)
    await connected.services.runtime.hub.forget("demo")
    await owner.get("/api/spotify")
    connected.sim.faults.add("currently-playing", status=503, times=3)
    await connected.clock.advance(5.5)
    stale = await owner.get("/api/spotify")
    assert stale.json().get("stale") is True
    api.check("/api/spotify", stale)
    api.check("/p/{public_id}.json", await owner.get(public))
    connected.sim.faults.clear()

    # Unavailable: Spotify failing before anything is known.
    connected.sim.faults.add("currently-playing", status=503, times=50)
    await connected.services.runtime.hub.forget("demo")
    unavailable = await owner.get("/api/spotify")
    assert unavailable.status_code == 503
    api.check("/api/spotify", unavailable)
    api.check("/p/{public_id}.json", await owner.get(public))
    connected.sim.faults.clear()

    settings_on = await owner.post("/api/account/settings", json={"lastPlayed": True}, headers=SAME)
    assert "reconsentUrl" in settings_on.json()
    api.check("/api/account/settings", settings_on)
    api.check("/api/account/rotate", await owner.post("/api/account/rotate", headers=SAME))
    api.check("/api/account/publish", await owner.post("/api/account/publish", headers={}))

    # Not connected, then a revoked grant (reconnect).
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=connected.app), base_url=ORIGIN
    ) as anonymous:
        for path in ("/api/spotify", "/api/account"):
            api.check(path, await anonymous.get(path))
        api.check("/p/{public_id}.json", await anonymous.get(public))  # the rotated-away id
    connected.sim.revoke("demo")
    connected.services.runtime.tokens.forget("demo")
    await connected.services.runtime.hub.forget("demo")
    reconnect = await owner.get("/api/spotify")
    assert reconnect.json() == {"error": "reconnect_required"}
    api.check("/api/spotify", reconnect)
    api.check("/api/account", await owner.get("/api/account"))
    new_id = (await owner.get("/api/account")).json()["publicId"]
    api.check("/p/{public_id}.json", await owner.get(f"/p/{new_id}.json"))
    assert seen == dict.fromkeys(states, 200)


async def test_openapi_describes_pause_and_reconnect_reason(connected: Env) -> None:
    """/api/account with Spotify's pause in force and with a reconnect reason."""
    api = await contract(connected)
    hub = connected.services.runtime.hub
    hub.app_pause.until, hub.app_pause.reason = connected.clock.now() + 3600, "QUOTA_EXCEEDED"
    paused = await connected.client.get("/api/account")
    assert paused.json()["pauseReason"] == "QUOTA_EXCEEDED"
    api.check("/api/account", paused)
    hub.app_pause.until = 0.0  # (a pause would keep the revoke from being seen)
    connected.sim.revoke("demo")
    connected.services.runtime.tokens.forget("demo")
    await connected.services.runtime.hub.forget("demo")
    await connected.client.get("/api/spotify")
    revoked = await connected.client.get("/api/account")
    assert revoked.json()["reconnectReason"] == "revoked"
    api.check("/api/account", revoked)


async def test_openapi_describes_last_played(connected: Env) -> None:
    """Nothing playing with last played on (and granted) matches Nothing + LastPlayed."""
    api = await contract(connected)
    owner = connected.client
    await owner.post("/api/account/settings", json={"lastPlayed": True}, headers=SAME)
    await connected.connect(login_path="/login?with=recently-played")
    public_id = (await owner.post("/api/account/publish", headers=SAME)).json()["publicId"]
    connected.sim.player("demo").stop()
    await connected.services.runtime.hub.forget("demo")
    nothing = await owner.get("/api/spotify")
    assert "lastPlayed" in nothing.json()
    api.check("/api/spotify", nothing)
    api.check("/p/{public_id}.json", await owner.get(f"/p/{public_id}.json"))
    api.check("/api/account", await owner.get("/api/account"))


async def test_openapi_describes_event_data(connected: Env) -> None:
    """Each SSE ``data:`` is a NowPlaying or Error object, as the document says."""
    api = await contract(connected)
    either = {
        "oneOf": [
            {"$ref": f"{DOC_URI}#/components/schemas/NowPlaying"},
            {"$ref": f"{DOC_URI}#/components/schemas/Error"},
        ]
    }
    validator = Draft202012Validator(either, registry=api.registry)
    cookie = f"{SESSION}={connected.client.cookies.get(SESSION)}"
    connected.sim.player("demo").play(0)
    await connected.services.runtime.hub.forget("demo")
    async with SSEReader(connected.app, "/api/spotify/events", {"Cookie": cookie}) as sse:
        await sse.wait_for(1)
        connected.sim.player("demo").play_ad()
        await connected.clock.advance(5.5)
        await sse.wait_for(2)
        connected.sim.faults.add("currently-playing", status=503, times=20)
        await connected.services.runtime.hub.forget("demo")
        await sse.wait_for(3)
    assert len(sse.events) >= 3
    for event in sse.events:
        assert list(validator.iter_errors(event.data)) == [], event.data


DOCUMENTED_GETS = ("/api/spotify", "/api/account", "/p/{id}.json", "/p/{id}.svg", "/p/{id}")


@FUZZ
@given(route=st.sampled_from(DOCUMENTED_GETS), pairs=query_pairs, headers=headers_strategy)
async def test_fuzzed_answers_match_the_document(
    fuzz: Fuzz, route: str, pairs: list[tuple[str, str]], headers: dict[str, str]
) -> None:
    """Fuzzed queries and headers on documented GETs: documented status, content and schema."""
    if fuzz.contract is None:
        fuzz.contract = await contract(fuzz.env)
    api = fuzz.contract
    public_id = await fuzz.public_id()
    path = route.replace("{id}", public_id)
    template = route.replace("{id}", "{public_id}")
    for client in (fuzz.env.client, fuzz.anon):
        response = await client.get(f"{path}?{urlencode(pairs)}", headers=encode_headers(headers))
        assert response.status_code < 500, describe(response)
        if host_refused(response):  # refused before any route, like a 429: the same everywhere
            assert_host_refusal(response)
            continue
        assert api.errors(template, response) == [], describe(response)


async def test_open_answers_are_documented(connected: Env) -> None:
    """/p/{id}/open with something playing is the documented 302 to open.spotify.com."""
    api = await contract(connected)
    public_id = (await connected.client.post("/api/account/publish", headers=SAME)).json()[
        "publicId"
    ]
    connected.sim.player("demo").play(0)
    await connected.services.runtime.hub.forget("demo")
    response = await connected.client.get(f"/p/{public_id}/open")
    api.check("/p/{public_id}/open", response)
    assert urlsplit(response.headers["location"]).netloc == "open.spotify.com"


async def test_error_answers_of_public_paths_are_documented(connected: Env) -> None:
    """Unknown ids and nothing to open: every status a documented path answers is documented."""
    api = await contract(connected)
    public_id = (await connected.client.post("/api/account/publish", headers=SAME)).json()[
        "publicId"
    ]
    connected.sim.player("demo").stop()
    await connected.services.runtime.hub.forget("demo")
    unknown = "A" * 22
    answers = {
        "/p/{public_id}.json": await connected.client.get(f"/p/{unknown}.json"),
        "/p/{public_id}.svg": await connected.client.get(f"/p/{unknown}.svg"),
        "/p/{public_id}": await connected.client.get(f"/p/{unknown}"),
        "/p/{public_id}/open": await connected.client.get(f"/p/{unknown}/open"),
    }
    problems = [e for template, r in answers.items() for e in api.errors(template, r)]
    nothing = await connected.client.get(f"/p/{public_id}/open")
    problems += [f"nothing playing: {e}" for e in api.errors("/p/{public_id}/open", nothing)]
    async with SSEReader(connected.app, f"/p/{unknown}/events") as sse:
        status = str(await sse.wait_status())
    if status not in api.doc["paths"]["/p/{public_id}/events"]["get"]["responses"]:
        problems.append(f"/p/{{public_id}}/events: undocumented status {status}")
    assert not problems, "\n".join(problems)


# -- limits ----------------------------------------------------------------------------------------


async def test_body_over_64k_is_413_json(connected: Env) -> None:
    """A settings body over 64 KiB, declared or streamed: 413 JSON, nothing changed."""
    big = b'{"lastPlayed": true, "pad": "' + b"x" * (64 * 1024) + b'"}'
    declared = await connected.client.post("/api/account/settings", content=big, headers=SAME)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    streamed = await connected.client.post("/api/account/settings", content=chunks(), headers=SAME)
    assert "content-length" not in streamed.request.headers
    for response in (declared, streamed):
        assert response.status_code == 413, describe(response)
        assert response.json()["error"] == "body_too_large"
    account = await connected.services.runtime.store.get_account("demo")
    assert account is not None and account.show_last_played is False


async def test_headers_over_16k_are_431(connected: Env) -> None:
    """Request headers over 16 KiB: 431 JSON, on pages and APIs alike."""
    for path in ("/", "/api/spotify", "/login"):
        response = await connected.client.get(path, headers={"X-Padding": "x" * (16 * 1024)})
        assert response.status_code == 431, describe(response)
        assert response.json()["error"] == "headers_too_large"


async def test_login_hammering_is_rate_limited(env: Env) -> None:
    """/login 30 times from one address: 429s with Retry-After, and no token requests."""
    responses = [await env.client.get("/login") for _ in range(30)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited, [r.status_code for r in responses]
    assert all(int(r.headers["retry-after"]) >= 1 for r in limited)
    assert all(r.json()["error"] == "too_many_requests" for r in limited)
    assert {r.status_code for r in responses} == {302, 429}
    assert env.sim.calls["token"] == 0


async def test_public_flood_is_limited_after_the_burst_and_costs_one_call(connected: Env) -> None:
    """200 quick /p/{id}.json: 120 answered, then 429s; exactly one currently-playing call."""
    public_id = (await connected.client.post("/api/account/publish", headers=SAME)).json()[
        "publicId"
    ]
    await connected.services.runtime.hub.forget("demo")
    connected.sim.reset_calls()
    statuses = []
    for _ in range(200):
        response = await connected.client.get(f"/p/{public_id}.json")
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1
    assert statuses == [200] * 120 + [429] * 80
    assert connected.sim.calls["currently-playing"] == 1  # the first answer needs one, no more


async def test_forwarded_for_is_ignored_without_a_trusted_proxy(env: Env) -> None:
    """A forged X-Forwarded-For does not buy a fresh bucket: the 11th login is refused."""
    statuses = [
        (await env.client.get("/login", headers={"X-Forwarded-For": f"198.51.100.{i}"})).status_code
        for i in range(20)
    ]
    assert statuses == [302] * 10 + [429] * 10


async def test_forwarded_for_is_believed_from_a_trusted_proxy(
    tmp_path: Path, clock: FakeClock
) -> None:
    """With the proxy listed, each forwarded address has its own bucket; others are ignored."""
    async with running(tmp_path, clock, nowplaying_trusted_proxies=["127.0.0.1"]) as env:
        proxied = [
            await env.client.get("/login", headers={"X-Forwarded-For": f"198.51.100.{i}"})
            for i in range(30)
        ]
        assert [r.status_code for r in proxied] == [302] * 30
        same = [
            (await env.client.get("/login", headers={"X-Forwarded-For": "203.0.113.7"})).status_code
            for _ in range(11)
        ]
        assert same == [302] * 10 + [429]
        stranger = httpx.ASGITransport(app=env.app, client=("192.0.2.50", 4000))
        async with httpx.AsyncClient(transport=stranger, base_url=ORIGIN) as direct:
            forged = [
                (
                    await direct.get("/login", headers={"X-Forwarded-For": f"198.51.100.{i}"})
                ).status_code
                for i in range(100, 120)
            ]
        assert forged == [302] * 10 + [429] * 10
