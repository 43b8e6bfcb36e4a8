"""Serving processes that stop on time: a signal drains every event stream, then the app closes.

uvicorn alone waits for open connections without end and an SSE viewer never hangs up, so a
``SIGTERM`` with one widget open never finished, and the ``SIGKILL`` that followed leaked the
poller leases. Whatever is still open after ``shutdown_seconds`` is cut off; a clean shutdown
exits 0 (uvicorn would re-raise the signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Generator
from types import FrameType

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import STARTUP_FAILURE
from uvicorn.server import HANDLED_SIGNALS

log = logging.getLogger("nowplaying")

HTTP_PARSERS = ("auto", "httptools", "h11")
"""uvicorn's ``http`` choices we support: ``auto`` is httptools when it imports, else h11."""
EVENT_LOOPS = ("auto", "uvloop", "asyncio")
"""uvicorn's ``loop`` choices we support: ``auto`` is uvloop when it imports, else asyncio."""


def resolve_stack(http: str, loop: str) -> tuple[str, str]:
    """The HTTP parser and event loop uvicorn will run for these choices (``auto`` resolved the
    way uvicorn resolves it: the compiled one when its package is installed)."""

    def installed(name: str) -> bool:
        return importlib.util.find_spec(name) is not None

    if http == "auto":
        http = "httptools" if installed("httptools") else "h11"
    if loop == "auto":
        loop = "uvloop" if installed("uvloop") else "asyncio"
    return http, loop


def describe_stack(http: str, loop: str) -> str:
    """The startup line naming the server stack, and what a pure-Python one costs."""
    parser, event_loop = resolve_stack(http, loop)
    line = f"server stack: uvicorn, {parser} parser, {event_loop} event loop"
    if (parser, event_loop) != ("httptools", "uvloop"):
        line += " (pure-Python parts run at about half the throughput; see docs/performance.md)"
    return line


CLOSE_RESERVE = 2.0
"""Seconds of the shutdown budget kept for closing the hub and the store after the streams."""
SUPERVISOR_TICK = 0.5


def drain_app(app: Starlette) -> int | None:
    """Tell the app's open streams to end; how many were open (None before startup)."""
    svc = getattr(app.state, "services", None)
    if svc is None:
        return None
    svc.streams.drain()
    return int(svc.streams.counts["open"])


def _drained(app: Starlette) -> int:
    svc = getattr(app.state, "services", None)
    return int(svc.streams.counts["drained"]) if svc is not None else 0


class GracefulServer(uvicorn.Server):
    """A uvicorn server whose shutdown ends SSE streams and is bounded by ``shutdown_seconds``."""

    def __init__(self, config: uvicorn.Config, app: Starlette, *, shutdown_seconds: float) -> None:
        # Streams get the budget minus a reserve for the lifespan (hub, leases, store).
        reserve = min(CLOSE_RESERVE, shutdown_seconds / 4)
        config.timeout_graceful_shutdown = max(0.1, shutdown_seconds - reserve)  # type: ignore[assignment]
        super().__init__(config)
        self.app = app
        self.shutdown_seconds = shutdown_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exit_requested: float | None = None
        self._drained = False

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The signal handler (main thread): begin the drain at once, not after the main loop."""
        super().handle_exit(sig, frame)
        if self._exit_requested is None:
            self._exit_requested = time.monotonic()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        if self._drained:
            return
        open_streams = drain_app(self.app)
        if open_streams is not None:  # else still starting: shutdown() drains once it can
            self._drained = True
            log.info("shutting down: ending %d event stream(s) with a reconnect hint", open_streams)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Like uvicorn's, without re-raising the signal afterwards: a clean stop exits 0."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._drain()  # also when the exit did not come from a signal
        begun = self._exit_requested or time.monotonic()
        left = self.shutdown_seconds - (time.monotonic() - begun)
        running = set(self.server_state.tasks)
        finished = True
        try:
            async with asyncio.timeout(max(0.1, left)):
                await super().shutdown(sockets)
        except TimeoutError:
            finished = False
        took = time.monotonic() - begun
        # uvicorn cancels the requests still running when its graceful timeout runs out.
        cut = sum(1 for task in running if task.cancelling())
        if finished and not cut:
            log.info(
                "shutdown clean in %.1f s: %d event stream(s) ended with a reconnect hint,"
                " hub and store closed",
                took,
                _drained(self.app),
            )
        else:
            log.warning(
                "shutdown forced after %.1f s (NOWPLAYING_SHUTDOWN_SECONDS=%g): %d event"
                " stream(s) ended with a reconnect hint, %d request(s) cut off%s",
                took,
                self.shutdown_seconds,
                _drained(self.app),
                cut,
                "" if finished else "; the hub or the store did not close in time",
            )


def serve_workers(
    config: uvicorn.Config,
    workers: int,
    target: Callable[[list[socket.socket]], None],
    *,
    shutdown_seconds: float,
) -> int:
    """Run ``workers`` processes of ``target`` (picklable) on one socket until a signal ends them.

    Each worker gets ``SIGTERM`` and ``shutdown_seconds`` (plus a margin for its own start-up)
    to stop; one still running then is killed. Returns 0, or 3 when a worker could not start.
    """
    sock = config.bind_socket()
    spawn = multiprocessing.get_context("spawn")
    stop = threading.Event()
    status = 0

    def on_signal(sig: int, frame: FrameType | None) -> None:
        stop.set()

    def start() -> multiprocessing.process.BaseProcess:
        proc = spawn.Process(target=target, args=([sock],), daemon=False)
        proc.start()
        return proc

    previous = {sig: signal.signal(sig, on_signal) for sig in HANDLED_SIGNALS}
    procs = [start() for _ in range(workers)]
    log.info("started %d worker process(es): %s", workers, ", ".join(str(p.pid) for p in procs))
    try:
        while not stop.wait(SUPERVISOR_TICK):
            for i, proc in enumerate(procs):
                if proc.is_alive():
                    continue
                if proc.exitcode == STARTUP_FAILURE:
                    log.error("worker %s could not start; stopping", proc.pid)
                    status = STARTUP_FAILURE
                    stop.set()
                    break
                log.warning("worker %s died (exit %s); starting another", proc.pid, proc.exitcode)
                procs[i] = start()
    finally:
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + shutdown_seconds + CLOSE_RESERVE
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker %s did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        log.info("stopped %d worker process(es)", len(procs))
    return status
