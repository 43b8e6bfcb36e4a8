"""The audience: accounts signed in over HTTP, SSE viewers and polling viewers.

Every answer a viewer gets is counted in a :class:`Tally` (status by kind, transport failures,
the first 5xx answers in full), and every SSE event is kept by its viewer. Viewers behave like
browsers: an SSE viewer reconnects 3 s after its stream ends (the server's ``retry: 3000``) and
gives up on a 4xx, as ``EventSource`` does; a polling viewer asks every 1-3 s, and an SVG viewer
revalidates with ``If-None-Match`` half of the time, like an image proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from harness.helpers import consent

from soak.procs import SoakError

SSE_READ_TIMEOUT = 45.0  # three missed heartbeats (15 s each): the stream is dead
MAX_DETAILS = 40


@dataclass
class Tally:
    """Every answer the viewers got."""

    started: float = field(default_factory=time.monotonic)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    latency: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    unavailable: int = 0
    """503s answered by design: the server has no data at all for the account yet."""
    reconnects: Counter[str] = field(default_factory=Counter)
    """Answers saying reconnect_required, by account."""

    def answer(self, t: Target, status: int, body: str, seconds: float) -> None:
        self.statuses[(t.kind, status)] += 1
        self.latency[t.kind].append(seconds)
        if "reconnect_required" in body:
            self.reconnects[t.account] += 1
        if status >= 500:
            self.unavailable += status == 503 and '"unavailable"' in body
            if len(self.server_errors) < MAX_DETAILS:
                at = time.monotonic() - self.started
                self.server_errors.append(
                    f"+{at:.1f}s {t.kind} GET {t.path} ({t.account}) -> {status} {body[:160]!r}"
                )

    def fail(self, kind: str, error: Exception) -> None:
        self.failures[(kind, type(error).__name__)] += 1

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(self.failures.values())


@dataclass(frozen=True)
class Target:
    """What a viewer watches: ``kind`` is api, json, svg, sse-private or sse-public."""

    account: str
    kind: str
    path: str
    cookie: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Cookie": self.cookie} if self.cookie else {}


@dataclass
class SseViewer:
    target: Target
    events: list[dict[str, Any]] = field(default_factory=list)
    connects: int = 0
    drops: int = 0
    """Streams the server ended (the viewer reconnected)."""
    refused: int | None = None
    """A 4xx on (re)connect: the viewer gave up, like EventSource."""

    @property
    def last(self) -> dict[str, Any] | None:
        return self.events[-1] if self.events else None


async def nap(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less when ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def until(check: Callable[[], Awaitable[bool]], seconds: float) -> float | None:
    """Seconds until ``check()`` held (polled every 0.25 s), or None if not within ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            if await check():
                return time.monotonic() - started
        await asyncio.sleep(0.25)
    return None


async def watch(
    http: httpx.AsyncClient, base: str, v: SseViewer, tally: Tally, stop: asyncio.Event
) -> None:
    """One SSE viewer, until ``stop`` (or cancellation)."""
    t = v.target
    headers = {**t.headers(), "Accept": "text/event-stream"}
    timeout = httpx.Timeout(10, read=SSE_READ_TIMEOUT)
    while not stop.is_set():
        started = time.monotonic()
        try:
            async with http.stream("GET", base + t.path, headers=headers, timeout=timeout) as r:
                body = "" if r.status_code == 200 else (await r.aread()).decode(errors="replace")
                tally.answer(t, r.status_code, body, time.monotonic() - started)
                v.connects += 1
                if r.status_code == 200:
                    async for line in r.aiter_lines():
                        if line.startswith("data: "):
                            v.events.append(json.loads(line[6:]))
                            if "reconnect_required" in line:
                                tally.reconnects[t.account] += 1
                    v.drops += 1
                elif r.status_code < 500:
                    v.refused = r.status_code
                    return
        except httpx.HTTPError as e:
            tally.fail(t.kind, e)
        await nap(stop, 3.0)


async def poll(
    http: httpx.AsyncClient,
    base: str,
    t: Target,
    tally: Tally,
    *,
    stop: asyncio.Event,
    rng: random.Random,
) -> None:
    """One polling viewer: a request every 1-3 s (with jitter) until ``stop``."""
    etag: str | None = None
    await nap(stop, rng.uniform(0, 2))
    while not stop.is_set():
        headers = t.headers()
        if etag and rng.random() < 0.5:
            headers["If-None-Match"] = etag
        started = time.monotonic()
        try:
            r = await http.get(base + t.path, headers=headers, timeout=10)
            tally.answer(t, r.status_code, r.text, time.monotonic() - started)
            etag = r.headers.get("etag") or etag
        except httpx.HTTPError as e:
            tally.fail(t.kind, e)
        await nap(stop, rng.uniform(1, 3))


# -- accounts ----------------------------------------------------------------------------------


async def login(base: str, user: str) -> str:
    """Sign ``user`` in through the server and the simulator's consent page; the session cookie."""
    async with httpx.AsyncClient(timeout=10) as browser:
        start = await browser.get(f"{base}/login")
        if start.status_code != 302:
            raise SoakError(f"/login for {user}: {start.status_code} {start.text[:200]}")
        login_cookie = start.headers["set-cookie"].split(";")[0]
        redirect = await consent(browser, start.headers["location"], user=user)
        back = await browser.get(redirect.headers["location"], headers={"Cookie": login_cookie})
        if back.status_code != 303:
            raise SoakError(f"/callback for {user}: {back.status_code} {back.text[:200]}")
        return next(
            v.split(";")[0] for v in back.headers.get_list("set-cookie") if "np_session=" in v
        )


async def publish(http: httpx.AsyncClient, base: str, cookie: str) -> str:
    """Publish the session's account; its public id."""
    r = await http.post(
        f"{base}/api/account/publish", headers={"Cookie": cookie, "Origin": base}, timeout=10
    )
    if r.status_code != 200:
        raise SoakError(f"publish: {r.status_code} {r.text[:200]}")
    public_id: str = r.json()["publicId"]
    return public_id
