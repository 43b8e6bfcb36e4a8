"""Owner alerts: a JSON POST to ``NOWPLAYING_ALERT_WEBHOOK`` when an owner must act.

Nobody watches the owner page, so a widget could say "Reconnect needed" for weeks. An event is
sent once, not once per instance: its key is claimed (Redis ``SET NX``; without Redis in this
process and in a file beside a SQLite database, so a restart does not repeat it) before sending,
and released when delivery fails for good, so the next occurrence tries again. Delivery never
blocks a poller: a bounded queue, one sender. Display names are anyone's text and are escaped as
each chat service asks; the webhook URL holds a credential and is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from nowplaying.clock import Clock
from nowplaying.coord.keys import Keys
from nowplaying.models import RATE_LIMIT
from nowplaying.store import Account, Store, StoreError

if TYPE_CHECKING:  # redis-py is loaded only where a Redis URL is set
    from nowplaying.coord.link import RedisLink

log = logging.getLogger(__name__)

GRANT_LIFETIME = 182 * 86400
"""Spotify's refresh tokens die six months after consent (2026); refreshing does not extend."""
EXPIRY_NOTICES = (14, 3)
"""Days before a grant's end when its owner is told."""
LONG_PAUSE = 3600.0
"""A pause at least this long is worth telling the owner (the rolling window passes in
seconds; the quota lasts hours)."""
DAY = 86400.0
WITHDRAWN_NOTICE = 30 * DAY
"""A read the upstream withdrew from the app is told once in this long (it is not coming back
by itself; a restart that meets it again says nothing new)."""


class Event(StrEnum):
    RECONNECT = "reconnect_needed"
    EXPIRES = "grant_expires_soon"
    PAUSED = "app_paused"
    WITHDRAWN = "read_withdrawn"


