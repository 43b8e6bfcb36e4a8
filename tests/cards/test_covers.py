"""CoverFetcher: only allowlisted images, bounded in size and time, cached and single-flight."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from nowplaying.cards.covers import (
    ARCHIVE_HOSTS,
    FAILURE_TTL,
    MAX_REDIRECTS,
    SPOTIFY_IMAGE_HOSTS,
    CoverFetcher,
)
from nowplaying.clock import FakeClock
from nowplaying.simulator import Simulator

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
JPEG = b"\xff\xd8\xff\xe0" + bytes(40)
COVER = "https://i.scdn.co/image/ab67616d0000b273"
ALLOWED = (*SPOTIFY_IMAGE_HOSTS, "http://127.0.0.1:8000")

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class Upstream:
    """A fake image host that counts the requests it gets."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self._handler = handler

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self._handler is not None:
            return await self._handler(request)
        return httpx.Response(200, headers={"content-type": "image/png"}, content=PNG)


def make_fetcher(
    upstream: Upstream,
    clock: FakeClock,
    *,
    max_bytes: int = 300_000,
    timeout: float = 1.5,
    ttl: float = 24 * 3600,
    max_entries: int = 256,
) -> tuple[CoverFetcher, httpx.AsyncClient]:
    """A fetcher allowing Spotify's CDN and the local simulator, over ``upstream``."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
    fetcher = CoverFetcher(
        http,
        allowed_hosts=ALLOWED,
        clock=clock,
        max_bytes=max_bytes,
        timeout=timeout,
        ttl=ttl,
        max_entries=max_entries,
    )
    return fetcher, http


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
async def fetcher(upstream: Upstream, clock: FakeClock) -> AsyncIterator[CoverFetcher]:
    fetcher, http = make_fetcher(upstream, clock)
    async with http:
        yield fetcher


def respond(
    status: int = 200, *, content: bytes = PNG, headers: dict[str, str] | None = None
) -> Handler:
    """A handler that always gives the same response."""

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, content=content)

    return handler


@pytest.mark.anyio
async def test_allowed_image_becomes_data_uri(fetcher: CoverFetcher, upstream: Upstream) -> None:
    """An image on Spotify's CDN comes back base64-encoded in a data URI."""
    uri = await fetcher.data_uri(COVER)
    assert uri == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert len(upstream.requests) == 1
    assert fetcher.counts["fetch"] == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url",
    [
        "https://i.scdn.co/image/x",
        "https://I.SCDN.CO/image/x",
        "https://image-cdn-ak.spotifycdn.com/image/x",
        "https://mosaic.scdn.co/640/x",
        "http://127.0.0.1:8000/covers/1.png",
    ],
)
async def test_allowlisted_urls_are_fetched(
    fetcher: CoverFetcher, upstream: Upstream, url: str
) -> None:
    """Subdomains of a dotted entry, and an exact origin, are fetched."""
    assert await fetcher.data_uri(url) is not None
    assert len(upstream.requests) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url",
    [
        "http://i.scdn.co/image/x",
        "https://example.com/image.png",
        "https://i.scdn.co.evil.example/x",
        "https://evilscdn.co/x",
        "https://scdn.co/x",
        "https://user:pw@i.scdn.co/x",
        "https://i.scdn.co:8443/x",
        "https://127.0.0.1:8000/covers/1.png",
        "http://127.0.0.1:8001/covers/1.png",
        "http://localhost:8000/covers/1.png",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "file:///etc/passwd",
        "https://exa mple.com/\x00",
        "not a url",
    ],
)
async def test_other_urls_are_refused_without_a_request(
    fetcher: CoverFetcher, upstream: Upstream, url: str
) -> None:
    """Anything off the allowlist gives None and never reaches the network."""
    assert await fetcher.data_uri(url) is None
    assert upstream.requests == []
    assert fetcher.counts["refused"] == 1


