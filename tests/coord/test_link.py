"""coord/link.py: one Redis client per process, every key name, one rule for a Redis failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from harness.app import make_settings
from harness.live_server import free_port

from nowplaying.clock import FakeClock
from nowplaying.coord.keys import Keys
from nowplaying.coord.link import RedisLink
from nowplaying.coord.redis import RedisCoordinator
from nowplaying.engine.problems import AccountProblems
from nowplaying.ops.alerts import RedisClaims
from nowplaying.runtime import open_runtime

pytestmark = pytest.mark.anyio


@pytest.fixture
async def unreachable() -> AsyncIterator[RedisLink]:
    link = RedisLink(f"redis://127.0.0.1:{free_port()}/0", clock=FakeClock(), retry_every=60)
    yield link
    await link.close()


def test_every_key_is_under_the_prefix() -> None:
    """Every name the link hands out is under ``np:``, and the per-account ones keep the id."""
    names = [Keys.PAUSE, Keys.PAUSE_REASON, Keys.BUDGET_CALLS, Keys.BUDGET_LEARNED]
    names += [Keys.BUDGET_ACTIVE, Keys.budget_day(20454), Keys.lock("refresh:a")]
    for per_account in (Keys.lease, Keys.watch, Keys.state, Keys.token, Keys.refusal):
        names.append(per_account("acc"))
        assert per_account("acc").endswith(":acc")
    names.append(Keys.alert("reconnect:acc"))
    assert all(name.startswith("np:") for name in names)
    assert len(set(names)) == len(names)


async def test_every_user_of_the_link_degrades_by_one_rule(
    unreachable: RedisLink, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis unreachable: the coordinator, the account problems and the alert claims all fall
    back to this process alone, and the process warns once, not once per user or call."""
    caplog.set_level(logging.WARNING)
    clock = unreachable.clock
    coord = RedisCoordinator(unreachable)
    problems = AccountProblems(clock, link=unreachable)
    claims = RedisClaims(unreachable, clock)
    assert await coord.hold_lease("acc")  # polls for itself rather than not at all
    await problems.load("acc")  # keeps this process's notes
    assert problems.get("acc") is None
    assert await claims.claim("reconnect:acc", 60)  # this process decides alone...
    assert not await claims.claim("reconnect:acc", 60)  # ...and still only once
    assert unreachable.degraded and coord.degraded
    assert unreachable.degraded_events == 1
    warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(warnings) == 1
    await coord.close()
    assert unreachable.redis is not None  # the caller's link: the coordinator leaves it open


async def test_the_runtime_opens_one_link_for_everything(tmp_path: Path, flushed: str) -> None:
    """With NOWPLAYING_REDIS_URL the runtime's coordinator, problems and alert claims share one
    link (one client, one degraded mode)."""
    settings = make_settings(
        tmp_path,
        nowplaying_redis_url=flushed,
        nowplaying_alert_webhook="http://127.0.0.1:9/hook",
    )
    async with open_runtime(settings, public_origin="http://127.0.0.1:8000", server=True) as rt:
        assert isinstance(rt.coord, RedisCoordinator)
        link = rt.coord.link
        assert rt.problems is not None and rt.problems.link is link
        assert rt.alerts is not None and isinstance(rt.alerts.claims, RedisClaims)
        assert rt.alerts.claims.link is link
        assert await link.call(link.redis.ping(), False)


async def test_a_cancellation_redis_py_absorbs_is_raised() -> None:
    """An operation that returns although its task was cancelled meanwhile (what redis-py's
    ``asyncio.wait_for`` does on Python 3.11 when the reply lands in the same turn) still ends
    the task: the caller gets the CancelledError, not the result."""
    link = RedisLink(f"redis://127.0.0.1:{free_port()}/0", clock=FakeClock())
    started = asyncio.Event()

    async def absorbs() -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return "reply"  # as wait_for does when its inner future finished too
        return "late"

    after: list[str] = []

    async def caller() -> None:
        after.append(await link.call(absorbs(), "fallback"))

    task = asyncio.create_task(caller())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert after == []
    await link.close()


async def test_cancelled_redis_calls_end_their_task(flushed: str) -> None:
    """With a real Redis: a task cancelled at any moment of a stream of calls ends, every time
    (on Python 3.11 redis-py absorbed most of these cancellations and the task ran on)."""
    link = RedisLink(flushed)

    async def calls(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await link.call(link.redis.set("np:test:cancel", "1", px=1000), None)

    ran_on = 0
    for n in range(60):
        stop = asyncio.Event()
        task = asyncio.create_task(calls(stop))
        for _ in range(n % 6 + 1):  # cancel at various points of the calls
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        if not done:
            ran_on += 1
            stop.set()
            await asyncio.wait({task}, timeout=2)
    assert ran_on == 0
    await link.close()
