"""deploy/pushpin/: Debian's Pushpin, run with the shipped files, in front of a real
``nowplaying serve`` in GRIP mode: viewers through it get the same stream as direct ones (headers,
events, ids, ``Last-Event-ID``), each change reaches them, and a restart of Pushpin is survived;
two Pushpin instances in front of one server each get every change once, and one restarting
stops nothing for the other's viewers."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bench import grip
from bench.fanout import CHANGES
from harness.eventsource import EventSource, close_all
from harness.helpers import ONE_ADDRESS_AUDIENCE
from harness.live_server import free_port
from harness.pushpin import Pushpin, grip_settings, run_pushpin
from harness.servers import CONTROL, ServerProcess, nowplaying_server, published_events

pytestmark = pytest.mark.anyio

WAIT = 30.0
"""Bound on any one wait for an event (the poll runs every second)."""
STREAMS = httpx.Timeout(WAIT, read=60.0)
"""A stream is never silent for long: the heartbeat comes every 15 s."""
VIEWER_HEADERS = (
    "content-type",
    "cache-control",
    "access-control-allow-origin",
    "x-accel-buffering",
    "x-content-type-options",
    "referrer-policy",
    "content-security-policy",
    "x-frame-options",
    "cross-origin-opener-policy",
)


@pytest.fixture
def origin_port() -> int:
    return free_port()


@pytest.fixture
def pushpin(origin_port: int) -> Iterator[Pushpin]:
    with run_pushpin(f"127.0.0.1:{origin_port}") as running:
        yield running


@pytest.fixture
def server(pushpin: Pushpin, origin_port: int) -> Iterator[ServerProcess]:
    env = {**pushpin.settings(), **ONE_ADDRESS_AUDIENCE, "NOWPLAYING_LOG_LEVEL": "INFO"}
    with nowplaying_server(poll_seconds=1.0, port=origin_port, extra_env=env) as running:
        yield running


async def _skip(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        (await http.post(f"{CONTROL}/skip")).raise_for_status()


async def _heads(url: str) -> dict[str, str]:
    async with httpx.AsyncClient(timeout=WAIT) as http, http.stream("GET", url) as answer:
        return {name: answer.headers.get(name, "") for name in VIEWER_HEADERS}


def _published_to(pushpin: Pushpin) -> list[int]:
    """How many held streams each change published to Pushpin's channels reached (its log)."""
    found = re.findall(r"publish channel=nowplaying\.\S+ receivers=(\d+)", pushpin.log())
    return [int(n) for n in found]


async def _events(viewer: EventSource, count: int) -> None:
    async with asyncio.timeout(WAIT):
        while len(viewer.messages) < count:
            await viewer.next_event()


async def test_viewers_through_pushpin_get_the_same_stream_and_every_change(
    pushpin: Pushpin, server: ServerProcess
) -> None:
    path = await published_events(server.url)
    assert await _heads(pushpin.url + path) == await _heads(server.url + path)
    async with httpx.AsyncClient(timeout=STREAMS) as http:
        direct = EventSource(http, server.url + path, name="direct")
        held = [EventSource(http, pushpin.url + path, name=f"held-{n}") for n in range(3)]
        tasks = [asyncio.create_task(v.run()) for v in (direct, *held)]
        try:
            for viewer in (direct, *held):
                await _events(viewer, 1)
            first = direct.messages[0].id
            assert [v.messages[0].id for v in held] == [first] * 3
            await _skip(server)
            for viewer in (direct, *held):
                await _events(viewer, 2)
            assert {v.messages[1].id for v in held} == {direct.messages[1].id}
            assert int(direct.messages[1].id) > int(first)
            assert [v.messages[1].data["title"] for v in held] == [direct.last["title"]] * 3
            assert all(len(v.messages) == 2 for v in held)  # nothing twice
            assert all(v.streams == 1 and v.failed is None for v in held)
            # Pushpin held the three and was handed the change once for all of them.
            assert _published_to(pushpin) == [3]
        finally:
            await close_all(tasks)