@pytest.mark.anyio
async def test_no_url_gives_none(fetcher: CoverFetcher, upstream: Upstream) -> None:
    """A missing cover URL is simply no cover."""
    assert await fetcher.data_uri(None) is None
    assert await fetcher.data_uri("") is None
    assert upstream.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>'),
        ("text/html", b"<html></html>"),
        ("application/octet-stream", PNG),
        ("", PNG),
        ("image/png", b"<html>not really a png</html>"),
    ],
)
async def test_non_images_and_svg_are_refused(
    clock: FakeClock, content_type: str, content: bytes
) -> None:
    """Only JPEG/PNG/WebP/GIF, by header and by magic bytes; an SVG could carry script."""
    fetcher, http = make_fetcher(
        Upstream(respond(content=content, headers={"content-type": content_type})), clock
    )
    async with http:
        assert await fetcher.data_uri(COVER) is None
    assert fetcher.counts["failed"] == 1


@pytest.mark.anyio
async def test_type_comes_from_the_bytes(clock: FakeClock) -> None:
    """A JPEG served as image/png is labelled by what it is."""
    fetcher, http = make_fetcher(
        Upstream(respond(content=JPEG, headers={"content-type": "image/png"})), clock
    )
    async with http:
        uri = await fetcher.data_uri(COVER)
    assert uri is not None and uri.startswith("data:image/jpeg;base64,")


@pytest.mark.anyio
async def test_error_status_gives_none(clock: FakeClock) -> None:
    """A 404 is no cover, not an exception."""
    fetcher, http = make_fetcher(
        Upstream(respond(404, headers={"content-type": "image/png"})), clock
    )
    async with http:
        assert await fetcher.data_uri(COVER) is None


@pytest.mark.anyio
async def test_redirects_are_not_followed(clock: FakeClock) -> None:
    """A redirect from a host not listed as a redirector, even to an allowed host, is not
    followed."""
    upstream = Upstream(
        respond(302, content=b"", headers={"location": "https://i.scdn.co/elsewhere"})
    )
    fetcher, http = make_fetcher(upstream, clock)
    async with http:
        assert await fetcher.data_uri(COVER) is None
    assert len(upstream.requests) == 1


CAA = "https://coverartarchive.org"
RELEASE = "76df3287-6cda-33eb-8e9a-044b5e15ffdd"
FRONT = f"{CAA}/release/{RELEASE}/front-250"
ON_ARCHIVE = f"https://archive.org/download/mbid-{RELEASE}/mbid-{RELEASE}-1_thumb250.jpg"
ON_NODE = f"https://ia800100.us.archive.org/1/items/mbid-{RELEASE}/thumb250.jpg"


def hops(routes: dict[str, str]) -> Handler:
    """Redirects from each URL in ``routes`` to its value; an image anywhere else."""

    async def handler(request: httpx.Request) -> httpx.Response:
        target = routes.get(str(request.url))
        if target is not None:
            return httpx.Response(307, headers={"location": target})
        return httpx.Response(200, headers={"content-type": "image/jpeg"}, content=JPEG)

    return handler


def archive_fetcher(upstream: Upstream, clock: FakeClock) -> tuple[CoverFetcher, httpx.AsyncClient]:
    """A fetcher as the server builds it: the archive and archive.org allowed and redirecting."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
    allowed = (*ALLOWED, *ARCHIVE_HOSTS, CAA)
    return CoverFetcher(
        http, allowed_hosts=allowed, redirectors=(CAA, *ARCHIVE_HOSTS), clock=clock
    ), http


@pytest.mark.anyio
async def test_the_archives_two_redirects_are_followed(clock: FakeClock) -> None:
    """The Cover Art Archive's 307 to archive.org and its 302 to a data node lead to the image."""
    upstream = Upstream(hops({FRONT: ON_ARCHIVE, ON_ARCHIVE: ON_NODE}))
    fetcher, http = archive_fetcher(upstream, clock)
    async with http:
        assert (
            await fetcher.data_uri(FRONT)
            == "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()
        )
    assert [str(r.url) for r in upstream.requests] == [FRONT, ON_ARCHIVE, ON_NODE]
    assert all(r.headers["accept-encoding"] == "identity" for r in upstream.requests)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "target",
    [
        "https://example.com/cover.jpg",
        "http://archive.org/download/x.jpg",
        "https://archive.org:8443/download/x.jpg",
        "https://user:pw@archive.org/download/x.jpg",
        "https://archive.org.evil.example/x.jpg",
        "http://127.0.0.1:8001/covers/1.png",
        "file:///etc/passwd",
    ],
)
async def test_a_redirect_off_the_allow_list_is_not_followed(clock: FakeClock, target: str) -> None:
    """A redirect is followed only to where a first URL could go: nothing else is asked."""
    upstream = Upstream(hops({FRONT: target}))
    fetcher, http = archive_fetcher(upstream, clock)
    async with http:
        assert await fetcher.data_uri(FRONT) is None
    assert [str(r.url) for r in upstream.requests] == [FRONT]
    assert fetcher.counts["failed"] == 1


