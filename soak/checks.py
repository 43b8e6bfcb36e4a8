"""What the soak verifies at the end: each account's final state, the stored refresh tokens, the
server's log. Each check is a :class:`Check` with a one-line verdict and the evidence.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from nowplaying.crypto import TokenCipher
from nowplaying.store import Pause
from nowplaying.store.sqlite import SQLiteStore
from soak.procs import CLIENT_ID, CLIENT_SECRET, SECRET_KEY
from soak.viewers import SseViewer


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Final:
    """One account at the end, as a viewer sees it."""

    api_status: int
    api: dict[str, Any]
    public: dict[str, Any] | None  # the public JSON, when published

    def live(self) -> bool:
        return self.api_status == 200 and "isPlaying" in self.api and not self.api.get("stale")

    def reconnect(self) -> bool:
        public_ok = self.public is None or self.public.get("error") == "reconnect_required"
        return (
            self.api_status == 401 and self.api.get("error") == "reconnect_required" and public_ok
        )


async def final_states(
    http: httpx.AsyncClient, base: str, cookies: dict[str, str], public_ids: dict[str, str]
) -> dict[str, Final]:
    out = {}
    for user, cookie in cookies.items():
        r = await http.get(f"{base}/api/spotify", headers={"Cookie": cookie}, timeout=10)
        public = None
        if user in public_ids:
            p = await http.get(f"{base}/p/{public_ids[user]}.json", timeout=10)
            public = p.json()
        out[user] = Final(r.status_code, r.json(), public)
    return out


def viewers_settled(viewers: list[SseViewer], revoked: set[str]) -> bool:
    """Every SSE viewer's last event: live data (healthy) or reconnect_required (revoked)."""
    for v in viewers:
        last = v.last or {}
        if v.target.account in revoked:
            if v.refused is None and last.get("error") != "reconnect_required":
                return False
        elif "error" in last or last.get("stale") or v.refused is not None:
            return False
    return True


async def settle(
    http: httpx.AsyncClient,
    base: str,
    cookies: dict[str, str],
    public_ids: dict[str, str],
    *,
    revoked: set[str],
    viewers: list[SseViewer],
    seconds: float,
) -> tuple[float | None, dict[str, Final]]:
    """Wait (at most ``seconds``) until every account and viewer shows its expected end state."""
    started = time.monotonic()
    while True:
        states = await final_states(http, base, cookies, public_ids)
        done = all(
            (s.reconnect() if user in revoked else s.live()) for user, s in states.items()
        ) and viewers_settled(viewers, revoked)
        elapsed = time.monotonic() - started
        if done:
            return elapsed, states
        if elapsed >= seconds:
            return None, states
        await asyncio.sleep(0.5)


# -- refresh tokens ----------------------------------------------------------------------------


@dataclass
class Stored:
    status: str
    refresh_token: str
    refresh_status: int = 0
    refresh_error: str = ""


async def stored_tokens(db: Path) -> dict[str, Stored]:
    """Every account in the server's SQLite file, its refresh token decrypted."""
    store = SQLiteStore(db, cipher=TokenCipher(SECRET_KEY))
    await store.open()
    try:
        return {a.id: Stored(str(a.status), a.refresh_token) for a in await store.list_accounts()}
    finally:
        await store.close()


async def end_stored_pause(db: Path) -> None:
    """End the stored app-wide pause (server stopped): replace it with one that has passed.

    What an operator does once Spotify has lifted a quota lockout early; the soak cannot wait
    the hour out. It goes through the store, so it is the pause the server restores at start.
    """
    store = SQLiteStore(db, cipher=TokenCipher(SECRET_KEY))
    await store.open()
    try:
        stored = await store.get_pause()
        if stored is not None:
            await store.set_pause(Pause(0.0, stored.reason))
    finally:
        await store.close()


async def try_refresh(http: httpx.AsyncClient, sim_url: str, stored: Stored) -> None:
    """Refresh with the stored token at the simulator (which rotates it: only at the very end)."""
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    r = await http.post(
        f"{sim_url}/api/token",
        data={"grant_type": "refresh_token", "refresh_token": stored.refresh_token},
        headers={"Authorization": f"Basic {basic}"},
        timeout=10,
    )
    stored.refresh_status = r.status_code
    if r.status_code != 200:
        body = r.json()
        stored.refresh_error = f"{body.get('error')}: {body.get('error_description')}"


# -- the server's log --------------------------------------------------------------------------

_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ (?P<level>[A-Z]+) (?P<name>[\w.]+): (?P<msg>.*)$")
_BAD = ("Traceback", "Exception in ASGI", "unhandled", "ERROR", "CRITICAL")
# Logged at ERROR on purpose, and only for the quota 429 the soaks inject themselves.
_EXPECTED = ("Spotify's quota is exhausted (QUOTA_EXCEEDED)",)
MARKERS = ("invalid_grant", "Refresh token revoked", "reconnect")


@dataclass
class LogScan:
    messages: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    markers: Counter[str] = field(default_factory=Counter)
    lines: int = 0


def scan_log(path: Path) -> LogScan:
    """Server log lines grouped by message (numbers masked); errors and token markers flagged."""
    scan = LogScan()
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("--- soak:") or not line.strip():
            continue
        scan.lines += 1
        m = _LINE.match(line)
        key = f"{m['level']} {m['name']}: {m['msg']}" if m else line.strip()
        scan.messages[re.sub(r"\d+(\.\d+)?", "N", key)[:160]] += 1
        expected = any(e in line for e in _EXPECTED)
        if any(b in line for b in _BAD) and not expected and len(scan.bad) < 20:
            scan.bad.append(line[:300])
        for marker in MARKERS:
            if marker.lower() in line.lower():
                scan.markers[marker] += 1
    return scan
