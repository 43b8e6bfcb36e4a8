"""The test balancer: round-robin over backends, skipping one that refuses, piping both ways."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
from harness.balancer import Balancer, ThreadedBalancer
from harness.live_server import free_port

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def echo(name: bytes) -> AsyncIterator[int]:
    """A backend that answers each line with ``name: line`` and closes on ``bye``."""

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while (line := await r.readline()) and line != b"bye\n":
            w.write(name + b": " + line)
            await w.drain()
        w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def ask(port: int, line: bytes) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(line)
    answer = await r.readline()
    w.close()
    await w.wait_closed()
    return answer


async def test_round_robin_skips_a_refusing_backend() -> None:
    down = free_port()  # nothing listens here: connections are refused
    async with echo(b"a") as a, echo(b"b") as b:
        balancer = Balancer([a, down, b])
        await balancer.start()
        try:
            answers = [await ask(balancer.port, b"hi\n") for _ in range(4)]
            assert answers == [b"a: hi\n", b"b: hi\n", b"a: hi\n", b"b: hi\n"]
            assert balancer.connections == [a, b, a, b]
            balancer.set_backends([b])
            assert await ask(balancer.port, b"x\n") == b"b: x\n"
        finally:
            await balancer.close()


async def test_backend_closing_closes_the_client() -> None:
    async with echo(b"a") as a:
        balancer = Balancer([a])
        await balancer.start()
        try:
            r, w = await asyncio.open_connection("127.0.0.1", balancer.port)
            w.write(b"one\nbye\n")
            assert await r.readline() == b"a: one\n"
            assert await r.read() == b""  # the backend closed: so does the client's side
            w.close()
            await w.wait_closed()
        finally:
            await balancer.close()


async def test_every_backend_down_refuses_by_closing() -> None:
    balancer = Balancer([free_port()])
    await balancer.start()
    try:
        r, w = await asyncio.open_connection("127.0.0.1", balancer.port)
        assert await r.read() == b""
        assert balancer.connections == []
        w.close()
    finally:
        await balancer.close()


def test_threaded_balancer_serves_sync_callers() -> None:
    with socket.create_server(("127.0.0.1", 0)) as backend:
        port = backend.getsockname()[1]
        with (
            ThreadedBalancer([port]) as balancer,
            socket.create_connection(("127.0.0.1", balancer.port), 5) as client,
        ):
            conn, _ = backend.accept()
            with conn:
                client.sendall(b"ping")
                assert conn.recv(4) == b"ping"
                conn.sendall(b"pong")
                assert client.recv(4) == b"pong"


async def test_a_backend_closing_before_answering_is_skipped_and_the_request_replayed() -> None:
    """Like nginx's proxy_next_upstream: no byte of answer yet, so the next backend gets it."""

    async def hang_up(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readline()  # takes the request, then goes away (a shutdown's backlog)
        w.close()

    closer = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    try:
        async with echo(b"b") as b:
            gone = closer.sockets[0].getsockname()[1]
            balancer = Balancer([gone, b])
            await balancer.start()
            try:
                assert await ask(balancer.port, b"hi\n") == b"b: hi\n"
                assert balancer.connections == [gone, b]
                assert balancer.replayed == 1
            finally:
                await balancer.close()
    finally:
        closer.close()
        await closer.wait_closed()


async def test_a_backend_sees_each_client_from_its_own_address() -> None:
    """As behind a transparent layer-4 balancer: the backend's peer is the client's address, so
    an instance's guard caps each viewer, not the balancer as one client of them all."""
    peers: list[str] = []

    async def tell(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        peers.append(w.get_extra_info("peername")[0])
        await r.readline()
        w.write(peers[-1].encode() + b"\n")
        await w.drain()
        w.close()

    server = await asyncio.start_server(tell, "127.0.0.1", 0)
    balancer = Balancer([server.sockets[0].getsockname()[1]])
    await balancer.start()
    try:
        for source in ("127.0.0.1", "127.0.3.7"):
            r, w = await asyncio.open_connection("127.0.0.1", balancer.port, local_addr=(source, 0))
            w.write(b"who\n")
            assert await r.readline() == source.encode() + b"\n"
            w.close()
            await w.wait_closed()
        assert peers == ["127.0.0.1", "127.0.3.7"]
    finally:
        await balancer.close()
        server.close()
        await server.wait_closed()


async def test_each_client_tries_every_backend_once_however_many_connect_at_once() -> None:
    """Two of three backends down and 40 clients at once (viewers coming back from a restart):
    each client's tries go to different backends, so every one reaches the live one. With one
    round-robin position shared by every client's tries, a client could be handed a down
    backend at each of its three tries while the others took the live one, and was refused."""
    async with echo(b"up") as up:
        balancer = Balancer([free_port(), free_port(), up])
        await balancer.start()
        try:
            answers = await asyncio.gather(
                *(ask(balancer.port, b"hi\n") for _ in range(40)), return_exceptions=True
            )
            assert answers == [b"up: hi\n"] * 40
        finally:
            await balancer.close()
