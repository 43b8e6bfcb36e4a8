"""GRIP: Pushpin holds the public event streams, and each change is published to it once.

Off unless ``NOWPLAYING_GRIP_PUBLISH_URL`` is set (docs/deploy.md). Then a request for
``/p/{id}/events`` that Pushpin forwards (its ``Grip-Sig``, a JWT signed with the shared
``NOWPLAYING_GRIP_KEY``, checks out) is answered at once and Pushpin keeps the connection:

- the first request gets what a direct viewer gets first (the greeting and the current event,
  unless its ``Last-Event-ID`` has it), ``Grip-Hold: stream``, the account's channel with
  ``prev-id`` = the version sent, a keep-alive of the same heartbeat every
  :data:`~nowplaying.web.sse.HEARTBEAT_SECONDS`, and the same URL as the ``next`` link;
- Pushpin asks that link again (``Grip-Last: channel; last-id=N``) when a published change's
  ``prev-id`` is not the last id a stream has (a change it missed): the answer is the current
  event unless the stream has it, and the hold again.

Publishing: while Pushpin holds streams of an account, one follower (``ops/follow.py``: a viewer
of the live state, latest wins, so the poller never waits) POSTs each change once, framed as
:meth:`Streams.event <nowplaying.web.sse.Streams.event>` frames it for direct viewers, with
``id`` = the version and ``prev-id`` = the version before. A refused or failed POST is retried
after :data:`RETRY_DELAYS` on the clock and then given up: the next change names the lost one
as its ``prev-id``, so Pushpin fetches what its streams missed. Viewers outlive a restart of
nowplaying (Pushpin holds them); a restart of Pushpin drops them and they come back with their
``Last-Event-ID``, as from a restart of nowplaying without Pushpin.

Several Pushpin instances (past the descriptors one process may hold): each change is POSTed to
every instance's publish endpoint, each retried on its own, so one instance down or restarting
delays nothing for the others' streams; each instance's stats socket is read on its own, and an
account is let go only when no instance holds it.

Which accounts are followed: those Pushpin reports on its stats socket (ZeroMQ, ``sub``
messages with ``stats_format=json``: refreshed within their ``ttl``, ``unavailable`` when the
last stream of a channel ends), and for :data:`REQUEST_GRACE` each one a request was just
answered for. Until the stats socket has said anything, nothing is dropped (better a poll too
many than a stream that stops changing).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import zmq
import zmq.asyncio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from nowplaying.clock import Clock
from nowplaying.config import Settings
from nowplaying.engine.live import LiveHub
from nowplaying.engine.snapshot import Snapshot
from nowplaying.ops.follow import Following
from nowplaying.web.sse import GREETING, HEARTBEAT, HEARTBEAT_SECONDS, Streams, has_version

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "nowplaying."
"""A channel is this and the account id (``token_urlsafe``: no ``;``, ``,`` or spaces)."""
ISSUER = "pushpin"
"""The ``iss`` of Pushpin's ``Grip-Sig`` (its ``sig_iss``)."""
KEEP_ALIVE = HEARTBEAT.replace("\n", "\\n") + f"; format=cstring; timeout={int(HEARTBEAT_SECONDS)}"
"""A held stream quiet this long gets the heartbeat a direct one gets."""
RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)
"""Waits before each further try of a publish; then the change is given up (bounded)."""
PUBLISH_SECONDS = 5.0
"""One publish request's timeout."""
REQUEST_GRACE = 30.0
"""An account is followed at least this long after a stream request was answered for it (the
stats socket reports the new subscription soon after)."""
STATS_MARGIN = 30.0
"""A subscription Pushpin reported lives its ``ttl`` and this much more."""
REAP_SECONDS = 15.0
"""How often followed accounts nobody holds are let go."""


def channel_of(account_id: str) -> str:
    return CHANNEL_PREFIX + account_id


def account_of(channel: object) -> str | None:
    if isinstance(channel, str) and channel.startswith(CHANNEL_PREFIX):
        return channel.removeprefix(CHANNEL_PREFIX) or None
    return None


def signed(token: str | None, key: str) -> bool:
    """Whether ``token`` is a ``Grip-Sig`` Pushpin made with ``key`` and that has not expired."""
    if not token:
        return False
    try:
        jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            issuer=ISSUER,
            options={"require": ["exp", "iss"]},
        )
    except jwt.PyJWTError:
        return False
    return True


def last_id(grip_last: str | None, channel: str) -> str | None:
    """The ``last-id`` that a ``Grip-Last`` header gives for ``channel`` (None: not named)."""
    for part in (grip_last or "").split(","):
        name, *params = (p.strip() for p in part.split(";"))
        if name != channel:
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "last-id":
                return value.strip().strip('"')
    return None


