"""Cover art fetched into ``data:`` URIs for the SVG card, which cannot load anything itself.

The server fetches URLs an upstream handed it, so the fetch is strict: https on allowlisted hosts
only, no redirects, the image type checked by its magic bytes (never SVG, which can carry
script), a byte cap read without decompression, one deadline for all of it. It never raises: a
card falls back to its placeholder.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter, OrderedDict
from collections.abc import Collection

import httpx

from nowplaying.clock import Clock

__all__ = ["FAILURE_TTL", "SPOTIFY_IMAGE_HOSTS", "CoverFetcher"]

SPOTIFY_IMAGE_HOSTS = (".scdn.co", ".spotifycdn.com")
"""Where Spotify serves album and episode art (``i.scdn.co``, ``image-cdn-ak.spotifycdn.com``)."""

FAILURE_TTL = 300.0
"""How long a failed URL is remembered, so a dead host is not asked on every card."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
_ALLOWED_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})


def _sniff(data: bytes) -> str | None:
    """The image type the bytes actually are, from their magic number."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class CoverFetcher:
    """Turns cover URLs into ``data:image/...;base64`` URIs, or None when it should not or cannot.

    ``allowed_hosts`` entries are exact hosts (``i.scdn.co``), domains whose subdomains are allowed
    (``.scdn.co``), or full origins (``http://127.0.0.1:8000``), the only way to allow plain http.

    ``counts`` tallies ``fetch`` (requests made), ``hit`` (answered from the cache, or by joining a
    fetch already in flight), ``refused`` (URL not allowed, no request) and ``failed`` (a request
    that gave no usable image).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        allowed_hosts: Collection[str],
        clock: Clock,
        max_bytes: int = 300_000,
        timeout: float = 1.5,
        ttl: float = 24 * 3600,
        max_entries: int = 256,
    ) -> None:
        self._http = http
        self._clock = clock
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._ttl = ttl
        self._max_entries = max_entries
        self._hosts: set[str] = set()
        self._domains: list[str] = []
        self._origins: set[tuple[str, str, int]] = set()
        for entry in allowed_hosts:
            if "://" in entry:
                url = httpx.URL(entry)
                self._origins.add((url.scheme, url.host.lower(), _port(url)))
            elif entry.startswith("."):
                self._domains.append(entry.lower())
            else:
                self._hosts.add(entry.lower())
        self._cache: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[str | None]] = {}
        self.counts: Counter[str] = Counter()

    async def data_uri(self, url: str | None) -> str | None:
        """The image at ``url`` as a data URI, from the cache when fresh; None if unusable."""
        if not url:
            return None
        cached = self._cache.get(url)
        if cached is not None:
            expires_at, value = cached
            if self._clock.now() < expires_at:
                self._cache.move_to_end(url)
                self.counts["hit"] += 1
                return value
            del self._cache[url]
        task = self._inflight.get(url)
        if task is not None:
            self.counts["hit"] += 1
        else:
            parsed = self._allowed(url)
            if parsed is None:
                self.counts["refused"] += 1
                return None
            task = asyncio.create_task(self._fetch_and_store(url, parsed))
            self._inflight[url] = task
        # Shielded: a caller that gives up must not cancel the fetch others are waiting on.
        return await asyncio.shield(task)

    def _allowed(self, url: str) -> httpx.URL | None:
        """``url`` parsed, if it points somewhere we agreed to fetch from; else None.

        The URL is parsed once, by httpx, and that parsed value is what gets requested, so the
        check and the request cannot disagree about the host.
        """
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            return None
        if parsed.userinfo or not parsed.host:
            return None
        host = parsed.host.lower()
        if (parsed.scheme, host, _port(parsed)) in self._origins:
            return parsed
        if parsed.scheme != "https" or _port(parsed) != 443:
            return None
        if host in self._hosts or any(host.endswith(d) and host != d for d in self._domains):
            return parsed
        return None

    async def _fetch_and_store(self, key: str, url: httpx.URL) -> str | None:
        try:
            value = await self._fetch(url)
        finally:
            del self._inflight[key]
        self._remember(key, value)
        return value

    async def _fetch(self, url: httpx.URL) -> str | None:
        self.counts["fetch"] += 1
        try:
            # The download's overall bound, beside httpx's per-phase ones: real time, like every
            # HTTP client timeout (it bounds a real socket). The card's budget is on the clock.
            async with asyncio.timeout(self._timeout):
                body, mime = await self._download(url)
        except (httpx.HTTPError, TimeoutError):
            body = mime = None
        if body is None or mime is None:
            self.counts["failed"] += 1
            return None
        return f"data:{mime};base64,{base64.b64encode(body).decode('ascii')}"

    async def _download(self, url: httpx.URL) -> tuple[bytes | None, str | None]:
        """The body and its sniffed type, or ``(None, None)`` if the response is not acceptable."""
        headers = {
            "Accept": "image/jpeg,image/png,image/webp,image/gif",
            "Accept-Encoding": "identity",
        }
        async with self._http.stream(
            "GET", url, headers=headers, follow_redirects=False, timeout=self._timeout
        ) as response:
            if response.status_code != 200:
                return None, None
            declared = response.headers.get("content-type", "").partition(";")[0].strip().lower()
            if declared not in _ALLOWED_TYPES:
                return None, None
            # A compressed body could inflate far past max_bytes; with this refused, the bytes
            # counted below are the bytes on the wire.
            if response.headers.get("content-encoding", "identity").lower() != "identity":
                return None, None
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > self._max_bytes:
                return None, None
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self._max_bytes:
                    return None, None
        mime = _sniff(bytes(body[:12]))
        return (bytes(body), mime) if mime is not None else (None, None)

    def _remember(self, url: str, value: str | None) -> None:
        ttl = self._ttl if value is not None else FAILURE_TTL
        self._cache[url] = (self._clock.now() + ttl, value)
        self._cache.move_to_end(url)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)


def _port(url: httpx.URL) -> int:
    return url.port if url.port is not None else _DEFAULT_PORTS.get(url.scheme, -1)
