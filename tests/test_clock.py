"""The clocks' waits: ``timeout()`` on the fake clock fires in fake time, on the system clock it is
``asyncio.timeout``."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from nowplaying.clock import FakeClock, SystemClock

pytestmark = pytest.mark.anyio


async def wait_forever() -> None:
    await asyncio.Event().wait()


async def timed(clock: FakeClock, seconds: float | None, body: asyncio.Event) -> float:
    """Wait on ``body`` under ``clock.timeout(seconds)``; the fake time the block ended at."""
    async with clock.timeout(seconds):
        await body.wait()
    return clock.now()


async def test_fake_timeout_fires_at_the_deadline_not_before(clock: FakeClock) -> None:
    """A 5 s timeout: still waiting after 4.9 fake seconds, TimeoutError at 5."""
    start = clock.now()
    fired_at: list[float] = []

    async def waiter() -> None:
        try:
            async with clock.timeout(5):
                await wait_forever()
        except TimeoutError:
            fired_at.append(clock.now())

    task = asyncio.create_task(waiter())
    await clock.advance(4.9)
    assert not task.done()
    assert clock.sleepers == 1
    await clock.advance(0.1)
    assert task.done()
    assert fired_at == [start + 5]
    assert clock.sleepers == 0


async def test_fake_timeout_does_not_fire_once_the_body_finished(clock: FakeClock) -> None:
    """The body ends first: no TimeoutError, nothing left waiting, later code is not cancelled."""
    body = asyncio.Event()
    after: list[float] = []

    async def waiter() -> None:
        await timed(clock, 5, body)
        await clock.sleep(10)  # would be cancelled if the timeout fired late
        after.append(clock.now())

    start = clock.now()
    task = asyncio.create_task(waiter())
    await clock.advance(2)
    body.set()
    await clock.advance(20)
    assert task.done()
    task.result()
    assert after == [start + 12]
    assert clock.sleepers == 0


async def test_fake_timeout_none_never_fires_and_zero_fires_at_once(clock: FakeClock) -> None:
    """``timeout(None)`` waits as long as the body does; ``timeout(0)`` raises at the first wait."""
    body = asyncio.Event()
    task = asyncio.create_task(timed(clock, None, body))
    await clock.advance(10_000)
    assert not task.done()
    body.set()
    assert await task == clock.now()
    with pytest.raises(TimeoutError):
        async with clock.timeout(0):
            await wait_forever()
    with pytest.raises(TimeoutError):
        async with clock.timeout(-1):
            await wait_forever()


async def test_fake_timeouts_nest(clock: FakeClock) -> None:
    """Inner shorter: the inner block raises at its deadline and the outer goes on to its own.
    Inner longer: the outer one fires, and the TimeoutError is the outer block's."""
    start = clock.now()
    seen: list[tuple[str, float]] = []

    async def inner_first() -> None:
        try:
            async with clock.timeout(10):
                try:
                    async with clock.timeout(3):
                        await wait_forever()
                except TimeoutError:
                    seen.append(("inner", clock.now() - start))
                await wait_forever()
        except TimeoutError:
            seen.append(("outer", clock.now() - start))

    async def outer_first() -> None:
        try:
            async with clock.timeout(4), clock.timeout(30):
                await wait_forever()
        except TimeoutError:
            seen.append(("outer-first", clock.now() - start))

    tasks = [asyncio.create_task(inner_first()), asyncio.create_task(outer_first())]
    await clock.advance(3.5)
    assert seen == [("inner", 3)]
    await clock.advance(10)
    assert seen == [("inner", 3), ("outer-first", 4), ("outer", 10)]
    assert all(t.done() for t in tasks)
    assert clock.sleepers == 0


async def test_fake_timeout_is_cancellation_safe(clock: FakeClock) -> None:
    """Cancelled from outside: CancelledError (not TimeoutError), its wait is withdrawn, and the
    deadline passing later disturbs nothing."""
    errors: list[object] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        task = asyncio.create_task(timed(clock, 5, asyncio.Event()))
        await clock.advance(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert clock.sleepers == 0
        await clock.advance(10)
    finally:
        loop.set_exception_handler(None)
    assert errors == []


async def test_fake_timeout_cancels_exactly_once(clock: FakeClock) -> None:
    """After a fired timeout is caught, the same task waits on normally: the cancellation it
    used was consumed, so a later wait is not interrupted."""
    start = clock.now()
    marks: list[float] = []

    async def waiter() -> None:
        with contextlib.suppress(TimeoutError):
            async with clock.timeout(1):
                await clock.sleep(100)
        marks.append(clock.now())
        await clock.sleep(5)
        marks.append(clock.now())

    task = asyncio.create_task(waiter())
    await clock.advance(10)
    assert task.done()
    task.result()
    assert marks == [start + 1, start + 6]


async def test_system_clock_timeout_is_asyncio_timeout() -> None:
    """``SystemClock.timeout`` is ``asyncio.timeout``: fires on the loop's clock, None never."""
    clock = SystemClock()
    assert isinstance(clock.timeout(1), asyncio.Timeout)
    with pytest.raises(TimeoutError):
        async with clock.timeout(0):
            await wait_forever()
    async with clock.timeout(None):
        await asyncio.sleep(0)
    async with clock.timeout(60):  # a body that finishes in time is untouched
        await asyncio.sleep(0)
