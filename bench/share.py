"""Issue 21's figures: the PNG card's render time per theme (in-process, no cache),
``/p/ID.png`` and ``/p/ID/social.png`` against ``/p/ID.svg`` through the card cache, requests per
second in the same run (one server process, the load generator of :mod:`bench.throughput`,
rounds alternated); a change's webhook fan-out to 50 loopback endpoints, and a state's way
through the local Mosquitto to a paho subscriber.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import math
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from harness.servers import nowplaying_server, sign_in
from PIL import Image

from bench.throughput import Trial, _trial
from nowplaying.cards import png
from nowplaying.cards.card import render_card
from nowplaying.cards.options import CardOptions
from nowplaying.cards.themes import Theme
from nowplaying.clock import SystemClock
from nowplaying.crypto import TokenCipher
from nowplaying.engine.snapshot import Snapshot, Status
from nowplaying.models import Item, Kind, NowPlaying
from nowplaying.ops.mqtt import MqttBridge, broker_of
from nowplaying.ops.webhooks import Webhooks, new_secret
from nowplaying.schema import parse_state
from nowplaying.store import Account, SQLiteStore, Webhook

ROUNDS = 3
RENDERS = 30
PATHS = (".svg", ".png", "/social.png")


@dataclass
class Result:
    render_ms: dict[str, float] = field(default_factory=dict)
    """Median milliseconds to rasterise each theme's card (PNG at twice its size)."""
    social_ms: float = 0.0
    svg_ms: float = 0.0
    """Median milliseconds to draw the SVG card itself, for scale."""
    served: dict[str, list[Trial]] = field(default_factory=dict)
    """Trials per path suffix, one per round."""
    hook_each_ms: list[float] = field(default_factory=list)
    """Change emitted -> each of the 50 endpoints received it."""
    hook_all_ms: list[float] = field(default_factory=list)
    """Change emitted -> the last of the 50 received it."""
    mqtt_ms: list[float] = field(default_factory=list)
    """State published -> the subscriber received it (through Mosquitto)."""

    def rps(self, path: str) -> float:
        return statistics.median(t.rps for t in self.served[path])


def _median_ms(draw: object, times: int = RENDERS) -> float:
    assert callable(draw)
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        draw()
        spent.append(time.perf_counter() - started)
    return statistics.median(spent) * 1000


def _renders(result: Result) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (300, 300), (200, 60, 90)).save(buf, "JPEG")
    cover = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    state = parse_state(
        {
            "isPlaying": True,
            "type": "track",
            "title": "Midnight City",
            "artist": "M83",
            "progressMs": 61_000,
            "durationMs": 240_000,
        }
    )
    for theme in Theme:
        svg = render_card(state, CardOptions(theme=theme), cover=cover, now=0.0)
        result.render_ms[str(theme)] = _median_ms(lambda svg=svg: png.rasterise(svg))
    svg = render_card(state, CardOptions(), cover=cover, now=0.0)
    result.social_ms = _median_ms(lambda: png.social(svg))
    result.svg_ms = _median_ms(lambda: render_card(state, CardOptions(), cover=cover, now=0.0))


async def run() -> Result:
    result = Result()
    await _webhook_fanout(result)
    await _mqtt(result)
    await asyncio.to_thread(_renders, result)
    with nowplaying_server(extra_env={"NOWPLAYING_PUBLIC_RATE_PER_SECOND": "0"}) as engine:
        cookie = await sign_in(engine.url)
        async with httpx.AsyncClient(base_url=engine.url, timeout=10) as http:
            published = await http.post(
                "/api/account/publish", headers={"Cookie": cookie, "Origin": engine.url}
            )
            published.raise_for_status()
            public = f"/p/{published.json()['publicId']}"
            for suffix in PATHS:
                if (await http.get(public + suffix)).status_code != 200:
                    raise RuntimeError(f"{public}{suffix} did not answer 200")
        for _ in range(ROUNDS):
            for suffix in PATHS:
                trial = await asyncio.to_thread(_trial, engine, public + suffix, [])
                result.served.setdefault(suffix, []).append(trial)
    return result


def lines(r: Result) -> list[str]:
    renders = sorted(r.render_ms.values())
    out = [
        "10. Shared everywhere (issue 21): PNG cards",
        f"   rasterise one card (resvg, 2x): median {statistics.median(renders):.1f} ms over the"
        f" {len(renders)} themes (min {renders[0]:.1f}, max {renders[-1]:.1f}); the 1200x630"
        f" preview {r.social_ms:.1f} ms; the SVG itself {r.svg_ms:.2f} ms",
        "   served through the card cache (one render per look per step), req/s:",
    ]
    svg = r.rps(".svg")
    for suffix in PATHS:
        rps = r.rps(suffix)
        out.append(f"     /p/ID{suffix:<12}{rps:>9.0f}  ({rps / svg:.2f}x the SVG)")
    out.append(
        f"   webhooks: a change to {HOOKS} loopback endpoints (signed, claimed in SQLite,"
        f" {CHANGES} changes): each delivered p50 {statistics.median(r.hook_each_ms):.0f} ms,"
        f" p95 {_p95(r.hook_each_ms):.0f} ms; all {HOOKS} delivered"
        f" p95 {_p95(r.hook_all_ms):.0f} ms"
    )
    if r.mqtt_ms:
        out.append(
            f"   MQTT: state published -> paho subscriber through Mosquitto ({len(r.mqtt_ms)}):"
            f" p50 {statistics.median(r.mqtt_ms):.1f} ms, p95 {_p95(r.mqtt_ms):.1f} ms"
        )
    out.append("")
    return out


