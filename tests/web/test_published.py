"""The public hot path: public id -> account cached briefly, dropped on every instance on a
change, and no refresh token decrypted to answer a public request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from harness.app import SAME, Env, open_env
from harness.services import REDIS_URL, require

from nowplaying.clock import FakeClock
from nowplaying.web.published import CACHE_SECONDS

pytestmark = pytest.mark.anyio


async def rotate(env: Env) -> str:
    response = await env.client.post("/api/account/rotate", headers=SAME)
    assert response.status_code == 200, response.text
    public_id: str = response.json()["publicId"]
    return public_id


async def test_public_requests_within_the_ttl_read_the_account_once(probed: Env) -> None:
    """100 public requests (JSON, card, page) within the TTL: one account read, no decryption;
    after the TTL, one read more."""
    connected = probed
    assert (await connected.connect()).status_code == 303
    public_id = await connected.publish()
    assert (await connected.client.get(f"/p/{public_id}.json")).status_code == 200  # warm up
    connected.services.published.drop("demo")
    store = connected.probe
    store.calls.clear()
    store.cipher.opened.clear()
    paths = [f"/p/{public_id}.json", f"/p/{public_id}.svg", f"/p/{public_id}"]
    for i in range(100):
        response = await connected.client.get(paths[i % 3])
        assert response.status_code == 200, (paths[i % 3], response.text)
    # The engine lists the widget's sources once per watch, beside its poller (it may land
    # after the warm-up): not a read per request.
    assert store.calls.pop("list_sources", 0) <= 1
    assert store.calls == {"get_account_by_public_id": 1}
    assert store.cipher.opened == []
    await connected.clock.advance(CACHE_SECONDS + 0.1)
    assert (await connected.client.get(paths[0])).status_code == 200
    assert store.calls["get_account_by_public_id"] == 2
    assert store.cipher.opened == []


async def test_owner_and_session_reads_decrypt_nothing(probed: Env) -> None:
    """The owner page's API and /api/spotify read the account without opening its token (the
    owner page opens only the push token it shows)."""
    connected = probed
    assert (await connected.connect()).status_code == 303
    await connected.publish()
    assert (await connected.client.get("/api/spotify")).status_code == 200
    connected.probe.cipher.opened.clear()
    connected.services.sessions.forget_account("demo")
    for _ in range(5):
        assert (await connected.client.get("/api/account")).status_code == 200
        assert (await connected.client.get("/api/spotify")).status_code == 200
    opened = connected.probe.cipher.opened
    assert [c for c in opened if not c.endswith("/push-token")] == []
    assert len(opened) == 5


async def test_rotate_kills_a_cached_link_at_once(connected: Env) -> None:
    """A link served from the cache a moment ago is 404 right after rotate, the new one 200;
    unpublish does the same, with no time passing."""
    old = await connected.publish()
    for path in (f"/p/{old}.json", f"/p/{old}"):
        assert (await connected.client.get(path)).status_code == 200
    new = await rotate(connected)
    for path in (f"/p/{old}.json", f"/p/{old}"):
        assert (await connected.client.get(path)).status_code == 404
    assert (await connected.client.get(f"/p/{new}.json")).status_code == 200
    assert (await connected.client.post("/api/account/unpublish", headers=SAME)).is_success
    assert (await connected.client.get(f"/p/{new}.json")).status_code == 404


async def test_disconnect_kills_a_cached_link_at_once(connected: Env) -> None:
    """Logging out (the account forgotten) ends its cached public link at once."""
    public_id = await connected.publish()
    assert (await connected.client.get(f"/p/{public_id}")).status_code == 200
    assert (await connected.client.post("/logout", headers=SAME)).status_code < 400
    assert (await connected.client.get(f"/p/{public_id}")).status_code == 404


@contextlib.asynccontextmanager
async def two_instances(
    tmp_path: Path, clock: FakeClock, **overrides: Any
) -> AsyncIterator[tuple[Env, Env]]:
    """Two apps on one SQLite file (and whatever else ``overrides`` share), one clock."""
    async with (
        open_env(tmp_path, clock, **overrides) as a,
        open_env(tmp_path, clock, **overrides) as b,
    ):
        response = await a.connect()
        assert response.status_code == 303, response.text
        yield a, b


async def test_another_instance_refuses_a_rotated_link_within_the_ttl(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Without Redis: the instance that did not rotate serves its cached entry at most
    CACHE_SECONDS, then refuses the old id."""
    async with two_instances(tmp_path, clock) as (a, b):
        old = await a.publish()
        assert (await b.client.get(f"/p/{old}")).status_code == 200
        new = await rotate(a)
        assert (await a.client.get(f"/p/{old}")).status_code == 404
        assert (await b.client.get(f"/p/{old}")).status_code == 200  # cached, not yet expired
        await clock.advance(CACHE_SECONDS + 0.1)
        assert (await b.client.get(f"/p/{old}")).status_code == 404
        assert (await b.client.get(f"/p/{new}")).status_code == 200


async def test_with_redis_another_instance_refuses_a_rotated_link_at_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    """With Redis: the other instance drops the rotated link when told, no time passing."""
    require(REDIS_URL, "Redis")
    async with two_instances(tmp_path, clock, nowplaying_redis_url=REDIS_URL) as (a, b):
        old = await a.publish()
        assert (await b.client.get(f"/p/{old}")).status_code == 200
        heard: set[str] = set()
        told = asyncio.Event()

        def listen(account_id: str) -> None:
            heard.add(account_id)
            told.set()

        b.services.runtime.coord.on_public_change(listen)
        # B's subscription is made in the background: announce a probe until B hears it.
        async with asyncio.timeout(10):
            while "probe" not in heard:
                await a.services.runtime.coord.announce_public_change("probe")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(told.wait(), 0.1)
        heard.clear()
        told.clear()
        await rotate(a)
        async with asyncio.timeout(10):
            while "demo" not in heard:
                told.clear()
                await told.wait()
        assert (await b.client.get(f"/p/{old}")).status_code == 404