async def test_last_event_id_through_pushpin_resumes_as_it_does_directly(
    pushpin: Pushpin, server: ServerProcess
) -> None:
    path = await published_events(server.url)
    async with httpx.AsyncClient(timeout=STREAMS) as http:
        first = EventSource(http, pushpin.url + path)
        task = asyncio.create_task(first.run())
        try:
            await _events(first, 1)
        finally:
            await close_all([task])
        current = first.messages[0].id
        level = EventSource(http, pushpin.url + path, last_event_id=current)
        behind = EventSource(http, pushpin.url + path, last_event_id=str(int(current) - 1))
        tasks = [asyncio.create_task(v.run()) for v in (level, behind)]
        try:
            await _events(behind, 1)
            assert behind.messages[0].id == current  # what it missed: the current state
            assert level.messages == []  # it has that already
            await _skip(server)
            await _events(level, 1)
            await _events(behind, 2)
            assert level.messages[0].id == behind.messages[1].id
            assert int(level.messages[0].id) > int(current)
        finally:
            await close_all(tasks)


async def test_a_restart_of_pushpin_is_survived(
    pushpin: Pushpin, server: ServerProcess, origin_port: int
) -> None:
    """Pushpin stops (publishes fail, retried and given up) and comes back: its viewers
    reconnect with their Last-Event-ID, get what changed meanwhile, then every change again."""
    path = await published_events(server.url)
    stack = contextlib.ExitStack()
    async with httpx.AsyncClient(timeout=STREAMS) as http:
        viewer = EventSource(http, pushpin.url + path)
        task = asyncio.create_task(viewer.run())
        try:
            await _events(viewer, 1)
            await asyncio.to_thread(pushpin.stop)
            await _skip(server)  # published to nobody
            stack.enter_context(run_pushpin(f"127.0.0.1:{origin_port}", like=pushpin))
            await _events(viewer, 2)  # reconnected: the change it missed
            assert viewer.streams >= 2
            await _skip(server)
            await _events(viewer, 3)
            assert _published_to(pushpin)[-1:] == [1]
            ids = [int(m.id) for m in viewer.messages]
            assert ids == sorted(set(ids))
        finally:
            await close_all([task])
            stack.close()


async def test_held_viewers_outlive_a_restart_of_nowplaying(
    pushpin: Pushpin, origin_port: int, tmp_path: Path
) -> None:
    """nowplaying stops and starts again on its database: Pushpin keeps the viewer connected and
    brings it the new process's state (the demo's in-process simulator forgets the grant, so
    that state is "reconnect required", as a direct viewer would see it too)."""
    env = {
        **pushpin.settings(),
        **ONE_ADDRESS_AUDIENCE,
        "NOWPLAYING_DATABASE_URL": f"sqlite:///{tmp_path}/kept.sqlite3",
    }
    async with httpx.AsyncClient(timeout=STREAMS) as http:
        with nowplaying_server(poll_seconds=1.0, port=origin_port, extra_env=env) as first:
            path = await published_events(first.url)
            viewer = EventSource(http, pushpin.url + path)
            task = asyncio.create_task(viewer.run())
            await _events(viewer, 1)
        try:
            with nowplaying_server(poll_seconds=1.0, port=origin_port, extra_env=env):
                await _events(viewer, 2)
            assert viewer.streams == 1  # never reconnected: Pushpin held it throughout
            assert viewer.failed is None
            assert int(viewer.messages[1].id) > int(viewer.messages[0].id)
            assert viewer.messages[1].data == {"error": "reconnect_required"}
        finally:
            await close_all([task])


