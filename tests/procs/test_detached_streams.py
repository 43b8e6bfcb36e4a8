"""Detached event streams under ``nowplaying serve`` (real process, loopback): after its greeting
and first event a stream's connection leaves uvicorn, and the account's group writes to it.
Viewers see the same events as an ASGI-served stream, ``Last-Event-ID`` still holds, the gauge
of open streams counts them until they hang up, and a viewer on HTTP/1.0 is served the ASGI way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from harness.servers import CONTROL, ServerProcess, nowplaying_server, sign_in
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.anyio
TOKEN = "detached-metrics-token-0123456789"
VIEWERS = 40


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    env = {"NOWPLAYING_PUBLIC_RATE_PER_SECOND": "0", "NOWPLAYING_METRICS_TOKEN": TOKEN}
    with nowplaying_server(extra_env=env) as served:
        yield served


async def _published(server: ServerProcess) -> str:
    cookie = await sign_in(server.url)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        published = await http.post(
            "/api/account/publish", headers={"Cookie": cookie, "Origin": server.url}
        )
        return f"/p/{published.raise_for_status().json()['publicId']}/events"


async def _viewers_gauge(server: ServerProcess) -> float:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        text = (await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).text
    for family in text_string_to_metric_families(text):
        if family.name == "nowplaying_sse_viewers":
            return sum(s.value for s in family.samples)
    raise AssertionError("no nowplaying_sse_viewers in /metrics")


class Viewer:
    """A raw-socket viewer: the ids of the events it read, in order."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.got = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None

    async def read(
        self, port: int, path: str, *, last: str | None = None, v10: bool = False
    ) -> None:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        extra = f"Last-Event-ID: {last}\r\n" if last else ""
        version = "1.0" if v10 else "1.1"
        self.writer.write(
            f"GET {path} HTTP/{version}\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode()
        )
        async for line in _lines(reader):
            if line.startswith("id: "):
                self.ids.append(line[4:])
                self.got.set()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _lines(reader: asyncio.StreamReader) -> AsyncIterator[str]:
    """The text lines of a response body, chunk framing (or none, HTTP/1.0) left aside: SSE
    lines never look like a chunk size here, since each starts with a field name or a colon."""
    await reader.readuntil(b"\r\n\r\n")
    while line := await reader.readline():
        yield line.decode().rstrip("\r\n")


async def _until(viewers: list[Viewer], count: int) -> None:
    """Until each viewer has read ``count`` events."""
    async with asyncio.timeout(20):
        for v in viewers:
            while len(v.ids) < count:
                v.got.clear()
                await v.got.wait()


async def test_detached_viewers_get_every_change_and_leave_the_gauge(
    server: ServerProcess,
) -> None:
    """40 viewers get the current state, then a skip, each once; hanging up counts them out."""
    path = await _published(server)
    port = int(server.url.rsplit(":", 1)[1])
    viewers = [Viewer() for _ in range(VIEWERS)]
    tasks = [asyncio.create_task(v.read(port, path)) for v in viewers]
    try:
        await _until(viewers, 1)
        assert await _viewers_gauge(server) == VIEWERS
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            (await http.post(f"{CONTROL}/skip")).raise_for_status()
        await _until(viewers, 2)
        first, second = viewers[0].ids[:2]
        assert int(second) > int(first)
        assert all(v.ids[:2] == [first, second] for v in viewers)
    finally:
        for v in viewers:
            v.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for _ in range(200):  # the hang-ups reach the server soon after
        if await _viewers_gauge(server) == 0:
            break
        await asyncio.sleep(0.05)
    assert await _viewers_gauge(server) == 0


async def test_last_event_id_of_the_current_state_gets_only_later_changes(
    server: ServerProcess,
) -> None:
    """A viewer that already has the current version is not sent it again; the next is."""
    path = await _published(server)
    port = int(server.url.rsplit(":", 1)[1])
    first = Viewer()
    reading = asyncio.create_task(first.read(port, path))
    again = Viewer()
    rejoined: asyncio.Task[None] | None = None
    try:
        await _until([first], 1)
        current = first.ids[0]
        rejoined = asyncio.create_task(again.read(port, path, last=current))
        for _ in range(200):  # connected and detached: counted in the gauge
            if await _viewers_gauge(server) == 2:
                break
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            (await http.post(f"{CONTROL}/skip")).raise_for_status()
        await _until([again], 1)
        await _until([first], 2)
        assert again.ids[0] == first.ids[1]  # the skip's event first: the current one not resent
    finally:
        for v in (first, again):
            v.close()
        for t in (reading, rejoined):
            if t is not None:
                t.cancel()
        await asyncio.gather(reading, *([rejoined] if rejoined else []), return_exceptions=True)


async def test_an_http_10_viewer_is_served_the_asgi_way(server: ServerProcess) -> None:
    """No chunked framing on HTTP/1.0: that stream is not detached, and still gets changes."""
    path = await _published(server)
    port = int(server.url.rsplit(":", 1)[1])
    old = Viewer()
    reading = asyncio.create_task(old.read(port, path, v10=True))
    try:
        await _until([old], 1)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            (await http.post(f"{CONTROL}/skip")).raise_for_status()
        await _until([old], 2)
    finally:
        old.close()
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