@dataclass(frozen=True, slots=True)
class Alert:
    """One message for the owner. ``key`` identifies the event across instances."""

    event: Event
    key: str
    title: str
    text: str
    ttl: float
    """How long the key is remembered (the event cannot recur sooner)."""
    fields: Mapping[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The JSON the webhook receives."""
        return {
            "content": self.text,
            "text": self.text,
            "message": self.text,
            "title": self.title,
            "allowed_mentions": {"parse": []},
            "event": str(self.event),
            **self.fields,
        }


def chat_safe(text: str, limit: int = 100) -> str:
    """Outside text for a chat message: one line, capped, Slack's ``<>&`` escaped."""
    one_line = "".join(c if c.isprintable() else " " for c in text[:limit])
    return one_line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def reconnect_alert(account: Account, url: str) -> Alert:
    name = chat_safe(account.display_name)
    why = (
        "the server's secret key changed and the key that sealed it is not configured"
        if account.key_missing
        else "Spotify no longer accepts its grant"
    )
    return Alert(
        Event.RECONNECT,
        f"reconnect:{account.id}:{account.consented_at:.0f}",
        "Spotify connection needs reconnecting",
        f"nowplaying: the widget of {name} stopped updating: {why}. Reconnect at {url}",
        ttl=GRANT_LIFETIME,
        fields={"account": account.id, "displayName": account.display_name, "url": url},
    )


def expiry_alert(account: Account, days: int, url: str) -> Alert:
    ends = account.consented_at + GRANT_LIFETIME
    name = chat_safe(account.display_name)
    return Alert(
        Event.EXPIRES,
        f"expires{days}:{account.id}:{account.consented_at:.0f}",
        f"Spotify connection ends in {days} days",
        f"nowplaying: Spotify ends the connection of {name} on {_iso(ends)[:10]} (six months"
        f" after consent; it cannot be extended). Reconnect before then at {url}",
        ttl=GRANT_LIFETIME,
        fields={
            "account": account.id,
            "displayName": account.display_name,
            "until": _iso(ends),
            "daysLeft": days,
            "url": url,
        },
    )


def pause_alert(until: float, reason: str, url: str, *, ttl: float) -> Alert:
    return Alert(
        Event.PAUSED,
        # Ten-minute buckets: instances that saw the same pause a moment apart agree on it.
        f"pause:{reason}:{int(until // 600)}",
        "Spotify paused the app",
        f"nowplaying: Spotify paused this app ({reason}) until {_iso(until)}: no widget updates"
        f" until then. Calls meanwhile extend the pause; nothing needs doing. {url}",
        ttl=ttl,
        fields={"until": _iso(until), "reason": reason, "url": url},
    )


def withdrawn_alert(what: str, disabled: str, fix: str, url: str) -> Alert:
    return Alert(
        Event.WITHDRAWN,
        f"withdrawn:{what}",
        f"Spotify removed {what} for this app",
        f"nowplaying: Spotify no longer serves {what} to this app (removed for development-mode"
        f" apps): {disabled}. It is disabled, not retried. {fix} {url}",
        ttl=WITHDRAWN_NOTICE,
        fields={"endpoint": what, "disabled": disabled, "url": url},
    )


class Claims(Protocol):
    """Who sends an alert: the first instance to claim its key."""

    async def claim(self, key: str, ttl: float) -> bool: ...
    async def release(self, key: str) -> None: ...
    async def close(self) -> None: ...


class LocalClaims:
    """Claims in this process (one instance, or Redis down), kept in ``path`` when given (a
    small JSON file beside the SQLite database), so a restart does not send an alert again."""

    def __init__(self, clock: Clock, path: Path | None = None) -> None:
        self._clock = clock
        self._path = path
        self._until: dict[str, float] = self._load()

    def _load(self) -> dict[str, float]:
        if self._path is None:
            return {}
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            return {str(k): float(v) for k, v in data.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}  # none yet, or damaged: at worst an alert is sent twice

    def _save(self) -> None:
        if self._path is None:
            return
        now = self._clock.now()
        live = {k: v for k, v in self._until.items() if v > now}
        try:
            tmp = self._path.with_name(self._path.name + ".tmp")
            tmp.write_text(json.dumps(live), encoding="utf-8")
            os.replace(tmp, self._path)
        except OSError as e:
            log.warning("could not keep sent alerts (%s)", type(e).__name__)

    async def claim(self, key: str, ttl: float) -> bool:
        now = self._clock.now()
        if self._until.get(key, 0.0) > now:
            return False
        self._until[key] = now + ttl
        self._save()
        return True

    async def release(self, key: str) -> None:
        self._until.pop(key, None)
        self._save()

    async def close(self) -> None:
        return None


class RedisClaims:
    """Claims through Redis ``SET NX``: one instance of many sends. Redis down: this process
    decides alone (a duplicate is better than a lost alert)."""

    def __init__(self, link: RedisLink, clock: Clock) -> None:
        self.link = link  # the caller's: it closes it
        self._local = LocalClaims(clock)

    async def claim(self, key: str, ttl: float) -> bool:
        claim = self.link.redis.set(Keys.alert(key), "1", nx=True, ex=max(1, int(ttl)))
        won = await self.link.call(claim, None)
        if won is None and self.link.degraded:
            return await self._local.claim(key, ttl)
        return bool(won)

    async def release(self, key: str) -> None:
        await self.link.call(self.link.redis.delete(Keys.alert(key)), None)
        await self._local.release(key)

    async def close(self) -> None:
        return None


class _Final(Exception):
    """The webhook refused the alert for good (a 4xx other than 408/429)."""


@dataclass(frozen=True, slots=True)
class _Reconnect:
    account_id: str


class Alerter:
    """Queues events, resolves them to alerts, claims and delivers each once."""

    def __init__(
        self,
        webhook: str,
        *,
        store: Store,
        clock: Clock,
        claims: Claims,
        owner_url: str,
        http: httpx.AsyncClient | None = None,
        queue_size: int = 100,
        attempts: int = 6,
        backoff: float = 2.0,
        backoff_max: float = 300.0,
        scan_every: float = 3600.0,
        timeout: httpx.Timeout = httpx.Timeout(10.0, connect=5.0),  # noqa: B008 - immutable
    ) -> None:
        self._webhook = webhook
        self._store = store
        self._clock = clock
        self.claims = claims
        self.owner_url = owner_url
        self._http = http or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._own_http = http is None
        self._queue: asyncio.Queue[Alert | _Reconnect] = asyncio.Queue(queue_size)
        self._attempts = attempts
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._scan_every = scan_every
        self._rng = random.Random()  # noqa: S311 - jitter, not secrets
        self._tasks: list[asyncio.Task[None]] = []
        self.counts: Counter[str] = Counter()
        self.idle = asyncio.Event()
        """Set while nothing is queued or being delivered (tests wait on it)."""
        self.idle.set()

    # -- what the engine calls (never blocks) ----------------------------------------------

    def reconnect_needed(self, account_id: str) -> None:
        """An account's grant is gone (its details are read in the background)."""
        self._offer(_Reconnect(account_id))

    def paused(self, retry_after: float, reason: str | None) -> None:
        """Spotify paused the app; told when the pause is long."""
        if retry_after >= LONG_PAUSE:
            until = self._clock.now() + retry_after
            alert = pause_alert(until, reason or RATE_LIMIT, self.owner_url, ttl=retry_after)
            self._offer(alert)

    def withdrawn(self, what: str, disabled: str, fix: str) -> None:
        """Spotify withdrew a read from the app (an endpoint removed for development mode)."""
        self._offer(withdrawn_alert(what, disabled, fix, self.owner_url))

    def notify(self, alert: Alert) -> None:
        """Queue a ready alert."""
        self._offer(alert)

    def _offer(self, item: Alert | _Reconnect) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.counts["dropped"] += 1
            log.warning("alert queue full: an alert was dropped")
            return
        self.counts["queued"] += 1
        self.idle.clear()

    # -- the background ----------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._deliver_forever(), name="nowplaying-alerts"),
            asyncio.create_task(self._scan_forever(), name="nowplaying-alert-scan"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._own_http:
            await self._http.aclose()
        await self.claims.close()

    async def scan(self) -> int:
        """Queue the alerts the stored accounts call for (reconnects, expiries); how many."""
        try:
            accounts = await self._store.list_accounts()
        except StoreError as e:
            log.warning("alert scan: accounts unavailable (%s)", type(e).__name__)
            return 0
        now = self._clock.now()
        found = 0
        for account in accounts:
            if account.reconnect_reason is not None:
                self.notify(reconnect_alert(account, self.owner_url))
                found += 1
                continue
            if not account.spotify:
                continue  # only a Spotify grant expires
            left = account.consented_at + GRANT_LIFETIME - now
            due = [d for d in EXPIRY_NOTICES if 0 < left <= d * DAY]
            if due:  # the nearest notice only: a late start does not send 14 and 3 at once
                self.notify(expiry_alert(account, min(due), self.owner_url))
                found += 1
        self.counts["scans"] += 1
        return found

    async def _scan_forever(self) -> None:
        while True:
            try:
                await self.scan()
            except Exception:  # the outer guard of a background task (STYLE.md)
                log.exception("alert scan failed; trying again later")
            await self._clock.sleep(self._scan_every)

    async def _deliver_forever(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                alert = await self._resolve(item)
                if alert is not None:
                    await self._deliver(alert)
            except Exception:  # the outer guard of a background task (STYLE.md)
                self.counts["failed"] += 1
                log.exception("alert delivery failed unexpectedly")
            finally:
                self._queue.task_done()
                if self._queue.empty():
                    self.idle.set()

    async def _resolve(self, item: Alert | _Reconnect) -> Alert | None:
        if isinstance(item, Alert):
            return item
        try:
            account = await self._store.get_account_info(item.account_id)
        except StoreError as e:
            log.warning("reconnect alert: account unavailable (%s)", type(e).__name__)
            return None
        if account is None or not account.spotify:  # a widget without Spotify: no grant to renew
            return None
        return reconnect_alert(account, self.owner_url)

    async def _deliver(self, alert: Alert) -> None:
        if not await self.claims.claim(alert.key, alert.ttl):
            self.counts["duplicate"] += 1
            return
        for attempt in range(1, self._attempts + 1):
            try:
                await self._post(alert)
            except _Final as e:
                log.error("alert webhook refused the %s alert (%s); not retried", alert.event, e)
                break
            except (httpx.HTTPError, _Retry) as e:
                if attempt == self._attempts:
                    log.error("alert %s undelivered after %d attempts", alert.event, attempt)
                    break
                wait = self._wait(attempt, e)
                self.counts["retries"] += 1
                log.warning("alert delivery failed (%s); retrying in %.0fs", _what(e), wait)
                await self._clock.sleep(wait)
            else:
                self.counts["sent"] += 1
                log.info("alert sent: %s", alert.event)
                return
        self.counts["failed"] += 1
        await self.claims.release(alert.key)

    async def _post(self, alert: Alert) -> None:
        response = await self._http.post(self._webhook, json=alert.body())
        status = response.status_code
        if status < 300:
            return
        if status in (408, 429) or status >= 500:
            raise _Retry(status, response.headers.get("retry-after"))
        raise _Final(f"HTTP {status}")

    def _wait(self, attempt: int, error: BaseException) -> float:
        if isinstance(error, _Retry) and error.retry_after is not None:
            return min(self._backoff_max, error.retry_after)
        cap = min(self._backoff_max, self._backoff * 2.0 ** (attempt - 1))
        return cap * self._rng.uniform(0.5, 1.0)


class _Retry(Exception):
    """The webhook answered with a status worth retrying."""

    def __init__(self, status: int, retry_after: str | None) -> None:
        super().__init__(f"HTTP {status}")
        try:
            self.retry_after: float | None = max(0.0, float(retry_after or ""))
        except ValueError:
            self.retry_after = None


def _what(error: BaseException) -> str:
    return str(error) if isinstance(error, _Retry) else type(error).__name__
