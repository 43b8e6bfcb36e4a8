"""Faults on the simulated Spotify, through its ``/_control`` API, every 1-2 s.

Kinds (weights in :data:`KINDS`): short 429s (Retry-After 1-5 s), 5xx on the Web API or on any
endpoint, slow answers (1-3 s, under the server's 5 s read timeout), hangs (the server's timeout
fires), token-endpoint 5xx/slowness/hangs (each followed by an access-token expiry so a refresh
actually meets it), expiries of every access token (refreshes, with rotation), skips, and stops
(resumed 3-8 s later). Two accounts are revoked at planned moments.

The hour-long quota 429 is not here: :func:`quota_pause` runs it as its own phase.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import httpx

KINDS: dict[str, int] = {
    "429 (Retry-After 1-5 s)": 10,
    "5xx on currently-playing": 12,
    "5xx on any endpoint": 8,
    "slow answer (1-3 s)": 12,
    "hang (server timeout)": 6,
    "token endpoint 5xx": 8,
    "token endpoint slow": 4,
    "token endpoint hang": 3,
    "expire all access tokens": 10,
    "skip": 12,
    "stop (resume 3-8 s later)": 8,
}


class Chaos:
    """Injects random faults until told to stop; counts what it injected."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        sim_url: str,
        users: list[str],
        revocations: dict[str, float],
        rng: random.Random,
    ) -> None:
        self._http = http
        self._sim = sim_url
        self._users = users
        self._revocations = dict(revocations)  # user -> seconds into the run
        self._rng = rng
        self._deck: list[str] = []
        self._stopped: dict[str, float] = {}  # user -> when to resume (monotonic)
        self.counts: Counter[str] = Counter()
        self.revoked_at: dict[str, float] = {}
        self.control_errors: list[str] = []

    async def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        try:
            r = await self._http.request(method, f"{self._sim}/_control{path}", json=body)
        except httpx.HTTPError as e:
            self.control_errors.append(f"{method} {path}: {type(e).__name__}")
            return
        if r.status_code >= 400:
            self.control_errors.append(f"{method} {path}: {r.status_code} {r.text[:120]}")

    async def fault(self, endpoint: str, **spec: Any) -> None:
        await self._control("POST", "/faults", {"endpoint": endpoint, **spec})

    async def run(self, seconds: float) -> None:
        """Inject faults for ``seconds``; revocations happen at their planned moments."""
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            for user, at in list(self._revocations.items()):
                if elapsed >= at:
                    del self._revocations[user]
                    await self._control("POST", f"/users/{user}/revoke")
                    self.revoked_at[user] = elapsed
                    self.counts["revoke an account"] += 1
            for user, due in list(self._stopped.items()):
                if time.monotonic() >= due:
                    del self._stopped[user]
                    await self._control("POST", f"/users/{user}/player/resume")
            kind = self._draw()
            await self.inject(kind)
            self.counts[kind] += 1
            await asyncio.sleep(self._rng.uniform(1.0, 2.0))

    def _draw(self) -> str:
        """The next kind from a shuffled deck holding each kind ``weight`` times: the mix follows
        the weights, and a run as long as one deck (about 140 s) meets every kind."""
        if not self._deck:
            self._deck = [kind for kind, weight in KINDS.items() for _ in range(weight)]
            self._rng.shuffle(self._deck)
        return self._deck.pop()

    async def inject(self, kind: str) -> None:
        rng = self._rng
        user = rng.choice(self._users)
        match kind:
            case "429 (Retry-After 1-5 s)":
                await self.fault("currently-playing", status=429, retry_after=rng.randint(1, 5))
            case "5xx on currently-playing" | "5xx on any endpoint":
                endpoint = "*" if "any" in kind else "currently-playing"
                status = rng.choice([500, 502, 503])
                await self.fault(endpoint, status=status, times=rng.randint(1, 3))
            case "slow answer (1-3 s)":
                await self.fault(
                    "currently-playing", delay=round(rng.uniform(1, 3), 2), times=rng.randint(1, 3)
                )
            case "hang (server timeout)":
                await self.fault("currently-playing", hang=True)
            case "token endpoint 5xx":
                await self.fault(
                    "token", status=rng.choice([500, 502, 503]), times=rng.randint(1, 2)
                )
                await self._control("POST", "/tokens/expire", {"user_id": user})
            case "token endpoint slow":
                await self.fault("token", delay=round(rng.uniform(1, 3), 2))
                await self._control("POST", "/tokens/expire", {"user_id": user})
            case "token endpoint hang":
                await self.fault("token", hang=True)
                await self._control("POST", "/tokens/expire", {"user_id": user})
            case "expire all access tokens":
                await self._control("POST", "/tokens/expire")
            case "skip":
                await self._control("POST", f"/users/{user}/player/skip")
            case "stop (resume 3-8 s later)":
                await self._control("POST", f"/users/{user}/player/stop")
                self._stopped[user] = time.monotonic() + rng.uniform(3, 8)
            case _:
                raise ValueError(kind)

    async def calm(self, healthy: list[str]) -> None:
        """No more faults: clear the queue, resume every healthy account's player."""
        await self._control("DELETE", "/faults")
        self._stopped.clear()
        for user in healthy:
            await self._control("POST", f"/users/{user}/player/resume")
