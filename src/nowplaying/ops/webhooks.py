"""Track-change webhooks: an owner's URLs told when the song changes, signed per Standard Webhooks.

An event's id is the account's state version, which every instance shares, so the delivery's
row in the store is its claim: one instance sends it, at most once per change per endpoint.
Sending is off the poller's path (a bounded queue, a few senders, retries with backoff, no
redirect followed). Before every attempt the host is resolved and each address checked
(:func:`resolve`), and the request goes to the address checked, so no second lookup a DNS
rebinding could answer differently is made. The URL and the secret never reach a log.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from nowplaying.clock import Clock
from nowplaying.engine.live import LiveHub
from nowplaying.engine.snapshot import Snapshot
from nowplaying.models import NowPlaying
from nowplaying.ops.follow import Following
from nowplaying.store import Delivery, Store, StoreError, Webhook

__all__ = [
    "MAX_PER_ACCOUNT",
    "Refused",
    "Webhooks",
    "check_url",
    "event_of",
    "new_secret",
    "resolve",
    "sign",
]

log = logging.getLogger(__name__)

MAX_PER_ACCOUNT = 5
QUEUE_MAX = 1000
SENDERS = 4
TIMEOUT = 10.0
"""Seconds for one attempt, connecting and answering."""
BACKOFF = (5.0, 30.0, 120.0, 600.0, 1800.0)
"""Seconds before each retry (then the last again) while :data:`RETRY_FOR` allows."""
RETRY_FOR = 3600.0
RESCAN_SECONDS = 60.0
"""How often the list of webhooks is read again (another instance's changes)."""
KEEP_DELIVERIES = 7 * 86400.0
TEST_EVENT = "webhook.test"
_RETRYABLE = {408, 425, 429}

Resolver = Callable[[str, int], Awaitable[list[str]]]


class Refused(ValueError):
    """A webhook URL that may not be used (the message says why, without the URL)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One change, as sent."""

    id: str
    type: str
    account_id: str
    data: dict[str, Any]
    at: float

    def body(self) -> bytes:
        stamp = datetime.fromtimestamp(self.at, UTC).isoformat().replace("+00:00", "Z")
        payload = {"type": self.type, "timestamp": stamp, "data": self.data}
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class _Job:
    hook: Webhook
    event: Event
    attempt: int
    first_at: float
    claimed: bool = False


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: ``v1,`` and the base64 HMAC-SHA256 of
    ``{id}.{timestamp}.{body}`` under the secret's bytes (Standard Webhooks)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def check_url(url: str, allowed_hosts: frozenset[str]) -> httpx.URL:
    """``url`` parsed, or :class:`Refused`: https (http only to an allowed host), no credentials,
    and no literal address that :func:`resolve` would refuse anyway."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as e:
        raise Refused("Not a URL.") from e
    host = (parsed.host or "").lower().rstrip(".")
    if not host or parsed.scheme not in {"https", "http"}:
        raise Refused("The URL must start with https://.")
    if parsed.scheme == "http" and host not in allowed_hosts:
        raise Refused("Plain http is only for hosts in NOWPLAYING_WEBHOOK_ALLOWED_HOSTS.")
    if parsed.userinfo:
        raise Refused("Credentials in the URL are not accepted; use the signature.")
    if len(url) > 2000:
        raise Refused("The URL is too long.")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return parsed  # a name: its addresses are checked before every delivery
    _allowed(literal, host, allowed_hosts)
    return parsed


async def resolve(
    host: str, port: int, allowed_hosts: frozenset[str], lookup: Resolver | None = None
) -> str:
    """An address of ``host`` that may be sent to, or :class:`Refused` (no address, or any
    address it has is private, loopback, link-local, reserved or multicast and the host is not
    allowed)."""
    name = host.lower().rstrip(".")
    try:
        literal = ipaddress.ip_address(name)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        found = await (lookup or _lookup)(name, port)
        addresses = list(found)
    if not addresses:
        raise Refused("The host has no address.")
    for address in addresses:
        _allowed(ipaddress.ip_address(address), name, allowed_hosts)
    return addresses[0]


def _allowed(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, host: str, allowed: frozenset[str]
) -> None:
    if host in allowed:
        return
    mapped = getattr(address, "ipv4_mapped", None)
    checked = mapped or address
    if (
        checked.is_private
        or checked.is_loopback
        or checked.is_link_local
        or checked.is_reserved
        or checked.is_multicast
        or checked.is_unspecified
    ):
        raise Refused(
            "The host's address is private, loopback or link-local; list the host in"
            " NOWPLAYING_WEBHOOK_ALLOWED_HOSTS to allow it."
        )


async def _lookup(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


def event_of(before: Snapshot | None, after: Snapshot) -> str | None:
    """The event a change from ``before`` to ``after`` is, or None (progress, stale marks...)."""
    was, now = _item(before.playing if before else None), _item(after.playing)
    if now is None:
        return "playback.stopped" if was is not None else None
    playing = bool(after.playing and after.playing.is_playing)
    if was is None or was[0] != now[0]:
        return "track.started" if playing else None
    if was[1] and not playing:
        return "playback.paused"
    if not was[1] and playing:
        return "playback.resumed"
    return None


def _item(playing: NowPlaying | None) -> tuple[tuple[str, ...], bool] | None:
    """What plays (its identity) and whether it plays, or None when nothing does."""
    if playing is None or not playing.active:
        return None
    item = playing.item
    identity = (item.id or item.url or item.title, *item.artists) if item else (str(playing.kind),)
    return tuple(identity), playing.is_playing


class Webhooks:
    """Follows the accounts with webhooks, and delivers each change's event once."""

    def __init__(
        self,
        hub: LiveHub,
        store: Store,
        clock: Clock,
        *,
        http: httpx.AsyncClient | None = None,
        allowed_hosts: Iterable[str] = (),
        lookup: Resolver | None = None,
        senders: int = SENDERS,
        queue_max: int = QUEUE_MAX,
    ) -> None:
        self.hub = hub
        self.store = store
        self.clock = clock
        self.allowed_hosts = frozenset(h.strip().lower().rstrip(".") for h in allowed_hosts)
        self.http = http
        """Where deliveries go out (injectable; made in :meth:`start` when not given)."""
        self._own_http = http is None
        self.lookup = lookup
        self._senders = senders
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_max)
        self._following = Following(hub, clock, self._changed)
        self._hooks: dict[str, list[Webhook]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._retries: set[asyncio.Task[None]] = set()
        self.counts: Counter[str] = Counter()
        """``events``, ``claimed``, ``delivered``, ``retried``, ``failed``, ``refused``,
        ``dropped`` (queue full), ``lost`` (claimed by another instance)."""

    async def start(self) -> None:
        if self.http is None:
            self.http = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
        await self.rescan()
        self._tasks = [asyncio.create_task(self._send_forever()) for _ in range(self._senders)]
        self._tasks.append(asyncio.create_task(self._rescan_forever()))

    async def close(self) -> None:
        tasks = [*self._tasks, *self._retries]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._following.close()
        if self._own_http and self.http is not None:
            await self.http.aclose()

    # -- which accounts ------------------------------------------------------------------------

    async def rescan(self, account_id: str | None = None) -> None:
        """Read the webhooks again (one account's, after its owner changed them, or all)."""
        try:
            hooks = await self.store.list_webhooks(account_id)
        except StoreError as e:
            log.warning("could not read the webhooks (%s)", type(e).__name__)
            return
        found: dict[str, list[Webhook]] = {}
        for hook in hooks:
            found.setdefault(hook.account_id, []).append(hook)
        if account_id is not None:
            self._hooks.pop(account_id, None)
            self._hooks.update(found)
        else:
            self._hooks = found
        self._following.set(self._hooks)

    async def _rescan_forever(self) -> None:
        while True:
            await self.clock.sleep(RESCAN_SECONDS)
            await self.rescan()

    def _changed(self, account_id: str, before: Snapshot | None, after: Snapshot) -> None:
        kind = event_of(before, after) if before is not None else None
        if kind is not None:
            self.emit(account_id, kind, after)

    # -- events --------------------------------------------------------------------------------

    def emit(self, account_id: str, kind: str, snap: Snapshot) -> None:
        """Queue the event ``kind`` of ``snap`` for each of the account's webhooks."""
        now = self.clock.now()
        view = snap.view(now)
        event = Event(f"{account_id}:{snap.version}", kind, account_id, view.data(), now)
        self.counts["events"] += 1
        for hook in self._hooks.get(account_id, []):
            self._enqueue(_Job(hook, event, 0, now))

    async def send_test(self, hook: Webhook) -> None:
        """Queue a ``webhook.test`` event for one webhook (the owner's "send test event"),
        recorded as pending before this returns (the owner's list shows it at once)."""
        now = self.clock.now()
        data = {"message": "A test event from nowplaying."}
        event = Event(f"test:{secrets.token_hex(8)}", TEST_EVENT, hook.account_id, data, now)
        await self.store.claim_delivery(
            Delivery(hook.id, event.id, event.type, now, "pending", 0, "")
        )
        self._enqueue(_Job(hook, event, 0, now, claimed=True))

    def _enqueue(self, job: _Job) -> None:
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.counts["dropped"] += 1
            log.warning("webhook queue full: an event was dropped")

    async def idle(self) -> None:
        """Wait until every queued event has been handled (tests, shutdown)."""
        await self._queue.join()

    # -- delivery ------------------------------------------------------------------------------

    async def _send_forever(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._deliver(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # the outer guard of a background task (STYLE)
                log.exception("webhook delivery failed unexpectedly")
            finally:
                self._queue.task_done()

    async def _deliver(self, job: _Job) -> None:
        hook, event = job.hook, job.event
        msg_id = "msg_" + hashlib.sha256(f"{hook.id}:{event.id}".encode()).hexdigest()[:24]
        if job.attempt == 0 and not job.claimed:
            record = Delivery(hook.id, event.id, event.type, self.clock.now(), "pending", 0, "")
            try:
                if not await self.store.claim_delivery(record):
                    self.counts["lost"] += 1
                    return
            except StoreError as e:
                log.warning("could not claim a webhook delivery (%s)", type(e).__name__)
                return
            self.counts["claimed"] += 1
        status, detail = await self._attempt(hook, event, msg_id)
        attempts = job.attempt + 1
        if status == "retry" and self.clock.now() - job.first_at < RETRY_FOR:
            self.counts["retried"] += 1
            await self._record(hook, event, "pending", attempts, detail)
            self._later(replace(job, attempt=attempts))
            return
        final = "failed" if status == "retry" else status
        self.counts[final] += 1
        await self._record(hook, event, final, attempts, detail)

    async def _attempt(self, hook: Webhook, event: Event, msg_id: str) -> tuple[str, str]:
        """``(status, detail)``: ``delivered``, ``retry``, ``failed`` (for good) or ``refused``."""
        if not hook.secret:
            return "refused", "secret unreadable (the key that sealed it is not configured)"
        try:
            url = check_url(hook.url, self.allowed_hosts)
            port = url.port or (443 if url.scheme == "https" else 80)
            address = await resolve(url.host, port, self.allowed_hosts, self.lookup)
        except Refused as e:
            return "refused", str(e)
        except OSError:
            return "retry", "the host name did not resolve"
        body = event.body()
        stamp = int(self.clock.now())
        headers = {
            "content-type": "application/json",
            "user-agent": "nowplaying-webhooks",
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(hook.secret, msg_id, stamp, body),
            "host": url.netloc.decode(),
        }
        target = url.copy_with(host=address)
        extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
        assert self.http is not None  # noqa: S101 - set by start()
        try:
            response = await self.http.post(
                target,
                content=body,
                headers=headers,
                extensions=extensions,
                follow_redirects=False,
                timeout=TIMEOUT,
            )
        except httpx.TimeoutException:
            return "retry", "timed out"
        except httpx.TransportError as e:
            return "retry", f"could not connect ({type(e).__name__})"
        code = response.status_code
        if 200 <= code < 300:
            return "delivered", f"HTTP {code}"
        if code >= 500 or code in _RETRYABLE:
            return "retry", f"HTTP {code}"
        return "failed", f"HTTP {code}" + (" (redirects are not followed)" if code < 400 else "")

    def _later(self, job: _Job) -> None:
        if len(self._retries) >= self._queue.maxsize:  # bounded too: the oldest keep their turn
            self.counts["dropped"] += 1
            log.warning("too many webhook retries waiting: one was dropped")
            return
        delay = BACKOFF[min(job.attempt - 1, len(BACKOFF) - 1)]

        async def again() -> None:
            await self.clock.sleep(delay)
            self._enqueue(job)

        task = asyncio.create_task(again())
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _record(self, hook: Webhook, event: Event, status: str, n: int, detail: str) -> None:
        now = self.clock.now()
        try:
            await self.store.update_delivery(
                Delivery(hook.id, event.id, event.type, now, status, n, detail)
            )
            await self.store.prune_deliveries(hook.id, now - KEEP_DELIVERIES)
        except StoreError as e:
            log.warning("could not record a webhook delivery (%s)", type(e).__name__)

    @property
    def pending(self) -> int:
        """Events queued or waiting to be retried."""
        return self._queue.qsize() + len(self._retries)