async def test_two_pushpins_in_front_of_one_server_each_get_every_change_once(
    origin_port: int,
) -> None:
    """Fan-out past one process: nowplaying publishes each change to both instances; the
    viewers of each get the direct viewer's headers, ids and events, each change once. One
    instance stops and comes back: the other's viewers stay connected and get every change
    meanwhile, and the restarted one's come back with what they missed."""
    origin = f"127.0.0.1:{origin_port}"
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(run_pushpin(origin))
        second = stack.enter_context(run_pushpin(origin, key=first.key))
        env = {**grip_settings([first, second]), **ONE_ADDRESS_AUDIENCE}
        server = stack.enter_context(
            nowplaying_server(poll_seconds=1.0, port=origin_port, extra_env=env)
        )
        path = await published_events(server.url)
        direct_heads = await _heads(server.url + path)
        assert await _heads(first.url + path) == direct_heads
        assert await _heads(second.url + path) == direct_heads
        async with httpx.AsyncClient(timeout=STREAMS) as http:
            direct = EventSource(http, server.url + path, name="direct")
            ones = [EventSource(http, first.url + path, name=f"first-{n}") for n in range(2)]
            twos = [EventSource(http, second.url + path, name=f"second-{n}") for n in range(3)]
            viewers = [direct, *ones, *twos]
            tasks = [asyncio.create_task(v.run()) for v in viewers]
            try:
                for viewer in viewers:
                    await _events(viewer, 1)
                await _skip(server)
                for viewer in viewers:
                    await _events(viewer, 2)
                ids = [[m.id for m in v.messages] for v in viewers]
                assert ids == [ids[0]] * len(viewers)  # each change once, the same ids
                assert {v.messages[1].data["title"] for v in viewers} == {direct.last["title"]}
                assert (_published_to(first), _published_to(second)) == ([2], [3])

                await asyncio.to_thread(first.stop)
                await _skip(server)  # the second still publishes at once
                for viewer in (direct, *twos):
                    await _events(viewer, 3)
                assert all(v.streams == 1 and v.failed is None for v in twos)
                assert _published_to(second) == [3, 3]

                stack.enter_context(run_pushpin(origin, like=first))
                for viewer in ones:
                    await _events(viewer, 3)  # reconnected: the change they missed
                    assert viewer.streams >= 2
                await _skip(server)
                for viewer in viewers:
                    await _events(viewer, 4)
                ids = [[m.id for m in v.messages] for v in viewers]
                assert ids == [ids[0]] * len(viewers)
                assert [int(i) for i in ids[0]] == sorted({int(i) for i in ids[0]})
                assert all(v.streams == 1 for v in (direct, *twos))
            finally:
                await close_all(tasks)


SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "pushpin"


def _settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if re.match(r"^\w+=", line))


def _instance(n: str) -> subprocess.CompletedProcess[str]:
    script = SHIPPED / "instance.sh"
    return subprocess.run(["sh", str(script), n], capture_output=True, text=True, check=False)


def test_instance_configs_change_only_what_must_differ_and_share_nothing() -> None:
    """``instance.sh N``: the shipped config but for its rundir, logdir, viewer port and port
    offset; two instances share no port and no directory; a bad N is refused."""
    base = _settings((SHIPPED / "pushpin.conf").read_text())
    one, two = (_settings(_instance(n).stdout) for n in ("1", "2"))
    moved = {"rundir", "logdir", "http_port", "port_offset"}
    for conf in (one, two):
        assert conf.keys() == base.keys()
        assert {k for k in base if conf[k] != base[k]} == moved
    assert all(one[k] != two[k] for k in moved)
    assert (one["rundir"], one["http_port"], one["port_offset"]) == (
        "/run/pushpin-1",
        "127.0.0.1:7998",
        "10",
    )
    assert [_instance(bad).returncode for bad in ("0", "100", "x", "")] == [2] * 4


async def test_the_bench_s_small_form_reaches_every_viewer() -> None:
    """``python -m bench grip`` in small (200 viewers from 127.0.0.2-9, at most 100 a process:
    two Pushpin instances and two client processes): every viewer connects through Pushpin and
    every change reaches every one of them."""
    result = await grip.run(viewers=200, most=100)
    assert (result.pushpins, result.viewers, result.refused) == (2, 200, 0)
    assert [(len(c.latencies), c.missed) for c in result.changes] == [(200, 0)] * CHANGES
    assert sum(result.loaded_kb) > 0
