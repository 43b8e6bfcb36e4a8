"""The life-cycle soak's audience: SSE viewers that behave like ``EventSource``, and pollers.

An :class:`EventSourceViewer` keeps one stream open; when the server ends it (or the connection
breaks) it waits the last ``retry:`` the server sent (3 s if none, as browsers do) and reconnects
with ``Last-Event-ID``, exactly as ``EventSource`` does; a 4xx on reconnect ends it for good.
Everything is timestamped (``time.monotonic()``) so the report can say, per restart, how long each
dropped viewer took to get live data again, and which events came during the quota lockout.

A :class:`Poller` fetches a public JSON or SVG URL every 1-3 s. A request that gets no answer at
all (a transport error) is sent again once, at once, as browsers resend an idempotent request
whose kept-alive connection the server had closed; only a second failure is an error a viewer
would see. An SSE connect that gets no answer is resent the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

DEFAULT_RETRY_MS = 3000
SSE_READ_TIMEOUT = 45.0  # three missed 15 s heartbeats: the stream is dead


def identity(data: dict[str, Any]) -> tuple[object, ...]:
    """What makes two events "the same change" (progress and its clock move on their own)."""
    return (data.get("error"), data.get("stale", False), data.get("isPlaying"), data.get("title"))


def is_live(data: dict[str, Any]) -> bool:
    return "error" not in data and not data.get("stale")


@dataclass
class Event:
    at: float
    id: str | None
    data: dict[str, Any]
    connection: int


@dataclass
class Drop:
    """A stream that ended: when, how, the ``retry:`` in force, and when live data came back."""

    at: float
    clean: bool
    retry_ms: int
    hint_at_end: bool
    """The server sent a ``retry:`` after the first event, i.e. as it ended the stream."""
    back_at: float | None = None
    """When the viewer showed live data again: the stream reopened with live data already
    shown (nothing newer to send), or the first live event after the drop."""
    first_at: float | None = None
    """The first reopened stream or event of any kind after the drop (during the lockout every
    event is rightly stale)."""


@dataclass
class Problem:
    at: float
    what: str


@dataclass
class EventSourceViewer:
    account: str
    kind: str  # sse-private or sse-public
    path: str
    cookie: str | None = None
    events: list[Event] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    """Connect failures and non-200 answers (a viewer sees those)."""
    connects: int = 0
    refused: int | None = None
    duplicates: int = 0
    """Events whose id this viewer had already received with the same content."""
    regressions: int = 0
    """Events whose numeric id was lower than the Last-Event-ID the viewer sent."""
    last_event_ids_sent: int = 0
    retried: int = 0
    """Connects that got no answer at all and were sent again at once, as browsers do."""
    waits: list[tuple[float, float]] = field(default_factory=list)
    """(when asked, seconds until the answer's headers) for every connect."""

    @property
    def told_to_reconnect(self) -> bool:
        """Refused with 401 ``reconnect_required``: its account's grant was revoked. That is the
        right answer (a browser's EventSource stops there too), not a viewer that failed to
        come back."""
        return self.refused == 401 and any("reconnect_required" in p.what for p in self.problems)

    @property
    def last(self) -> dict[str, Any] | None:
        return self.events[-1].data if self.events else None

    def saw(self, title: str, since: float) -> float | None:
        """When this viewer first received ``title`` at or after ``since``."""
        for e in self.events:
            if e.at >= since and e.data.get("title") == title:
                return e.at
        return None

    async def run(self, http: httpx.AsyncClient, base: str, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set (or the task is cancelled)."""
        stream = _Stream()
        timeout = httpx.Timeout(10, read=SSE_READ_TIMEOUT)
        while not stop.is_set():
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if self.cookie:
                headers["Cookie"] = self.cookie
            if stream.last_id is not None:
                headers["Last-Event-ID"] = stream.last_id
                self.last_event_ids_sent += 1
            stream.begin(self.connects, headers.get("Last-Event-ID"))
            try:
                async with http.stream(
                    "GET", base + self.path, headers=headers, timeout=timeout
                ) as r:
                    self.connects += 1
                    self.waits.append((stream.started, time.monotonic() - stream.started))
                    if r.status_code == 200:
                        self._reconnected()
                        async for line in r.aiter_lines():
                            self._line(stream, line)
                    else:
                        body = (await r.aread()).decode(errors="replace")[:120]
                        self.problems.append(Problem(time.monotonic(), f"{r.status_code} {body}"))
                        if 400 <= r.status_code < 500:
                            self.refused = r.status_code
                            return
            except httpx.HTTPError as e:
                stream.clean = False
                if stream.connection == self.connects:  # no answer at all
                    if not stream.replayed:  # a browser resends once, at once (see module doc)
                        stream.replayed = True
                        self.retried += 1
                        continue
                    took = time.monotonic() - stream.started
                    what = f"{type(e).__name__} connecting ({took:.1f} s)"
                    self.problems.append(Problem(time.monotonic(), what))
            stream.replayed = False
            if stop.is_set():
                return
            if stream.connection < self.connects and self.events:  # an open stream ended
                drop = Drop(time.monotonic(), stream.clean, stream.retry_ms, stream.hint_at_end)
                self.drops.append(drop)
            await nap(stop, stream.retry_ms / 1000)

    def _reconnected(self) -> None:
        """A stream is open again. If what the viewer shows is live, it is back: the server
        sends nothing when the Last-Event-ID is already its current state."""
        last = self.drops[-1] if self.drops else None
        if last is None:
            return
        now = time.monotonic()
        if last.first_at is None:
            last.first_at = now
        if last.back_at is None and self.last and is_live(self.last):
            last.back_at = now

    def _line(self, stream: _Stream, line: str) -> None:
        """One line of the event stream, parsed as ``EventSource`` does."""
        if line == "":
            if "data" in stream.block:
                stream.got_event = True
                stream.last_id = stream.block.get("id", stream.last_id)
                self._received(stream)
            stream.block = {}
            return
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "retry" and value.isdigit():
            stream.retry_ms = int(value)
            stream.retry_lines += 1
            stream.hint_at_end = stream.retry_lines > 1  # the first comes with ": connected"
        elif name in ("id", "data"):
            old = stream.block.get(name)
            stream.block[name] = value if old is None else f"{old}\n{value}"

    def _received(self, stream: _Stream) -> None:
        try:
            data = json.loads(stream.block["data"])
        except ValueError:
            return
        now = time.monotonic()
        event_id = stream.last_id
        if event_id is not None:
            if stream.seen.get(event_id) == identity(data):
                self.duplicates += 1
            stream.seen[event_id] = identity(data)
            sent = stream.sent_id or ""
            if sent.isdigit() and event_id.isdigit() and int(event_id) < int(sent):
                self.regressions += 1
        self.events.append(Event(now, event_id, dict(data), stream.connection))
        for d in reversed(self.drops):
            if d.first_at is None:
                d.first_at = now
            if d.back_at is not None:
                break
            if is_live(data):
                d.back_at = now


@dataclass
class _Stream:
    """What ``EventSource`` keeps across reconnects (last id, retry) and per connection."""

    retry_ms: int = DEFAULT_RETRY_MS
    last_id: str | None = None
    seen: dict[str, tuple[object, ...]] = field(default_factory=dict)
    block: dict[str, str] = field(default_factory=dict)
    connection: int = 0
    sent_id: str | None = None
    got_event: bool = False
    hint_at_end: bool = False
    retry_lines: int = 0
    replayed: bool = False
    clean: bool = True
    started: float = 0.0

    def begin(self, connection: int, sent_id: str | None) -> None:
        self.connection, self.sent_id, self.started = connection, sent_id, time.monotonic()
        self.block, self.got_event, self.hint_at_end, self.clean = {}, False, False, True
        self.retry_lines = 0


@dataclass
class Poller:
    """A public JSON or SVG viewer (an embed polling, an image proxy revalidating)."""

    account: str
    kind: str  # json or svg
    path: str
    answers: list[tuple[float, int, bool]] = field(default_factory=list)
    """(when, status, live) for every answer; ``live`` is False for stale or error JSON."""
    problems: list[Problem] = field(default_factory=list)
    retried: int = 0

    async def run(
        self, http: httpx.AsyncClient, base: str, stop: asyncio.Event, rng: random.Random
    ) -> None:
        etag: str | None = None
        await nap(stop, rng.uniform(0, 2))
        while not stop.is_set():
            headers = {"If-None-Match": etag} if etag and rng.random() < 0.5 else {}
            r = await self._get(http, base, headers)
            if r is not None:
                etag = r.headers.get("etag") or etag
                self._record(r)
            await nap(stop, rng.uniform(1, 3))

    async def _get(
        self, http: httpx.AsyncClient, base: str, headers: dict[str, str]
    ) -> httpx.Response | None:
        for attempt in (1, 2):
            try:
                return await http.get(base + self.path, headers=headers, timeout=10)
            except httpx.HTTPError as e:
                if attempt == 2:
                    self.problems.append(Problem(time.monotonic(), type(e).__name__))
                else:
                    self.retried += 1
        return None

    def _record(self, r: httpx.Response) -> None:
        now = time.monotonic()
        live = r.status_code in (200, 304)
        if self.kind == "json" and r.status_code == 200:
            with contextlib.suppress(ValueError):
                live = is_live(r.json())
        if r.status_code not in (200, 304):
            self.problems.append(Problem(now, f"{r.status_code} {r.text[:120]}"))
        self.answers.append((now, r.status_code, live))


async def nap(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less when ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
