"""The connection guard on a real uvicorn over real sockets, with h11 and with httptools: each
deadline closes what stalls, each cap closes a new connection at once and leaves others served.

Every test waits on a condition (the peer closed, a count reached) with a generous bound; with
the guard's rule removed the condition never comes and the bound fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from harness.live_server import free_port, serve
from harness.sockets import BOUND, closed_by_peer, connect, get
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http import h11_impl, httptools_impl

from nowplaying.web.guard import Guard, Limits, protocol_class

CHUNK = b"x" * 65536
REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


class App:
    """``/`` reads the body and answers ``ok`` (``/echo``: the body it read); ``/big`` and
    ``/stream`` write until the reader hangs up (a large response and an endless stream);
    ``ended`` counts the writers that stopped, ``written`` the bytes they handed the server."""

    def __init__(self) -> None:
        self.ended = 0
        self.written = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] in ("/big", "/stream"):
            await self._write_forever(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        answer = body if scope["path"] == "/echo" else b"ok"
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})

    async def _write_forever(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = CHUNK if scope["path"] == "/big" else b"data: " + b"y" * 1000 + b"\n\n"
        gone = asyncio.ensure_future(receive())  # http.request, then http.disconnect
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            while True:
                await send({"type": "http.response.body", "body": body, "more_body": True})
                self.written += len(body)
                if gone.done() and gone.result()["type"] == "http.disconnect":
                    break
                if gone.done():
                    gone = asyncio.ensure_future(receive())
                await asyncio.sleep(0)
        except OSError:  # uvicorn's ClientDisconnected
            pass
        finally:
            gone.cancel()
            self.ended += 1


@pytest.fixture
def http(parser: str) -> str:
    """The server stack under the guard (tests/web/conftest.py's ``parser``)."""
    return parser


@contextlib.contextmanager
def guarded(http: str, guard: Guard, app: App) -> Iterator[int]:
    port = free_port()
    with serve(app, port, http=guard.protocol(protocol_class(http)), lifespan="off"):
        yield port


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + BOUND
    while not condition():
        assert time.monotonic() < deadline, "the guard did not act"
        time.sleep(0.02)


def test_headers_sent_a_byte_at_a_time_are_closed_at_the_header_deadline(http: str) -> None:
    guard = Guard(Limits(header_seconds=0.5))
    with guarded(http, guard, App()) as port, connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
        deadline = time.monotonic() + BOUND
        closed = False
        while not closed and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                sock.send(b"X")  # a header name that never ends, one byte at a time
            closed = closed_by_peer(sock, 0.05)
        assert closed
        assert guard.counts["header_deadline"] == 1
        assert get(port).endswith(b"ok")


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(http: str) -> None:
    guard = Guard(Limits(header_seconds=0.3))
    with guarded(http, guard, App()) as port, connect(port) as sock:
        assert closed_by_peer(sock)
        assert guard.counts["header_deadline"] == 1


def test_keep_alive_requests_within_the_deadline_are_served(http: str) -> None:
    guard = Guard(Limits(header_seconds=0.3))
    with guarded(http, guard, App()) as port, connect(port) as sock:
        sock.settimeout(BOUND)
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert sock.recv(65536).endswith(b"ok")
        assert guard.counts["header_deadline"] == 0


def test_a_body_that_stops_coming_is_closed_at_the_body_deadline(http: str) -> None:
    guard = Guard(Limits(header_seconds=BOUND * 2, body_seconds=0.5))
    with guarded(http, guard, App()) as port, connect(port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        assert closed_by_peer(sock)
        assert guard.counts["body_deadline"] == 1
        assert guard.counts["header_deadline"] == 0


@pytest.mark.parametrize("path", ["/big", "/stream"])
def test_a_reader_that_stops_reading_is_dropped_at_the_write_deadline(http: str, path: str) -> None:
    """A large response and an event stream alike: the writer's task ends, counted."""
    guard = Guard(Limits(write_seconds=0.5))
    app = App()
    with guarded(http, guard, app) as port, connect(port, rcvbuf=4096) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        until(lambda: app.ended == 1)
        assert guard.counts["write_deadline"] == 1
        assert guard.open == 0


def test_a_reader_that_takes_nothing_makes_the_server_write_no_more_than_the_send_buffer(
    http: str,
) -> None:
    """The kernel's buffer of each connection is held to ``send_buffer`` (Linux doubles it):
    autotuned, it let a reader that takes nothing make the server produce up to 4 MB first."""
    guard = Guard(Limits(write_seconds=0.5, send_buffer=16384))
    app = App()
    with guarded(http, guard, app) as port, connect(port, rcvbuf=4096) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        until(lambda: app.ended == 1)
    assert guard.counts["write_deadline"] == 1
    # 32 KB in the kernel, the receiver's window, the chunk the transport held back
    assert app.written <= 4 * len(CHUNK), app.written


@pytest.fixture
def cycles(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every request uvicorn's protocols parse (the request-response cycle each starts)."""
    made: list[object] = []
    for module in (h11_impl, httptools_impl):
        base = module.RequestResponseCycle

        def counted(*args: Any, base: Any = base, **kwargs: Any) -> Any:
            cycle = base(*args, **kwargs)
            made.append(cycle)
            return cycle

        monkeypatch.setattr(module, "RequestResponseCycle", counted)
    return made


def test_requests_pipelined_behind_one_being_answered_wait_unparsed(
    http: str, cycles: list[object]
) -> None:
    """1,000 requests sent behind an endless answer the client never reads: uvicorn's half is
    given one request at a time, so none of them is parsed (httptools parsed them all at once:
    15 MB of memory per 256 KB read)."""
    guard = Guard(Limits(write_seconds=BOUND * 2))
    app = App()
    with guarded(http, guard, app) as port, connect(port, rcvbuf=4096) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n" + REQUEST * 1000)
        until(lambda: app.written > 0)
        assert len(cycles) == 1
    until(lambda: app.ended == 1)
    assert len(cycles) == 1


def test_pipelined_requests_are_all_answered_in_order(http: str) -> None:
    """Bodies (one holding a blank line, one chunked) and bodiless requests in one write, then
    more while they are answered: each answer in its turn."""
    guard = Guard()
    posts = [
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nab\r\n\r\ncde",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\n\r\n\r\n\r\n2\r\nfg\r\n0\r\n\r\n",
    ]
    with guarded(http, guard, App()) as port, connect(port) as sock:
        sock.settimeout(BOUND)
        sock.sendall(REQUEST * 3 + posts[0] + REQUEST + posts[1])
        sock.sendall(REQUEST * 50)
        expected = [b"ok"] * 3 + [b"ab\r\n\r\ncde", b"ok", b"\r\n\r\nfg"] + [b"ok"] * 50
        answers: list[bytes] = []
        buffer = b""
        while len(answers) < len(expected):
            chunk = sock.recv(65536)
            assert chunk, answers
            buffer += chunk
            while (end := buffer.find(b"\r\n\r\n")) >= 0:
                head = buffer[:end].lower()
                length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
                if len(buffer) < end + 4 + length:
                    break
                answers.append(buffer[end + 4 : end + 4 + length])
                buffer = buffer[end + 4 + length :]
        assert answers == expected


def test_an_address_past_its_connection_cap_is_closed_at_once_and_others_served(
    http: str,
) -> None:
    guard = Guard(Limits(connections=3, header_seconds=BOUND * 2))
    with guarded(http, guard, App()) as port:
        held = [connect(port) for _ in range(3)]
        until(lambda: guard.connections["127.0.0.1"] == 3)
        with connect(port) as extra:
            assert closed_by_peer(extra)
        assert guard.counts["address_cap"] == 1
        assert get(port, source="127.0.0.2").endswith(b"ok")
        held.pop().close()
        until(lambda: guard.connections["127.0.0.1"] == 2)
        assert get(port).endswith(b"ok")
        for sock in held:
            sock.close()


def test_an_address_past_its_unfinished_cap_is_closed_at_once(http: str) -> None:
    guard = Guard(Limits(unfinished=2, unfinished_after=0.2, header_seconds=BOUND * 2))
    with guarded(http, guard, App()) as port:
        half = [connect(port) for _ in range(2)]
        for sock in half:
            sock.sendall(b"GET / HTTP/1.1\r\n")
        until(lambda: guard.unfinished["127.0.0.1"] == 2)
        with connect(port) as extra:
            assert closed_by_peer(extra)
        assert guard.counts["address_cap"] == 1
        assert get(port, source="127.0.0.2").endswith(b"ok")
        half[0].settimeout(BOUND)
        half[0].sendall(b"Host: t\r\n\r\n")  # finished: it no longer counts
        assert half[0].recv(65536).endswith(b"ok")
        until(lambda: guard.unfinished["127.0.0.1"] == 1)
        assert get(port).endswith(b"ok")
        for sock in half:
            sock.close()


def test_a_burst_of_connections_sending_their_heads_at_once_is_served(http: str) -> None:
    """Connections count as unfinished only once they have waited for their head a while: 20
    opened at once from one address (a page opening many streams) are all served under a cap of
    2."""
    guard = Guard(Limits(unfinished=2, unfinished_after=BOUND, header_seconds=BOUND * 2))
    with guarded(http, guard, App()) as port:
        burst = [connect(port) for _ in range(20)]
        for sock in burst:
            sock.settimeout(BOUND)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        answers = [sock.recv(65536) for sock in burst]
        assert all(a.endswith(b"ok") for a in answers), answers
        assert guard.counts["address_cap"] == 0
        for sock in burst:
            sock.close()


def test_the_descriptor_reserve_keeps_room_for_addresses_holding_few(http: str) -> None:
    guard = Guard(
        Limits(reserve=10, header_seconds=BOUND * 2),
        files_limit=20,
        baseline=0,
        count=lambda: guard.open,  # this test's process holds other descriptors
    )
    with guarded(http, guard, App()) as port:
        held = [connect(port) for _ in range(10)]
        until(lambda: guard.open == 10)
        with connect(port) as extra:
            assert closed_by_peer(extra)
        assert guard.counts["reserve"] == 1
        assert get(port, source="127.0.0.2").endswith(b"ok")
        for sock in held:
            sock.close()
        until(lambda: guard.open == 0)
        assert not guard.connections and not guard.unfinished


def test_a_trusted_proxy_is_not_capped(http: str) -> None:
    guard = Guard(Limits(connections=2, header_seconds=BOUND * 2), trusted_proxies=["127.0.0.1"])
    with guarded(http, guard, App()) as port:
        held = [connect(port) for _ in range(3)]
        until(lambda: guard.open == 3)
        assert get(port).endswith(b"ok")
        assert guard.counts["address_cap"] == 0
        for sock in held:
            sock.close()


def _forwarded(sock: socket.socket, client: str, path: str = "/") -> None:
    """Send, as a trusted proxy would, a request forwarded for ``client``."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: {client}\r\n\r\n".encode())


def _until_received(sock: socket.socket, ending: bytes) -> bytes:
    """What ``sock`` receives until it ends with ``ending`` (a keep-alive answer's last bytes)."""
    sock.settimeout(BOUND)
    answer = b""
    while not answer.endswith(ending):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {answer!r}"
        answer += chunk
    return answer


def test_behind_a_trusted_proxy_each_forwarded_client_is_capped_and_others_served(
    http: str,
) -> None:
    """Requests a trusted proxy forwards count, from their head, against the client its
    X-Forwarded-For names: a client over its cap gets a 429 that says why, and the proxy's same
    connection goes on to serve another client; a request that ends gives its place back."""
    guard = Guard(Limits(connections=2, header_seconds=BOUND * 2), trusted_proxies=["127.0.0.1"])
    with guarded(http, guard, App()) as port:
        streams = [connect(port) for _ in range(2)]
        for sock in streams:
            _forwarded(sock, "203.0.113.7", "/stream")
        until(lambda: guard.connections["203.0.113.7"] == 2)
        with connect(port) as proxy:
            _forwarded(proxy, "203.0.113.7")
            refused = _until_received(proxy, b'close some first."}')
            assert refused.startswith(b"HTTP/1.1 429")
            _forwarded(proxy, "203.0.113.8")
            assert _until_received(proxy, b"ok").startswith(b"HTTP/1.1 200")
            assert guard.counts["forwarded_cap"] == 1
            streams.pop().close()
            until(lambda: guard.connections["203.0.113.7"] == 1)
            _forwarded(proxy, "203.0.113.7")
            assert _until_received(proxy, b"ok").startswith(b"HTTP/1.1 200")
        for sock in streams:
            sock.close()
        until(lambda: not guard.connections)
        assert guard.counts["forwarded_cap"] == 1 and guard.counts["address_cap"] == 0


def test_behind_a_trusted_proxy_a_forwarded_client_holding_unfinished_bodies_is_capped(
    http: str,
) -> None:
    """A forwarded client whose bodies stop coming holds its unfinished cap; its next request
    is a 429, another client's is served."""
    guard = Guard(
        Limits(unfinished=1, header_seconds=BOUND * 2, body_seconds=BOUND * 2),
        trusted_proxies=["127.0.0.1"],
    )
    with guarded(http, guard, App()) as port, connect(port) as slow, connect(port) as proxy:
        slow.sendall(
            b"POST / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.7\r\n"
            b"Content-Length: 100\r\n\r\nhalf"
        )
        until(lambda: guard.unfinished["203.0.113.7"] == 1)
        _forwarded(proxy, "203.0.113.7")
        assert _until_received(proxy, b'close some first."}').startswith(b"HTTP/1.1 429")
        _forwarded(proxy, "203.0.113.8")
        assert _until_received(proxy, b"ok").startswith(b"HTTP/1.1 200")


def test_closings_are_counted_each_and_said_at_most_once_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Under attack the guard closes thousands of connections a second on the loop that serves
    everyone: each is counted, and a line (with the count since) is written once per reason
    per second, not a log record per closing."""
    guard = Guard()
    with caplog.at_level(logging.WARNING, logger="nowplaying.web.guard"):
        for n in range(1000):
            guard.closed("address_cap", f"127.0.0.{n % 7}")
        guard.closed("reserve", "127.0.0.1")
    assert guard.counts["address_cap"] == 1000 and guard.counts["reserve"] == 1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("closed 1 connection(s)") and "address cap (1 so far)" in lines[0]
