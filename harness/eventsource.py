"""A Server-Sent Events client that reconnects the way a browser's ``EventSource`` does.

It follows the HTML standard's parser (``data``/``id``/``retry``/``event`` fields, comments,
dispatch on a blank line) and Chromium's reconnection: after a stream ends or the connection
fails it waits the last ``retry:`` the server sent (3 s before any), then reconnects sending
``Last-Event-ID`` with the last id seen; a response that is not a ``200 text/event-stream``
fails the source for good. Every stream end, reconnection and event is recorded with its
(monotonic) time, for tests that measure how a restart looks to a viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

DEFAULT_RETRY_MS = 3000  # Chromium's default reconnection time


@dataclass
class Message:
    id: str
    data: Any
    at: float
    stream: int
    """Which connection (0, 1, ...) delivered it."""


@dataclass
class Drop:
    """One stream that ended, and when the viewer was back."""

    ended_at: float
    how: str
    """``eof`` (the server ended the response) or the transport error's name."""
    attempts: int = 1
    """Reconnections it took (more than one: some failed before a stream opened)."""
    failures: list[tuple[float, str]] = field(default_factory=list)
    """When and how each failed reconnection failed."""
    reopened_at: float | None = None
    """When the next stream answered 200 (the source's ``open`` event)."""
    first_event_at: float | None = None
    """When the next stream delivered an event (None: none, e.g. the state was unchanged)."""


@dataclass
class EventSource:
    """One viewer. ``run()`` until cancelled; ``failed`` is set if the source gave up."""

    http: httpx.AsyncClient
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    name: str = ""
    retry_ms: int = DEFAULT_RETRY_MS
    last_event_id: str = ""
    messages: list[Message] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    retries_seen: list[int] = field(default_factory=list)
    failed: str | None = None
    streams: int = 0
    open: bool = False
    _opened: bool = False
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while (how := await self._connect()) is not None:
            if self._opened or not self.drops:
                self.drops.append(Drop(time.monotonic(), how))
            else:  # a reconnection that failed: the same outage goes on
                self.drops[-1].attempts += 1
                self.drops[-1].failures.append((time.monotonic(), how))
            await asyncio.sleep(self.retry_ms / 1000)

    async def _connect(self) -> str | None:
        """One connection; how it ended, or None when the source failed for good."""
        headers = {**self.headers, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        stream = self.streams
        self.streams += 1
        self._opened = False
        try:
            async with self.http.stream("GET", self.url, headers=headers) as response:
                kind = response.headers.get("content-type", "")
                if response.status_code != 200 or not kind.startswith("text/event-stream"):
                    self.failed = f"status {response.status_code} {kind}"
                    return None
                self.open = self._opened = True  # EventSource's "open": the headers are in
                self._reopened()
                await self._read(response, stream)
            return "eof"
        except httpx.HTTPError as e:
            return type(e).__name__
        finally:
            self.open = False

    async def _read(self, response: httpx.Response, stream: int) -> None:
        # Chromium starts each stream's id buffer from the source's last event id.
        data: list[str] = []
        event_id = self.last_event_id
        async for line in response.aiter_lines():
            if line == "":
                self.last_event_id = event_id
                if data:
                    self._dispatch(event_id, "\n".join(data), stream)
                data = []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "id" and "\0" not in value:
                event_id = value
            elif name == "retry" and value.isascii() and value.isdigit():
                self.retry_ms = int(value)
                self.retries_seen.append(self.retry_ms)

    def _reopened(self) -> None:
        if self.drops and self.drops[-1].reopened_at is None:
            self.drops[-1].reopened_at = time.monotonic()

    def _dispatch(self, event_id: str, raw: str, stream: int) -> None:
        now = time.monotonic()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = raw
        self.messages.append(Message(event_id, payload, now, stream))
        if self.drops and self.drops[-1].first_event_at is None:
            self.drops[-1].first_event_at = now
        self._arrived.set()

    @property
    def last(self) -> Any:
        """The last event's data (None before any)."""
        return self.messages[-1].data if self.messages else None

    async def next_event(self) -> None:
        """Wait for the next event (callers bound the wait)."""
        self._arrived.clear()
        await self._arrived.wait()


def browsers(n: int, *, timeout: httpx.Timeout) -> list[httpx.AsyncClient]:
    """``n`` HTTP clients, each connecting from a loopback address of its own (127.0.1.1,
    127.0.1.2, ...): viewers that are different browsers, as a server (and its per-address
    connection caps) sees them, not ``n`` tabs of one. Close them with :func:`close_browsers`."""
    return [
        httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(
                local_address=f"127.0.{1 + i // 250}.{1 + i % 250}",
                limits=httpx.Limits(max_keepalive_connections=0),
            ),
            timeout=timeout,
        )
        for i in range(n)
    ]


async def close_browsers(clients: list[httpx.AsyncClient]) -> None:
    await asyncio.gather(*(c.aclose() for c in clients))


async def close_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel viewer tasks and wait for them."""
    for t in tasks:
        t.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks, return_exceptions=True)