@pytest.mark.anyio
async def test_a_third_redirect_is_not_followed(clock: FakeClock) -> None:
    """At most two hops (the archive's and archive.org's), so a loop ends."""
    node2 = ON_NODE + "?again"
    upstream = Upstream(hops({FRONT: ON_ARCHIVE, ON_ARCHIVE: ON_NODE, ON_NODE: node2}))
    fetcher, http = archive_fetcher(upstream, clock)
    async with http:
        assert await fetcher.data_uri(FRONT) is None
    assert len(upstream.requests) == MAX_REDIRECTS + 1


@pytest.mark.anyio
async def test_only_redirectors_redirect(clock: FakeClock) -> None:
    """Spotify's CDN is allowed but no redirector: its redirect to archive.org is not followed."""
    upstream = Upstream(hops({COVER: ON_ARCHIVE}))
    fetcher, http = archive_fetcher(upstream, clock)
    async with http:
        assert await fetcher.data_uri(COVER) is None
    assert len(upstream.requests) == 1


@pytest.mark.anyio
async def test_a_release_without_cover_is_none(clock: FakeClock) -> None:
    """The archive's 404 gives the placeholder (None), remembered as a failure."""
    upstream = Upstream(respond(404, content=b"No cover art found"))
    fetcher, http = archive_fetcher(upstream, clock)
    async with http:
        assert await fetcher.data_uri(FRONT) is None
        assert await fetcher.data_uri(FRONT) is None
    assert len(upstream.requests) == 1


@pytest.mark.anyio
async def test_the_simulated_archive_gives_a_cover(clock: FakeClock) -> None:
    """Through the simulator's Cover Art Archive (two hops), as demo mode fetches it."""
    sim = Simulator(clock=clock)
    base = "http://sim.test"
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app))
    fetcher = CoverFetcher(http, allowed_hosts=(base,), redirectors=(base,), clock=clock)
    async with http:
        uri = await fetcher.data_uri(f"{base}/coverart/release/{RELEASE}/front-250")
        sim.no_cover.add(RELEASE.replace("76", "77", 1))
        missing = await fetcher.data_uri(
            f"{base}/coverart/release/{RELEASE.replace('76', '77', 1)}/front-250"
        )
    assert uri is not None and uri.startswith("data:image/png;base64,")
    assert missing is None
    assert (sim.calls["coverart"], sim.calls["archive"], sim.calls["archive_node"]) == (2, 1, 1)


@pytest.mark.anyio
async def test_allows_says_what_may_be_fetched(fetcher: CoverFetcher, upstream: Upstream) -> None:
    """``allows`` (what pushed art is held to) agrees with the fetch rules, with no request."""
    assert fetcher.allows(COVER)
    assert not fetcher.allows("https://example.com/a.jpg")
    assert not fetcher.allows("http://i.scdn.co/a.jpg")
    assert not fetcher.allows(None)
    assert upstream.requests == []


@pytest.mark.anyio
async def test_declared_oversize_is_refused(clock: FakeClock) -> None:
    """A body over max_bytes gives None."""
    fetcher, http = make_fetcher(
        Upstream(respond(content=PNG + bytes(200), headers={"content-type": "image/png"})),
        clock,
        max_bytes=100,
    )
    async with http:
        assert await fetcher.data_uri(COVER) is None


@pytest.mark.anyio
async def test_endless_body_is_cut_off(clock: FakeClock) -> None:
    """A streamed body with no length stops being read once it passes max_bytes."""
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield PNG
        while True:
            sent += 1
            yield bytes(64)

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "image/png"}, content=endless())

    fetcher, http = make_fetcher(Upstream(handler), clock, max_bytes=1000)
    async with http:
        assert await fetcher.data_uri(COVER) is None
    assert sent < 20


