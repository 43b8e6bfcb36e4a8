"""engine/accounts.py: publishing, rotating and unpublishing a share link, the one path the owner
page and ``nowplaying login`` both take (connecting and disconnecting: tests/cli/test_login.py)."""

from __future__ import annotations

import pytest
from harness.app import ORIGIN, Env

from nowplaying.engine.accounts import publish, rotate, unpublish
from nowplaying.web.published import PUBLIC_ID

pytestmark = pytest.mark.anyio


def _announced(env: Env) -> list[str]:
    """The accounts whose public link every instance is told changed, in order."""
    seen: list[str] = []
    env.services.runtime.coord.on_public_change(seen.append)
    return seen


async def test_publish_keeps_the_first_id_and_announces_it_once(connected: Env) -> None:
    """A new id, stored and announced; publishing again keeps it and announces nothing."""
    rt, announced = connected.services.runtime, _announced(connected)
    account = await rt.store.get_account_info("demo")
    assert account is not None and account.public_id is None
    public_id = await publish(rt, account)
    assert PUBLIC_ID.match(public_id) and len(public_id) == 22
    again = await rt.store.get_account_info("demo")
    assert again is not None and again.public_id == public_id
    assert await publish(rt, again) == public_id
    assert announced == ["demo"]


async def test_rotate_and_unpublish_end_the_old_link_everywhere(connected: Env) -> None:
    """Each change is stored and announced; the old link answers 404 at once."""
    rt, announced = connected.services.runtime, _announced(connected)
    account = await rt.store.get_account_info("demo")
    assert account is not None
    first = await publish(rt, account)
    assert (await connected.client.get(f"/p/{first}.json")).status_code == 200
    second = await rotate(rt, "demo")
    assert second != first
    assert (await connected.client.get(f"/p/{first}.json")).status_code == 404
    assert (await connected.client.get(f"/p/{second}.json")).status_code == 200
    await unpublish(rt, "demo")
    assert (await connected.client.get(f"/p/{second}.json")).status_code == 404
    stored = await rt.store.get_account_info("demo")
    assert stored is not None and stored.public_id is None
    assert announced == ["demo", "demo", "demo"]


async def test_the_owner_routes_take_the_same_path(connected: Env) -> None:
    """publish, rotate and unpublish over HTTP announce exactly as the functions do."""
    announced = _announced(connected)
    for route in ("publish", "publish", "rotate", "unpublish"):
        response = await connected.client.post(f"/api/account/{route}", headers={"Origin": ORIGIN})
        assert response.status_code == 200
    assert announced == ["demo", "demo", "demo"]
