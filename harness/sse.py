"""Read Server-Sent Events from an ASGI app in-process (httpx's ASGITransport buffers bodies)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message


@dataclass
class Event:
    id: str | None
    data: Any


@dataclass
class SSEReader:
    """One open SSE connection; ``events`` fills as the app sends."""

    app: ASGIApp
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    comments: int = 0
    retries: list[int] = field(default_factory=list)
    """Every ``retry:`` the server sent (the preamble's, then a draining stream's hint)."""
    ended: bool = False
    """The server finished the response (the stream ended on its side)."""
    _buffer: str = ""
    _task: asyncio.Task[None] | None = None
    _disconnect: asyncio.Event = field(default_factory=asyncio.Event)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> SSEReader:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "https",
            "path": self.path,
            "raw_path": self.path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in self.headers.items()],
            "server": ("np.test", 443),
            "client": ("127.0.0.1", 50000),
        }

        async def run() -> None:
            await self.app(scope, self._receive, self._send)

        self._task = asyncio.create_task(run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._disconnect.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 5)

    async def _receive(self) -> Message:
        if not getattr(self, "_sent_request", False):
            self._sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._disconnect.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.response_headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            self._buffer += message.get("body", b"").decode()
            while "\n\n" in self._buffer:
                block, self._buffer = self._buffer.split("\n\n", 1)
                self._parse(block)
            if not message.get("more_body", False):
                self.ended = True
                self._disconnect.set()
            self._arrived.set()

    def _parse(self, block: str) -> None:
        ev_id, data = None, []
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments += 1
            elif line.startswith("retry: "):
                self.retries.append(int(line[7:]))
            elif line.startswith("id: "):
                ev_id = line[4:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            self.events.append(Event(ev_id, json.loads("\n".join(data))))

    async def wait_for(self, count: int, seconds: float = 5.0) -> list[Event]:
        """Wait (real time, bounded) until ``count`` events have arrived."""
        async with asyncio.timeout(seconds):
            while len(self.events) < count and not self._disconnect.is_set():
                self._arrived.clear()
                await self._arrived.wait()
        return self.events

    async def wait_ended(self, seconds: float = 5.0) -> None:
        """Wait (real time, bounded) until the server ends the response."""
        async with asyncio.timeout(seconds):
            while not self.ended:
                self._arrived.clear()
                await self._arrived.wait()

    async def wait_status(self, seconds: float = 5.0) -> int:
        async with asyncio.timeout(seconds):
            while not self.status:
                self._arrived.clear()
                await asyncio.sleep(0.01)
        return self.status