@dataclass
class Grip:
    """Answers Pushpin's stream requests and publishes each change of the accounts it holds.

    ``counts``: ``held`` (first requests answered), ``recovered`` (next-link requests),
    ``published``, ``retried`` (tries after a failure), ``given_up`` (changes not published):
    the last three per Pushpin instance, so one change to two instances counts 2.
    """

    hub: LiveHub
    clock: Clock
    http: httpx.AsyncClient
    publish_urls: tuple[str, ...]
    """Each Pushpin instance's publish endpoint: every change goes to all of them."""
    key: str = field(repr=False)
    """Pushpin's ``sig_key``, which signs ``Grip-Sig``: never in a repr or a log."""
    frame: Callable[[Snapshot, float], str]
    """The event text of a snapshot (``Streams.event``): held and direct viewers get the same."""
    counts: Counter[str] = field(default_factory=Counter)
    _holders: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per account, who holds streams of it (a Pushpin instance, or a request) and until when."""
    _published: dict[str, int] = field(default_factory=dict)
    """Per followed account, the version last published (or given up), or first handed to a
    held stream: what the next change names as its ``prev-id``."""
    _failing: set[str] = field(default_factory=set)
    """The publish endpoints whose last change was given up."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stats_heard: bool = False
    """Whether a stats socket has said anything (until then nothing is let go)."""
    stats_lost: bool = False
    """Whether a stats socket could not be read (then nothing is let go either)."""

    def __post_init__(self) -> None:
        self.following = Following(self.hub, self.clock, self._changed)

    def forwarded(self, headers: Mapping[str, str]) -> bool:
        """Whether a request came through Pushpin (its signature checks out)."""
        return signed(headers.get("grip-sig"), self.key)

    def response(
        self, account_id: str, request: Mapping[str, str], headers: dict[str, str], next_url: str
    ) -> Response:
        """The answer to a stream request Pushpin forwarded (see the module's docstring)."""
        channel = channel_of(account_id)
        recovered = last_id(request.get("grip-last"), channel)
        if recovered is not None:
            return _Hold(
                self, account_id, sent=recovered, greet=False, headers=headers, next_url=next_url
            )
        sent = request.get("last-event-id")
        return _Hold(self, account_id, sent=sent, greet=True, headers=headers, next_url=next_url)

    async def opening(
        self, account_id: str, sent: str | None, greet: bool
    ) -> tuple[str, int | None]:
        """The body of a held stream's answer, and the version the stream has after it."""
        self.counts["held" if greet else "recovered"] += 1
        self.hold(account_id, "request", self.clock.now() + REQUEST_GRACE)
        snap = await self.hub.current(account_id)
        body = GREETING if greet else ""
        if snap is None:
            return body, None
        self._published.setdefault(account_id, snap.version)  # not to be published again
        if not has_version(sent, snap.version, self.clock.now()):
            body += self.frame(snap, self.clock.now())
        return body, snap.version

    # -- who holds what --------------------------------------------------------------------------

    def hold(self, account_id: str, holder: str, until: float) -> None:
        """``holder`` holds streams of the account until ``until``: follow it."""
        holders = self._holders.setdefault(account_id, {})
        holders[holder] = max(until, holders.get(holder, until))
        if account_id not in self.following.accounts:
            peek = self.hub.peek(account_id)
            if peek is not None:
                self._published.setdefault(account_id, peek.version)
            self.following.add(account_id)

    def stats(self, message: bytes, source: str = "") -> None:
        """One message of a Pushpin's stats socket (``sub J{...}`` says who holds a channel);
        ``source``: the socket it came from (two instances may give the same ``from``)."""
        self.stats_heard = True
        kind, _, body = message.partition(b" ")
        if kind != b"sub" or not body.startswith(b"J"):
            return
        try:
            data = json.loads(body[1:])
        except ValueError:
            return
        if not isinstance(data, dict) or data.get("mode") != "stream":
            return
        account_id = account_of(data.get("channel"))
        if account_id is None:
            return
        holder = f"{source} {data.get('from', 'pushpin')}"
        if data.get("unavailable"):
            self._holders.get(account_id, {}).pop(holder, None)
            self.reap()
            return
        ttl = data.get("ttl")
        ttl = float(ttl) if isinstance(ttl, int | float) and ttl > 0 else 60.0
        self.hold(account_id, holder, self.clock.now() + ttl + STATS_MARGIN)

    def reap(self) -> None:
        """Let go of the accounts nobody holds any more (never before the stats socket spoke)."""
        if not self.stats_heard or self.stats_lost:
            return
        now = self.clock.now()
        for account_id in list(self._holders):
            holders = self._holders[account_id]
            for holder, until in list(holders.items()):
                if until <= now:
                    del holders[holder]
            if not holders:
                del self._holders[account_id]
                self.following.stop(account_id)
                self._published.pop(account_id, None)

    @property
    def accounts(self) -> frozenset[str]:
        """The accounts followed now."""
        return self.following.accounts

    # -- publishing ------------------------------------------------------------------------------

    async def _changed(self, account_id: str, before: Snapshot | None, snap: Snapshot) -> None:
        prev = self._published.get(account_id)
        if prev == snap.version:
            return
        self._published[account_id] = snap.version
        await self.publish(account_id, snap, prev)

    async def publish(self, account_id: str, snap: Snapshot, prev: int | None) -> bool:
        """POST one change to every Pushpin instance at once, each with bounded retries of its
        own; whether all of them took it."""
        item: dict[str, Any] = {
            "channel": channel_of(account_id),
            "id": str(snap.version),
            "formats": {"http-stream": {"content": self.frame(snap, self.clock.now())}},
        }
        if prev is not None:
            item["prev-id"] = str(prev)
        body = {"items": [item]}
        taken = await asyncio.gather(*(self._publish_to(url, body) for url in self.publish_urls))
        return all(taken)

    async def _publish_to(self, url: str, body: dict[str, Any]) -> bool:
        for delay in (0.0, *RETRY_DELAYS):
            if delay:
                self.counts["retried"] += 1
                await self.clock.sleep(delay)
            if await self._post(url, body):
                self.counts["published"] += 1
                if url in self._failing:
                    self._failing.discard(url)
                    log.info("the push server at %s takes published changes again", url)
                return True
        self.counts["given_up"] += 1
        if url not in self._failing:
            self._failing.add(url)
            log.warning(
                "the push server at %s took no change after %d tries; streams it holds catch up"
                " with the next change",
                url,
                1 + len(RETRY_DELAYS),
            )
        return False

    async def _post(self, url: str, body: dict[str, Any]) -> bool:
        try:
            async with self.clock.timeout(PUBLISH_SECONDS):
                answer = await self.http.post(url, json=body)
        except (httpx.HTTPError, TimeoutError):
            return False
        return answer.status_code == 200

    # -- life ------------------------------------------------------------------------------------

    def start(self, stats_urls: tuple[str, ...]) -> None:
        """Listen to each Pushpin's stats socket and let go of what nobody holds, in the
        background."""
        listen = [asyncio.create_task(self._listen(u), name=f"grip-stats:{u}") for u in stats_urls]
        self._tasks = [*listen, asyncio.create_task(self._reap_every(), name="grip-reap")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.following.close()
        await self.http.aclose()

    async def _listen(self, url: str) -> None:
        """Pushpin's stats (ZeroMQ SUB: it reconnects by itself when Pushpin restarts)."""
        context = zmq.asyncio.Context()
        sock = context.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        try:
            sock.connect(url)
            while True:
                self.stats(await sock.recv(), url)
        except zmq.ZMQError:
            self.stats_lost = True
            log.exception("Pushpin's stats socket %s cannot be read; no account is let go", url)
        finally:
            sock.close()
            context.term()

    async def _reap_every(self) -> None:
        while True:
            await self.clock.sleep(REAP_SECONDS)
            self.reap()


class _Hold(Response):
    """The answer Pushpin holds: its body is read from the live state when it is sent."""

    media_type = "text/event-stream"

    def __init__(
        self,
        grip: Grip,
        account_id: str,
        *,
        sent: str | None,
        greet: bool,
        headers: dict[str, str],
        next_url: str,
    ) -> None:
        self.grip, self.account_id, self.sent, self.greet = grip, account_id, sent, greet
        self.status_code = 200
        self.background = None
        self._hold = {
            **headers,
            "Grip-Hold": "stream",
            "Grip-Keep-Alive": KEEP_ALIVE,
            "Grip-Link": f"<{next_url}>; rel=next",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, version = await self.grip.opening(self.account_id, self.sent, self.greet)
        channel = channel_of(self.account_id)
        if version is not None:
            channel += f"; prev-id={version}"
        self.body = body.encode()
        self.init_headers({**self._hold, "Grip-Channel": channel})
        await super().__call__(scope, receive, send)


def start_grip(
    settings: Settings,
    hub: LiveHub,
    clock: Clock,
    streams: Streams,
    http: httpx.AsyncClient | None = None,
) -> Grip | None:
    """GRIP as configured (None: off), its background tasks started."""
    if not settings.grip_publish_urls:
        return None
    grip = Grip(
        hub,
        clock,
        http or httpx.AsyncClient(follow_redirects=False),
        publish_urls=settings.grip_publish_urls,
        key=settings.nowplaying_grip_key.get_secret_value(),
        frame=streams.event,
    )
    grip.start(settings.grip_stats_urls)
    return grip
