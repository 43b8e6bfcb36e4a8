"""Cover art fetched into ``data:`` URIs for the SVG card, which cannot load anything itself.

The server fetches URLs an upstream handed it, so the fetch is strict: https on allowlisted hosts
only, the image type checked by its magic bytes (never SVG, which can carry script), a byte cap
read without decompression, one deadline for all of it. It never raises: a card falls back to its
placeholder.

Redirects are followed only where the answering origin is listed in ``redirectors`` (the Cover
Art Archive, whose ``/release/{mbid}/front-250`` is a 307 to archive.org, and archive.org, which
sends that on to one of its data nodes), at most :data:`MAX_REDIRECTS` hops, each target checked
against the same allow-list as a first URL (so a redirect cannot lead to plain http, another
port, a private host or anywhere not listed), all within the one deadline and byte cap.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter, OrderedDict
from collections.abc import Collection

import httpx

from nowplaying.clock import Clock

__all__ = [
    "ARCHIVE_HOSTS",
    "FAILURE_TTL",
    "LASTFM_IMAGE_HOSTS",
    "MAX_REDIRECTS",
    "SPOTIFY_IMAGE_HOSTS",
    "CoverFetcher",
]

SPOTIFY_IMAGE_HOSTS = (".scdn.co", ".spotifycdn.com")
"""Where Spotify serves album and episode art (``i.scdn.co``, ``image-cdn-ak.spotifycdn.com``)."""
LASTFM_IMAGE_HOSTS = ("lastfm.freetls.fastly.net",)
"""Where Last.fm serves album art (``/i/u/300x300/{id}.jpg``)."""
ARCHIVE_HOSTS = ("archive.org", ".archive.org")
"""Where the Cover Art Archive's redirect leads: archive.org, then one of its data nodes
(``ia800100.us.archive.org``)."""
MAX_REDIRECTS = 2
"""The Cover Art Archive's 307 to archive.org and archive.org's 302 to its data node."""
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HEADERS = {"Accept": "image/jpeg,image/png,image/webp,image/gif", "Accept-Encoding": "identity"}

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

    ``redirectors`` (the same forms) are the ones whose redirects are followed, within the
    allow-list. ``counts`` tallies ``fetch`` (requests made), ``hit`` (answered from the cache,
    or by joining a fetch already in flight), ``refused`` (URL not allowed, no request) and
    ``failed`` (a request that gave no usable image).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        allowed_hosts: Collection[str],
        clock: Clock,
        redirectors: Collection[str] = (),
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
        self._allow = _HostList(allowed_hosts)
        self._redirectors = _HostList(redirectors)
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

    def allows(self, url: str | None) -> bool:
        """Whether ``url`` points somewhere covers may be fetched from (pushed art is kept only
        then, so a viewer's browser is not sent anywhere else either)."""
        return bool(url) and self._allowed(str(url)) is not None

    def _allowed(self, url: str | httpx.URL) -> httpx.URL | None:
        """``url`` parsed, if it points somewhere we agreed to fetch from; else None.

        The URL is parsed once, by httpx, and that parsed value is what gets requested, so the
        check and the request cannot disagree about the host.
        """
        try:
            parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        except httpx.InvalidURL:
            return None
        return parsed if self._allow.holds(parsed) else None

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
        for _ in range(MAX_REDIRECTS + 1):
            async with self._http.stream(
                "GET", url, headers=_HEADERS, follow_redirects=False, timeout=self._timeout
            ) as response:
                if response.status_code == 200:
                    body = await self._body(response)
                    break
                if response.status_code not in _REDIRECTS or not self._redirectors.holds(url):
                    return None, None
                target = self._next(url, response.headers.get("location", ""))
            if target is None:
                return None, None
            url = target
        else:
            return None, None
        mime = _sniff(body[:12]) if body is not None else None
        return (body, mime) if mime is not None else (None, None)

    def _next(self, url: httpx.URL, location: str) -> httpx.URL | None:
        """Where a redirect from ``url`` to ``location`` leads, if the allow-list holds it."""
        try:
            return self._allowed(url.join(location)) if location else None
        except httpx.InvalidURL:
            return None

    async def _body(self, response: httpx.Response) -> bytes | None:
        """A 200's image bytes, if its headers and size are acceptable."""
        declared = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if declared not in _ALLOWED_TYPES:
            return None
        # A compressed body could inflate far past max_bytes; with this refused, the bytes
        # counted below are the bytes on the wire.
        if response.headers.get("content-encoding", "identity").lower() != "identity":
            return None
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > self._max_bytes:
            return None
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self._max_bytes:
                return None
        return bytes(body)

    def _remember(self, url: str, value: str | None) -> None:
        ttl = self._ttl if value is not None else FAILURE_TTL
        self._cache[url] = (self._clock.now() + ttl, value)
        self._cache.move_to_end(url)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)


class _HostList:
    """Exact hosts (``i.scdn.co``, https only), domains whose subdomains are listed
    (``.scdn.co``, https only) and full origins (``http://127.0.0.1:8000``)."""

    def __init__(self, entries: Collection[str]) -> None:
        self._hosts: set[str] = set()
        self._domains: list[str] = []
        self._origins: set[tuple[str, str, int]] = set()
        for entry in entries:
            if "://" in entry:
                url = httpx.URL(entry)
                self._origins.add((url.scheme, url.host.lower(), _port(url)))
            elif entry.startswith("."):
                self._domains.append(entry.lower())
            else:
                self._hosts.add(entry.lower())

    def holds(self, url: httpx.URL) -> bool:
        """Whether ``url``'s origin is listed (never with user info)."""
        if url.userinfo or not url.host:
            return False
        host = url.host.lower()
        if (url.scheme, host, _port(url)) in self._origins:
            return True
        if url.scheme != "https" or _port(url) != 443:
            return False
        return host in self._hosts or any(host.endswith(d) and host != d for d in self._domains)


def _port(url: httpx.URL) -> int:
    return url.port if url.port is not None else _DEFAULT_PORTS.get(url.scheme, -1)