# -- webhook fan-out and MQTT -------------------------------------------------------------------

HOOKS = 50
CHANGES = 20


class _QuietHub:
    """A hub whose accounts never change: the bench emits the changes itself."""

    @contextlib.asynccontextmanager
    async def subscribe(self, account_id: str) -> AsyncIterator[Any]:
        class Never:
            async def get(self) -> Any:
                await asyncio.Event().wait()

        yield Never()


async def _receiver(arrivals: dict[str, list[float]]) -> tuple[asyncio.Server, int]:
    """A loopback HTTP server that answers 204 and notes when each event id reached each path."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                arrivals.setdefault(json.loads(body)["data"]["title"], []).append(
                    time.perf_counter()
                )
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _playing(n: int) -> NowPlaying:
    item = Item(Kind.TRACK, f"Track {n}", ("Artist",), "Album", None, None, 200_000, f"t{n}")
    return NowPlaying(
        is_playing=True, kind=Kind.TRACK, item=item, progress_ms=0, timestamp=time.time()
    )


async def _webhook_fanout(result: Result) -> None:
    arrivals: dict[str, list[float]] = {}
    server, port = await _receiver(arrivals)
    with tempfile.TemporaryDirectory(prefix="np-bench-hooks-") as tmp:
        store = SQLiteStore(f"{tmp}/np.sqlite3", cipher=TokenCipher("bench-" * 6))
        await store.open()
        await store.put_account(Account("bench", "Bench", "refresh", frozenset(), time.time()))
        for i in range(HOOKS):
            hook = Webhook(f"wh{i}", "bench", f"http://127.0.0.1:{port}/{i}", new_secret(), 0.0)
            await store.put_webhook(hook)
        hooks = Webhooks(
            _QuietHub(),
            store,
            SystemClock(),
            allowed_hosts=["127.0.0.1"],  # type: ignore[arg-type]
        )
        await hooks.start()
        try:
            for n in range(CHANGES):
                started = time.perf_counter()
                hooks.emit("bench", "track.started", Snapshot(_playing(n), Status.LIVE, n + 1))
                await hooks.idle()
                got = arrivals.get(f"Track {n}", [])
                if len(got) != HOOKS:
                    raise RuntimeError(f"change {n}: {len(got)} of {HOOKS} deliveries")
                result.hook_each_ms += [(t - started) * 1000 for t in got]
                result.hook_all_ms.append((max(got) - started) * 1000)
        finally:
            await hooks.close()
            await store.close()
            server.close()


async def _mqtt(result: Result) -> None:
    import paho.mqtt.client as paho  # noqa: PLC0415 - the bench's subscriber only
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    prefix = "npbench_" + secrets.token_hex(4)
    seen: dict[str, float] = {}
    ready, arrived = threading.Event(), threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        if not msg.payload:  # the retained messages cleared at the end
            return
        title = json.loads(msg.payload)["attributes"].get("title")
        if title and title not in seen:
            seen[title] = time.perf_counter()
            arrived.set()

    sub = paho.Client(CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.on_subscribe = lambda *_: ready.set()
    sub.connect("127.0.0.1", 1883)
    sub.loop_start()
    sub.subscribe(f"{prefix}/+/state", qos=1)
    ready.wait(5)
    with tempfile.TemporaryDirectory(prefix="np-bench-mqtt-") as tmp:
        store = SQLiteStore(f"{tmp}/np.sqlite3", cipher=TokenCipher("bench-" * 6))
        await store.open()
        bridge = MqttBridge(
            _QuietHub(),
            store,
            SystemClock(),
            broker_of("mqtt://127.0.0.1:1883"),
            prefix=prefix,  # type: ignore[arg-type]
        )
        await bridge.start()
        try:
            for n in range(CHANGES * 5):
                state = Snapshot(_playing(n), Status.LIVE, n + 1).view(time.time())
                arrived.clear()
                started = time.perf_counter()
                bridge.publish_state("bench", state)
                await asyncio.to_thread(arrived.wait, 5)
                if f"Track {n}" in seen:
                    result.mqtt_ms.append((seen[f"Track {n}"] - started) * 1000)
        finally:
            await bridge.close()
            await store.close()
            for topic in (
                f"{prefix}/bench/state",
                f"{prefix}/status",
                f"homeassistant/sensor/{prefix}_bench/config",
            ):
                sub.publish(topic, b"", retain=True)
            sub.disconnect()
            sub.loop_stop()
