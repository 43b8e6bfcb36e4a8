"""A viewer that reconnects a little ahead of this instance (another instance sent it the newer
state first; pub/sub has not brought it here yet) is not sent the older state it has passed.

Found by the rolling restart test: a viewer got id N+1 from the polling instance, reconnected
to a follower still at N, and was sent N (an older track) before N+1 a second time.
"""

from __future__ import annotations

import pytest
from harness.app import Env
from harness.sse import SSEReader

pytestmark = pytest.mark.anyio


def _cookie(env: Env) -> dict[str, str]:
    value = env.client.cookies.get("__Host-np_session")
    return {"cookie": f"__Host-np_session={value}"}


async def _current_id(connected: Env) -> int:
    connected.sim.player("demo").play(0)
    await connected.services.runtime.hub.forget("demo")
    async with SSEReader(connected.app, "/api/spotify/events", _cookie(connected)) as first:
        seen = (await first.wait_for(1))[0]
    assert seen.id is not None
    return int(seen.id)


async def test_a_viewer_ahead_gets_only_later_changes(connected: Env) -> None:
    """Last-Event-ID one past this instance's version: neither the older state nor that next
    version again (it has it), then the change after."""
    ahead = await _current_id(connected) + 1
    headers = {**_cookie(connected), "last-event-id": str(ahead)}
    async with SSEReader(connected.app, "/api/spotify/events", headers) as again:
        await connected.clock.advance(2)
        assert again.events == []  # not the older state
        connected.sim.player("demo").skip()  # here, the version the viewer already has
        await connected.clock.advance(5.5)
        assert again.events == []
        connected.sim.player("demo").skip()
        await connected.clock.advance(5.5)
        events = await again.wait_for(1)
        assert [e.data["title"] for e in events] == ["夜に駆ける"]
        assert int(events[0].id or 0) == ahead + 1


@pytest.mark.parametrize("offset", [-1, 10_001, 10**30])
async def test_ids_behind_or_far_ahead_get_the_current_state(connected: Env, offset: int) -> None:
    """An older id, or one too far ahead to be a quicker instance's, gets the current state."""
    current = await _current_id(connected)
    headers = {**_cookie(connected), "last-event-id": str(current + offset)}
    async with SSEReader(connected.app, "/api/spotify/events", headers) as again:
        events = await again.wait_for(1)
        assert events[0].data["title"] == "Hoppípolla"
