"""The fast path (``web/fast.py``): answers equal to the normal path's, byte for byte (but
``Date`` and the request id), invalidated by a change, under the edge's rate limit, host check,
metrics and access log. The app runs on the fake clock behind a real uvicorn server (httptools,
guarded, detachable, as ``nowplaying serve`` runs it) in the test's own loop, so both paths
answer at the same instant."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from harness.app import SAME, Env, open_env

from nowplaying.clock import FakeClock
from nowplaying.web.fast import TICKET, FastAnswers, Ticket, key_of, server_protocol
from nowplaying.web.guard import Guard, Limits, protocol_class

pytestmark = pytest.mark.anyio

HOST = "np.test"
METRICS_TOKEN = "metrics-token-for-the-fast-path-tests"


@contextlib.asynccontextmanager
async def serving(env: Env, parser: str, guard: Guard | None = None) -> AsyncIterator[int]:
    """``env``'s app (already started) behind uvicorn on ``parser`` on a free port: the port."""
    http = server_protocol(protocol_class(parser), guard or Guard(), env.app.state.fast)
    config = uvicorn.Config(
        env.app, host="127.0.0.1", port=0, lifespan="off", log_level="warning", http=http
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def served(
    tmp_path: Path, clock: FakeClock, parser: str
) -> AsyncIterator[tuple[Env, int, str]]:
    """A connected, published account behind a real server: (env, port, public id)."""
    async with open_env(tmp_path, clock, nowplaying_metrics_token=METRICS_TOKEN) as env:
        assert (await env.connect()).status_code == 303
        public_id = await env.publish()
        async with serving(env, parser) as port:
            yield env, port, public_id


def request(method: str, target: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_answer(reader: asyncio.StreamReader, method: str) -> bytes:
    """One whole answer: its head and (unless HEAD or 304) its ``Content-Length`` of body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    bodyless = method == "HEAD" or status == 304
    return head + (b"" if bodyless else await reader.readexactly(length))


async def exchange(port: int, *writes: tuple[bytes, list[str]]) -> list[bytes]:
    """On one connection, each write (one or more requests, pipelined) then its answers (one
    per method listed) before the next write."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    try:
        for wire, methods in writes:
            writer.write(wire)
            answers += [await read_answer(reader, method) for method in methods]
    finally:
        writer.close()
    return answers


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def unstamped(answer: bytes) -> bytes:
    """``answer`` without its ``Date`` and ``X-Request-Id`` lines (each answer's own)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    kept = [
        line
        for line in head.split(b"\r\n")
        if not line.lower().startswith((b"date:", b"x-request-id:"))
    ]
    return b"\r\n".join(kept) + b"\r\n\r\n" + body


def title_of(answer: bytes) -> str:
    title: str = json.loads(answer.partition(b"\r\n\r\n")[2])["title"]
    return title


def fast_of(env: Env) -> FastAnswers:
    found: FastAnswers = env.app.state.fast
    return found


def cookie_of(env: Env) -> str:
    return "; ".join(f"{name}={value}" for name, value in env.client.cookies.items())


async def twice(port: int, method: str, target: str, headers: dict[str, str]) -> list[bytes]:
    """The same request twice on one connection: the normal path's answer, then the fast's."""
    wire = request(method, target, headers)
    return await exchange(port, (wire, [method]), (wire, [method]))


async def test_fast_answers_equal_the_normal_ones_byte_for_byte(
    served: tuple[Env, int, str],
) -> None:
    """Each hot route and variant (HEAD, card options, a 304, the owner's /api/spotify) is
    answered first by the app, then by the fast path with the same status line, headers in the
    same order and body; each fast answer is counted under its route."""
    env, port, public_id = served
    card = f"/p/{public_id}.svg"
    first = await exchange(port, (request("GET", card), ["GET"]))
    etag = next(
        line.split(b": ", 1)[1].decode()
        for line in first[0].split(b"\r\n")
        if line.lower().startswith(b"etag:")
    )
    assert b"data:image/png;base64," in first[0]  # the card with its cover
    owner = {"Cookie": cookie_of(env)}
    variants = [
        ("GET", f"/p/{public_id}.json", {}, "/p/{public_id}.json", 200),
        ("HEAD", f"/p/{public_id}.json", {}, "/p/{public_id}.json", 200),
        ("HEAD", card, {}, "/p/{public_id}.svg", 200),
        ("GET", f"{card}?theme=dark&size=compact", {}, "/p/{public_id}.svg", 200),
        ("GET", card, {"If-None-Match": etag}, "/p/{public_id}.svg", 304),
        ("GET", card, {"If-None-Match": f'W/{etag}, "other"'}, "/p/{public_id}.svg", 304),
        ("GET", "/api/spotify", owner, "/api/spotify", 200),
        ("HEAD", "/api/spotify", owner, "/api/spotify", 200),
    ]
    fast = fast_of(env)
    for method, target, headers, route, status in variants:
        before = fast.counts[route]
        normal, quick = await twice(port, method, target, headers)
        assert status_of(normal) == status, (target, normal[:200])
        assert unstamped(quick) == unstamped(normal), (method, target, headers)
        assert fast.counts[route] == before + 1, (method, target, headers)
        assert quick.count(b"\r\nx-request-id: ") == 1
        assert quick.split(b"\r\n", 2)[1].startswith(b"date: ")  # where uvicorn puts it
    # The card asked first, then again: fast too, and the same bytes.
    again = await exchange(port, (request("GET", card), ["GET"]))
    assert unstamped(again[0]) == unstamped(first[0])


async def test_a_track_change_ends_the_fast_answer_and_sse_agrees(
    served: tuple[Env, int, str],
) -> None:
    """After a skip the next answer is the app's (not counted as fast), names the new track as
    the event stream's first event does, and is then served fast."""
    env, port, public_id = served
    target = f"/p/{public_id}.json"
    fast = fast_of(env)
    old = (await twice(port, "GET", target, {}))[1]
    assert fast.counts["/p/{public_id}.json"] == 1
    env.sim.player("demo").skip()
    hub = env.services.runtime.hub
    version = hub.peek("demo").version  # type: ignore[union-attr]
    for _ in range(100):  # polls on the fake clock until the engine has seen the skip
        await env.clock.advance(1)
        if hub.peek("demo").version != version:  # type: ignore[union-attr]
            break
    normal, quick = await twice(port, "GET", target, {})
    assert fast.counts["/p/{public_id}.json"] == 2  # the first after the change was the app's
    title = hub.peek("demo").playing.item.title  # type: ignore[union-attr]
    assert title_of(old) != title
    assert title_of(normal) == title
    assert unstamped(quick) == unstamped(normal)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request("GET", f"/p/{public_id}/events"))
    try:
        while not (line := await reader.readline()).startswith(b"data:"):
            assert line, "the stream ended before its first event"
    finally:
        writer.close()
    assert json.loads(line.removeprefix(b"data:"))["title"] == title


async def test_the_rate_limit_applies_to_fast_answers(
    served: tuple[Env, int, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The public burst (120) holds across both paths: the 121st request from one address is a
    429 from the edge (counted once), every answer has its access line and latency sample."""
    caplog.set_level(logging.INFO, logger="nowplaying.access")
    env, port, public_id = served
    target = f"/p/{public_id}.json"
    answers = await exchange(
        port, (request("GET", target), ["GET"]), (request("GET", target) * 129, ["GET"] * 129)
    )
    assert [status_of(a) for a in answers] == [200] * 120 + [429] * 10
    assert fast_of(env).counts["/p/{public_id}.json"] == 119  # the first was the app's
    lines = [r.getMessage() for r in caplog.records if r.name == "nowplaying.access"]
    assert sum(line.startswith(f"GET {target} 200 ") for line in lines) == 120
    assert sum(line.startswith(f"GET {target} 429 ") for line in lines) == 0  # before the edge
    scrape = request("GET", "/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})
    metrics = (await exchange(port, (scrape, ["GET"])))[0].decode()
    assert 'nowplaying_fast_answers_total{route="/p/{public_id}.json"} 119.0' in metrics
    count = 'nowplaying_http_request_duration_seconds_count{method="GET",'
    assert f'{count}route="/p/{{public_id}}.json",status="200"}} 120.0' in metrics


async def test_an_unknown_host_is_refused_though_an_answer_is_recorded(
    served: tuple[Env, int, str],
) -> None:
    """The ``Host`` is part of what an answer is found by: another host gets the edge's 400."""
    env, port, public_id = served
    target = f"/p/{public_id}.json"
    await twice(port, "GET", target, {})
    wire = f"GET {target} HTTP/1.1\r\nHost: evil.example\r\n\r\n".encode()
    assert status_of((await exchange(port, (wire, ["GET"])))[0]) == 400
    assert fast_of(env).counts["/p/{public_id}.json"] == 1


async def test_a_rotated_link_dies_at_once_on_the_fast_path_too(
    served: tuple[Env, int, str],
) -> None:
    """Rotating the link (or signing out) ends the answers made under the old one at once."""
    env, port, public_id = served
    target = f"/p/{public_id}.json"
    owner = {"Cookie": cookie_of(env)}
    await twice(port, "GET", target, {})
    await twice(port, "GET", "/api/spotify", owner)
    assert (await env.client.post("/api/account/rotate", headers=SAME)).status_code == 200
    assert status_of((await exchange(port, (request("GET", target), ["GET"])))[0]) == 404
    assert (await env.client.post("/logout", headers=SAME)).status_code in (200, 303)
    assert (
        status_of((await exchange(port, (request("GET", "/api/spotify", owner), ["GET"])))[0])
        == 401
    )
    assert dict(fast_of(env).counts) == {"/p/{public_id}.json": 1, "/api/spotify": 1}


async def test_pipelined_requests_are_answered_in_order_across_both_paths(
    served: tuple[Env, int, str],
) -> None:
    """Fast, normal, fast in one write: three answers in the order asked (the guard holds the
    third until the second is answered, then the fast path answers it too)."""
    env, port, public_id = served
    target = f"/p/{public_id}.json"
    await twice(port, "GET", target, {})
    wire = request("GET", target) + request("GET", "/healthz") + request("GET", target)
    answers = await exchange(port, (wire, ["GET"] * 3))
    assert [b'"ok":true' in a for a in answers] == [False, True, False]
    assert all(b'"title"' in a for a in (answers[0], answers[2]))
    assert fast_of(env).counts["/p/{public_id}.json"] == 3


async def test_an_if_none_match_that_matches_nothing_is_not_kept(
    served: tuple[Env, int, str],
) -> None:
    """Any client can send any ETag: a 200 asked with one goes the normal way every time."""
    env, port, public_id = served
    normal, again = await twice(port, "GET", f"/p/{public_id}.svg", {"If-None-Match": '"x"'})
    assert (status_of(normal), status_of(again)) == (200, 200)
    assert fast_of(env).counts["/p/{public_id}.svg"] == 0
    assert not fast_of(env).answers


async def test_fast_answers_restart_the_guard_header_deadline(
    tmp_path: Path, clock: FakeClock, parser: str
) -> None:
    """A keep-alive connection asking within the header deadline each time is served past it
    (each fast answer starts the next request's deadline); once idle, it is closed at it."""
    guard = Guard(Limits(header_seconds=0.4))
    async with open_env(tmp_path, clock) as env:
        assert (await env.connect()).status_code == 303
        target = f"/p/{await env.publish()}.json"
        async with serving(env, parser, guard) as port:
            await exchange(port, (request("GET", target), ["GET"]))  # recorded
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                for _ in range(6):  # 0.9 s in all, each within 0.4 s of the last answer
                    writer.write(request("GET", target))
                    assert status_of(await read_answer(reader, "GET")) == 200
                    await asyncio.sleep(0.15)
                assert guard.counts["header_deadline"] == 0
                assert await reader.read() == b""  # closed by the server, idle
            finally:
                writer.close()
    assert fast_of(env).counts["/p/{public_id}.json"] == 6
    assert guard.counts["header_deadline"] == 1


async def test_a_pipelining_reader_that_stops_reading_meets_the_write_deadline(
    tmp_path: Path, clock: FakeClock, parser: str
) -> None:
    """400 cards asked at once by a reader that takes nothing: the fast path stops writing once
    the kernel holds bytes back (the rest waits in uvicorn's flow control), and the guard drops
    the connection at the write deadline."""
    guard = Guard(Limits(write_seconds=0.5))
    async with open_env(tmp_path, clock, nowplaying_public_rate_per_second=0) as env:
        assert (await env.connect()).status_code == 303
        target = f"/p/{await env.publish()}.svg"
        async with serving(env, parser, guard) as port:
            await exchange(port, (request("GET", target), ["GET"]))  # recorded
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            try:
                await asyncio.get_running_loop().sock_sendall(sock, request("GET", target) * 400)
                for _ in range(1000):
                    if guard.counts["write_deadline"]:
                        break
                    await asyncio.sleep(0.01)
            finally:
                sock.close()
    assert guard.counts["write_deadline"] == 1
    assert 0 < fast_of(env).counts["/p/{public_id}.svg"] < 400


# -- behind a trusted proxy ----------------------------------------------------------------------

PROXY = ["127.0.0.1"]
"""The test's own address: its connections are a trusted proxy's."""


@pytest.fixture
async def proxied(
    tmp_path: Path, clock: FakeClock, parser: str
) -> AsyncIterator[tuple[Env, int, str, Guard]]:
    """As ``served``, behind a trusted proxy (this test): (env, port, public id, guard)."""
    async with open_env(
        tmp_path,
        clock,
        nowplaying_metrics_token=METRICS_TOKEN,
        nowplaying_trusted_proxies=PROXY,
    ) as env:
        assert (await env.connect()).status_code == 303
        public_id = await env.publish()
        guard = Guard(trusted_proxies=PROXY)
        async with serving(env, parser, guard) as port:
            yield env, port, public_id, guard


def forwarded(client: str, proto: str = "https", **more: str) -> dict[str, str]:
    """The headers a proxy such as ``deploy/nginx.conf`` adds (and any others)."""
    return {"X-Forwarded-For": client, "X-Forwarded-Proto": proto, **more}


async def test_forwarded_answers_equal_the_normal_ones_byte_for_byte(
    proxied: tuple[Env, int, str, Guard],
) -> None:
    """Requests a trusted proxy forwards are answered by the fast path with the normal path's
    bytes: the JSON, the card, HEAD, a 304, the owner's /api/spotify; another client of the
    proxy gets the same recorded answer (the client is no part of it)."""
    env, port, public_id, _ = proxied
    card = f"/p/{public_id}.svg"
    first = await exchange(port, (request("GET", card, forwarded("203.0.113.7")), ["GET"]))
    etag = next(
        line.split(b": ", 1)[1].decode()
        for line in first[0].split(b"\r\n")
        if line.lower().startswith(b"etag:")
    )
    owner = {"Cookie": cookie_of(env)}
    variants = [
        ("GET", f"/p/{public_id}.json", {}, "/p/{public_id}.json", 200),
        ("HEAD", f"/p/{public_id}.json", {}, "/p/{public_id}.json", 200),
        ("GET", f"{card}?theme=dark", {}, "/p/{public_id}.svg", 200),
        ("GET", card, {"If-None-Match": etag}, "/p/{public_id}.svg", 304),
        ("GET", "/api/spotify", owner, "/api/spotify", 200),
    ]
    fast = fast_of(env)
    for method, target, headers, route, status in variants:
        before = fast.counts[route]
        asked = {**forwarded("203.0.113.7"), **headers}
        normal, quick = await twice(port, method, target, asked)
        assert status_of(normal) == status, (target, normal[:200])
        assert unstamped(quick) == unstamped(normal), (method, target, headers)
        assert fast.counts[route] == before + 1, (method, target, headers)
        other = {**forwarded("198.51.100.9, 203.0.113.8"), **headers}
        again = await exchange(port, (request(method, target, other), [method]))
        assert unstamped(again[0]) == unstamped(normal)
        assert fast.counts[route] == before + 2, (method, target, headers)


async def test_what_the_forwarded_scheme_and_host_say_is_part_of_the_key(
    proxied: tuple[Env, int, str, Guard],
) -> None:
    """An answer made for ``X-Forwarded-Proto: https`` is not served for ``http``, nor for
    another ``X-Forwarded-Host`` or ``Forwarded``: each is first answered by the app, then
    fast, with the app's bytes. No ``X-Forwarded-Proto`` is the connection's scheme: the
    ``http`` answer."""
    env, port, public_id, _ = proxied
    target = f"/p/{public_id}.json"
    fast = fast_of(env)
    await twice(port, "GET", target, forwarded("203.0.113.7"))
    assert fast.counts["/p/{public_id}.json"] == 1
    for headers in (
        forwarded("203.0.113.7", "http"),
        forwarded("203.0.113.7", **{"X-Forwarded-Host": "elsewhere.example"}),
        forwarded("203.0.113.7", Forwarded="for=203.0.113.7;proto=https"),
    ):
        before = fast.counts["/p/{public_id}.json"]
        normal, quick = await twice(port, "GET", target, headers)
        assert fast.counts["/p/{public_id}.json"] == before + 1, headers  # the first: the app's
        assert unstamped(quick) == unstamped(normal)
    before = fast.counts["/p/{public_id}.json"]
    await twice(port, "GET", target, {"X-Forwarded-For": "203.0.113.7"})
    assert fast.counts["/p/{public_id}.json"] == before + 2


async def test_forwarded_clients_are_rate_limited_apart_on_the_fast_path(
    proxied: tuple[Env, int, str, Guard], caplog: pytest.LogCaptureFixture
) -> None:
    """Through one proxy connection, the public burst (120) holds per forwarded client across
    both paths: the 121st request of one client is the edge's 429, another client is still
    answered fast; every access line names the forwarded client, on both paths."""
    caplog.set_level(logging.INFO, logger="nowplaying.access")
    env, port, public_id, _ = proxied
    target = f"/p/{public_id}.json"
    one, two = forwarded("203.0.113.7"), forwarded("203.0.113.8")
    answers = await exchange(
        port,
        (request("GET", target, one), ["GET"]),
        (request("GET", target, one) * 129, ["GET"] * 129),
        (request("GET", target, two), ["GET"]),
    )
    assert [status_of(a) for a in answers] == [200] * 120 + [429] * 10 + [200]
    assert fast_of(env).counts["/p/{public_id}.json"] == 120  # all 200s but the first
    records = [r for r in caplog.records if r.name == "nowplaying.access"]
    clients = Counter(getattr(r, "client", None) for r in records)
    assert clients == {"203.0.113.7": 120, "203.0.113.8": 1}  # a 429 has no access line


async def test_a_forwarded_client_over_its_caps_gets_the_guards_429(
    proxied: tuple[Env, int, str, Guard],
) -> None:
    """A client holding as many requests as the guard allows is not answered fast: the normal
    path refuses it (the guard counts it), and its neighbours behind the proxy are served."""
    env, port, public_id, guard = proxied
    target = f"/p/{public_id}.json"
    await twice(port, "GET", target, forwarded("203.0.113.7"))
    guard.connections["203.0.113.9"] = guard.limits.connections
    try:
        answers = await exchange(
            port,
            (request("GET", target, forwarded("203.0.113.9")), ["GET"]),
            (request("GET", target, forwarded("203.0.113.7")), ["GET"]),
        )
    finally:
        del guard.connections["203.0.113.9"]
    assert [status_of(a) for a in answers] == [429, 200]
    assert guard.counts["forwarded_cap"] == 1
    assert fast_of(env).counts["/p/{public_id}.json"] == 2


async def test_forwarded_headers_from_a_peer_not_trusted_go_the_normal_way(
    served: tuple[Env, int, str],
) -> None:
    """Without ``NOWPLAYING_TRUSTED_PROXIES`` naming the peer, a request with a forwarded header
    is the app's every time (as before). The app's answer, which ignored the headers, is the one
    a request without them gets: it is served fast."""
    env, port, public_id = served
    target = f"/p/{public_id}.json"
    for name, value in forwarded("203.0.113.7").items():
        await twice(port, "GET", target, {name: value})
    assert fast_of(env).counts["/p/{public_id}.json"] == 0
    await twice(port, "GET", target, {})
    assert fast_of(env).counts["/p/{public_id}.json"] == 2


@pytest.mark.parametrize(
    ("headers", "found"),
    [
        ([(b"host", b"h")], True),
        ([(b"host", b"h"), (b"connection", b"keep-alive")], True),
        ([(b"host", b"h"), (b"connection", b"close")], False),
        ([(b"host", b"h"), (b"x-request-id", b"mine")], False),
        ([(b"host", b"h"), (b"content-length", b"0")], False),
        ([(b"host", b"h"), (b"x-forwarded-for", b"1.2.3.4")], False),
        ([(b"host", b"h"), (b"host", b"h")], False),
        ([], False),
    ],
)
def test_requests_that_go_the_normal_way(headers: list[tuple[bytes, bytes]], found: bool) -> None:
    """Headers that change what the edge or the server does take a request the normal way."""
    assert (key_of(b"GET", b"/p/x.json", headers) is not None) is found


def test_public_routes_ignore_cookies_and_the_api_does_not() -> None:
    with_cookie: list[tuple[bytes, bytes]] = [(b"host", b"h"), (b"cookie", b"a=1")]
    assert key_of(b"GET", b"/p/x.json", with_cookie) == key_of(
        b"GET", b"/p/x.json", [(b"host", b"h")]
    )
    assert key_of(b"GET", b"/api/spotify", with_cookie) != key_of(
        b"GET", b"/api/spotify", [(b"host", b"h")]
    )
    assert key_of(b"POST", b"/p/x.json", with_cookie) is None


@pytest.mark.parametrize(
    ("extra", "kept"),
    [
        ([], True),
        ([(b"set-cookie", b"s=1")], False),
        ([(b"transfer-encoding", b"chunked")], False),
        ([(b"connection", b"close")], False),
    ],
)
def test_answers_that_set_a_cookie_or_framing_are_not_kept(
    clock: FakeClock, extra: list[tuple[bytes, bytes]], kept: bool
) -> None:
    """A cookie is one client's, and framing headers are the server's to act on."""
    fast = FastAnswers(clock)
    fast.protocol(protocol_class("h11"))
    scope = {
        "method": "GET",
        "path": "/p/x.json",
        "raw_path": b"/p/x.json",
        "query_string": b"",
        "headers": [(b"host", b"np.test")],
        TICKET: Ticket(clock.now() + 1, lambda: True),
    }
    headers = [(b"content-length", b"2"), *extra, (b"x-request-id", b"r")]
    fast.record(scope, 200, headers, b"{}")
    assert bool(fast.answers) is kept
