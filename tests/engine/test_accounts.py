"""engine/accounts.py: publishing, rotating and unpublishing a share link, the one path the owner
page and ``nowplaying login`` both take (connecting and disconnecting: tests/cli/test_login.py)."""

from __future__ import annotations

import pytest
from harness.app import ORIGIN, Env

from nowplaying.engine.accounts import (
    LinkedElsewhere,
    connect_source,
    publish,
    rotate,
    unlink_source,
    unpublish,
)
from nowplaying.models import SourceKind
from nowplaying.store import SourceLink
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


def _lastfm(user: str, secret: str = "sk") -> SourceLink:
    return SourceLink("", SourceKind.LASTFM, user, secret, connected_at=5.0)


async def test_connect_source_links_creates_finds_and_refuses(connected: Env) -> None:
    """Signed out: a new widget, then the same one (secret renewed); signed in: linked to the
    owner's; a user of another widget: LinkedElsewhere, nothing changed. Each is announced."""
    rt, announced = connected.services.runtime, _announced(connected)
    made = await connect_source(rt, _lastfm("bo"), owner=None)
    assert (made.id, made.spotify) == ("lastfm:bo", False)
    found = await connect_source(rt, _lastfm("bo", "sk-2"), owner=None)
    assert found.id == "lastfm:bo"
    renewed = await rt.store.get_source("lastfm:bo", SourceKind.LASTFM)
    assert renewed is not None and renewed.secret == "sk-2"
    linked = await connect_source(rt, _lastfm("demo_fm"), owner="demo")
    assert linked.id == "demo" and linked.spotify
    with pytest.raises(LinkedElsewhere):
        await connect_source(rt, _lastfm("bo"), owner="demo")
    assert await rt.store.account_of_source(SourceKind.LASTFM, "demo_fm") == "demo"
    assert announced == ["lastfm:bo", "lastfm:bo", "demo"]


async def test_a_widget_id_kept_after_unlinking_is_not_taken_over(connected: Env) -> None:
    """``lastfm:bo`` unlinked from Last.fm (it has Spotify now): bo signing in again gets a new
    widget with an id of its own, never that one."""
    rt = connected.services.runtime
    await connect_source(rt, _lastfm("bo"), owner=None)
    spotify = SourceLink("lastfm:bo", SourceKind.SPOTIFY, "bo_sp", "refresh-bo", 6.0)
    await rt.store.put_source(spotify)
    await unlink_source(rt, "lastfm:bo", SourceKind.LASTFM)
    again = await connect_source(rt, _lastfm("bo"), owner=None)
    assert again.id.startswith("lastfm:bo:") and len(again.id) == len("lastfm:bo:") + 8
    assert [s.kind for s in await rt.store.list_sources("lastfm:bo")] == [SourceKind.SPOTIFY]