@pytest.mark.anyio
async def test_compressed_body_is_refused(clock: FakeClock) -> None:
    """A content-encoded body is refused: it could inflate past the size limit."""
    fetcher, http = make_fetcher(
        Upstream(respond(headers={"content-type": "image/png", "content-encoding": "gzip"})), clock
    )
    async with http:
        assert await fetcher.data_uri(COVER) is None


@pytest.mark.anyio
async def test_hung_host_gives_up_at_the_deadline(clock: FakeClock) -> None:
    """A host slower than the timeout yields None instead of its (late) image."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(1)
        return httpx.Response(200, headers={"content-type": "image/png"}, content=PNG)

    fetcher, http = make_fetcher(Upstream(slow), clock, timeout=0.05)
    async with http:
        assert await fetcher.data_uri(COVER) is None
    assert fetcher.counts["failed"] == 1


@pytest.mark.anyio
async def test_network_error_gives_none(clock: FakeClock) -> None:
    """A connection error is swallowed and counted as a failure."""

    async def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    fetcher, http = make_fetcher(Upstream(refuse), clock)
    async with http:
        assert await fetcher.data_uri(COVER) is None
    assert fetcher.counts["failed"] == 1


@pytest.mark.anyio
async def test_success_is_cached_until_ttl(upstream: Upstream, clock: FakeClock) -> None:
    """A fetched cover is served from the cache until its TTL passes."""
    fetcher, http = make_fetcher(upstream, clock, ttl=600)
    async with http:
        first = await fetcher.data_uri(COVER)
        await clock.advance(599)
        assert await fetcher.data_uri(COVER) == first
        assert len(upstream.requests) == 1
        await clock.advance(2)
        assert await fetcher.data_uri(COVER) == first
    assert len(upstream.requests) == 2
    assert fetcher.counts == {"fetch": 2, "hit": 1}


@pytest.mark.anyio
async def test_failure_is_cached_for_five_minutes(clock: FakeClock) -> None:
    """A dead host is asked again only after FAILURE_TTL."""
    upstream = Upstream(respond(503))
    fetcher, http = make_fetcher(upstream, clock)
    async with http:
        assert await fetcher.data_uri(COVER) is None
        await clock.advance(FAILURE_TTL - 1)
        assert await fetcher.data_uri(COVER) is None
        assert len(upstream.requests) == 1
        await clock.advance(2)
        assert await fetcher.data_uri(COVER) is None
    assert len(upstream.requests) == 2


@pytest.mark.anyio
async def test_cache_is_bounded(upstream: Upstream, clock: FakeClock) -> None:
    """Past max_entries the least recently used cover is forgotten."""
    fetcher, http = make_fetcher(upstream, clock, max_entries=2)
    async with http:
        for name in ("a", "b", "c", "c", "a"):
            await fetcher.data_uri(f"https://i.scdn.co/image/{name}")
    assert [r.url.path for r in upstream.requests] == [
        "/image/a",
        "/image/b",
        "/image/c",
        "/image/a",
    ]


@pytest.mark.anyio
async def test_concurrent_requests_share_one_fetch(clock: FakeClock) -> None:
    """Many cards asking for the same cover at once cause one upstream request."""
    release = asyncio.Event()

    async def gated(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, headers={"content-type": "image/png"}, content=PNG)

    upstream = Upstream(gated)
    fetcher, http = make_fetcher(upstream, clock)
    async with http:
        waiting = [asyncio.create_task(fetcher.data_uri(COVER)) for _ in range(5)]
        await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(*waiting)
    assert len(set(results)) == 1 and results[0] is not None
    assert len(upstream.requests) == 1
    assert fetcher.counts["fetch"] == 1


@pytest.mark.anyio
async def test_cancelled_caller_does_not_cancel_shared_fetch(clock: FakeClock) -> None:
    """One caller giving up leaves the fetch running for the others, and it is cached."""
    release = asyncio.Event()

    async def gated(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, headers={"content-type": "image/png"}, content=PNG)

    upstream = Upstream(gated)
    fetcher, http = make_fetcher(upstream, clock)
    async with http:
        quitter = asyncio.create_task(fetcher.data_uri(COVER))
        stayer = asyncio.create_task(fetcher.data_uri(COVER))
        await asyncio.sleep(0)
        quitter.cancel()
        release.set()
        assert await stayer is not None
        assert await fetcher.data_uri(COVER) is not None
    assert quitter.cancelled()
    assert len(upstream.requests) == 1
