"""Track-change webhooks across instances, with two real ``nowplaying serve`` processes on
PostgreSQL and Redis (:func:`harness.cluster.cluster`) and a real receiver checking every
delivery with the ``standardwebhooks`` package: each change is delivered once, by one instance."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks
from harness.cluster import Viewer, cluster, login, sim_calls, wait_for, watch
from harness.live_server import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
CHANGES = 3


class Receiver:
    """A loopback HTTP server recording each POST (headers, body); answers 204."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def count(self) -> int:
        with self.lock:
            return len(self.got)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with rec.lock:
                rec.got.append((dict(self.headers.items()), body))
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", rec.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


async def test_each_change_is_delivered_once_across_two_instances(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Both instances follow the account (a viewer on each) and know the webhook; three track
    changes give exactly three deliveries, distinct, each verified by ``standardwebhooks``, and
    no more arrive while the instances poll on."""
    env = {"NOWPLAYING_WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]'}
    with cluster(tmp_path / "logs", instances=2, users=1, poll=1.0, env=env) as c:
        cookie = await login(c.public, "user1")
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as http:
            created = await http.post(
                f"{c.public}/api/account/webhooks",
                json={"url": receiver.url},
                headers={"Cookie": cookie, "Origin": c.public},
            )
            assert created.status_code == 201, created.text
            secret = created.json()["secret"]
            for i in range(2):  # started again, each instance loads the webhook at once
                await asyncio.to_thread(c.restart, i)
            viewers = [Viewer(instance=i, account="user1") for i in range(2)]
            tasks = [asyncio.create_task(watch(http, c, v, cookie)) for v in viewers]
            try:

                async def both_watching() -> bool:
                    return all(v.events for v in viewers)

                await wait_for(both_watching, 30, "a first event on each instance")
                for n in range(1, CHANGES + 1):
                    await asyncio.to_thread(c.control, "users/user1/player/skip")

                    async def delivered(n: int = n) -> bool:
                        return receiver.count() >= n

                    await wait_for(delivered, 20, f"delivery {n}")
                polls = (await sim_calls(http, c)).get("currently-playing", 0)

                async def polled_on() -> bool:
                    calls = await sim_calls(http, c)
                    return calls.get("currently-playing", 0) >= polls + 3

                await wait_for(polled_on, 20, "three more polls")
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    verifier = standardwebhooks.Webhook(secret)
    payloads = [verifier.verify(body, headers) for headers, body in receiver.got]
    assert [p["type"] for p in payloads] == ["track.started"] * CHANGES, payloads
    assert len({headers["webhook-id"] for headers, _ in receiver.got}) == CHANGES
    titles = [json.loads(body)["data"]["title"] for _, body in receiver.got]
    assert len(set(titles)) == CHANGES, titles
    assert all(v.error is None for v in viewers), [v.error for v in viewers]
