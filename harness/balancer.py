"""A TCP balancer on 127.0.0.1: "one address in front of several instances", for tests and the soak.

Each new client connection goes to the next backend, round-robin, from the client's own address
(as a transparent layer-4 balancer does: HAProxy's ``usesrc clientip``, IPVS), so an instance
sees, and its connection guard caps, each client, not the balancer as one client holding every
viewer's connections. A backend that refuses the connection, or closes it before a byte of
answer, is skipped and the next one tried with the same request (as nginx's
``proxy_next_upstream error``); a client is refused only when every backend is down. Bytes are
piped both ways; once answered, when either side closes both are closed, as a load balancer ends
a client's connection when its backend goes away.
``ThreadedBalancer`` runs one in a thread for sync code (Playwright's sync API owns the main
thread's event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future
from typing import Any

CHUNK = 65536


class Balancer:
    """Round-robin TCP forwarding from ``127.0.0.1:port`` to ``127.0.0.1:<backend>``."""

    def __init__(self, backends: list[int], port: int = 0) -> None:
        self._backends = list(backends)
        self._next = 0
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = port
        self.connections: list[int] = []
        """The backend each accepted client went to, in order (for assertions)."""
        self.replayed = 0
        """Requests sent to another backend because the first closed without answering."""

    def set_backends(self, backends: list[int]) -> None:
        """Replace the backends new connections go to; open connections stay where they are."""
        self._backends = list(backends)
        self._next = 0

    async def start(self) -> None:
        """Listen; ``port`` is the bound port afterwards."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._requested_port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and close every piped connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _connect(
        self, source: str, tried: set[int]
    ) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the next backend in turn that is not in ``tried`` and accepts; each
        one refusing is added to ``tried``. A client's tries walk on from its own place in the
        turn: clients connecting at once (viewers back from a restart) no longer move one shared
        position under each other, which could hand a client the down backend at every try."""
        backends = self._backends
        if not backends:
            return None
        start = self._next % len(backends)
        self._next = (start + 1) % len(backends)
        for k in range(len(backends)):
            backend = backends[(start + k) % len(backends)]
            if backend in tried:
                continue
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", backend, local_addr=(source, 0)
                )
            except OSError:
                tried.add(backend)
                continue
            if k:  # the next client starts after the backend this one got
                self._next = (start + k + 1) % len(backends)
            return backend, reader, writer
        return None

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client_w)
        relay = _Relay(client_r, client_w)
        peer = client_w.get_extra_info("peername")
        source = str(peer[0]) if isinstance(peer, tuple) and peer else "127.0.0.1"
        tried: set[int] = set()
        relays = 0
        try:
            # A backend that closes before answering (a connection caught in its listen backlog
            # as it shut down) is skipped and the request replayed on the next, as nginx's
            # ``proxy_next_upstream error`` does; each backend is tried at most once.
            while (upstream := await self._connect(source, tried)) is not None:
                backend, server_r, server_w = upstream
                tried.add(backend)
                self.connections.append(backend)
                self.replayed += relays > 0
                relays += 1
                self._writers.add(server_w)
                try:
                    if not await relay.run(server_r, server_w):
                        return
                finally:
                    self._writers.discard(server_w)
                    await _close(server_w)
        finally:
            self._writers.discard(client_w)
            await _close(client_w)
            self._tasks.discard(task)


class _Relay:
    """One client's bytes, piped to a backend both ways; the request is kept for a replay
    until the backend's first byte of answer."""

    def __init__(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.client_r = client_r
        self.client_w = client_w
        self.sent = bytearray()
        self.answered = False
        self.client_gone = False

    async def run(self, server_r: asyncio.StreamReader, server_w: asyncio.StreamWriter) -> bool:
        """Pipe until either side ends; True when the backend ended without a byte of answer
        while the client is still there (so the request can go to another backend)."""
        if self.sent:
            server_w.write(bytes(self.sent))
        pipes = [
            asyncio.create_task(self._up(server_w)),
            asyncio.create_task(self._down(server_r)),
        ]
        # Either direction ending (EOF or error) ends the pair.
        _, pending = await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for p in pending:
            p.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return not self.answered and not self.client_gone

    async def _up(self, server_w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await self.client_r.read(CHUNK):
                if not self.answered:
                    self.sent.extend(data)
                server_w.write(data)
                await server_w.drain()
            self.client_gone = True

    async def _down(self, server_r: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while data := await server_r.read(CHUNK):
                self.answered = True
                self.client_w.write(data)
                await self.client_w.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


class ThreadedBalancer:
    """A ``Balancer`` running on its own event loop in a daemon thread, driven synchronously."""

    def __init__(self, backends: list[int], port: int = 0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.balancer = Balancer(backends, port)

    @property
    def port(self) -> int:
        return self.balancer.port

    def _call(self, coro: Any) -> None:
        future: Future[None] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        future.result(timeout=10)

    def start(self) -> None:
        self._thread.start()
        self._call(self.balancer.start())

    def set_backends(self, backends: list[int]) -> None:
        self._loop.call_soon_threadsafe(self.balancer.set_backends, backends)

    def close(self) -> None:
        self._call(self.balancer.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> ThreadedBalancer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
