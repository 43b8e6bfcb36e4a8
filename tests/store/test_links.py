"""Widgets without Spotify, made by signing in with another source, and the lookups of links."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness.accounts import account
from harness.stores import STORE_KEY

from nowplaying.crypto import TokenCipher
from nowplaying.models import SourceKind
from nowplaying.store import (
    Account,
    AccountStatus,
    SourceLink,
    SQLiteStore,
    Store,
    StoreError,
    widget_id,
)

pytestmark = pytest.mark.anyio

BOB = widget_id(SourceKind.LASTFM, "bob_fm")


def bob(**kw: Any) -> Account:
    """A widget made by signing in with Last.fm as bob_fm: no Spotify grant."""
    return account(BOB, "", **{"display_name": "bob_fm", "spotify": False, **kw})


def link(aid: str = BOB, kind: SourceKind = SourceKind.LASTFM, user: str = "bob_fm") -> SourceLink:
    return SourceLink(aid, kind, user, f"secret-of-{user}", connected_at=3000.0)


def test_widget_ids_keep_spotify_ids_and_name_the_other_sources() -> None:
    assert widget_id(SourceKind.SPOTIFY, "alice") == "alice"
    assert widget_id(SourceKind.LASTFM, "bob_fm") == "lastfm:bob_fm"
    assert widget_id(SourceKind.LISTENBRAINZ, "Carol B") == "listenbrainz:Carol B"


async def test_a_widget_without_spotify_reads_lists_and_publishes(store: Store) -> None:
    """Added with its Last.fm link, it loads by id and by public id and lists beside a Spotify
    widget, with no refresh token, active, ``spotify`` False; its source is its own."""
    await store.put_account(account())
    await store.add_widget(bob(), link())
    got = await store.get_account(BOB)
    assert got == bob()
    assert got is not None and got.refresh_token == "" and got.status is AccountStatus.ACTIVE
    assert await store.get_account_info(BOB) == bob()
    assert [a.id for a in await store.list_accounts()] == ["alice", BOB]
    assert [a.spotify for a in await store.list_accounts()] == [True, False]
    await store.set_public_id(BOB, "pub-bob")
    assert await store.get_account_by_public_id("pub-bob") == bob(public_id="pub-bob")
    await store.set_show_last_played(BOB, True)
    await store.put_account(bob(display_name="Bob", public_id="pub-bob"))
    assert await store.get_account(BOB) == bob(display_name="Bob", public_id="pub-bob")
    assert await store.get_source(BOB, SourceKind.LASTFM) == link()
    assert [s.kind for s in await store.list_sources(BOB)] == [SourceKind.LASTFM]


async def test_adding_a_widget_whose_id_is_taken_writes_nothing(store: Store) -> None:
    await store.add_widget(bob(), link())
    with pytest.raises(StoreError):
        await store.add_widget(bob(display_name="other"), link(user="other"))
    assert await store.get_account(BOB) == bob()
    assert await store.list_sources(BOB) == [
        SourceLink(BOB, SourceKind.LASTFM, "bob_fm", "", connected_at=3000.0)
    ]


async def test_add_widget_refuses_a_spotify_widget_or_a_foreign_link(store: Store) -> None:
    with pytest.raises(ValueError, match="no Spotify grant"):
        await store.add_widget(account(), link("alice", SourceKind.LASTFM))
    with pytest.raises(ValueError, match="no Spotify grant"):
        await store.add_widget(bob(), link("elsewhere"))
    assert await store.list_accounts() == []


async def test_linking_spotify_to_a_widget_made_without_it(store: Store) -> None:
    """A widget born on Last.fm that later gets a Spotify grant reads as a Spotify widget; the
    grant's removal makes it a widget without Spotify again, nothing else lost."""
    await store.add_widget(bob(), link())
    await store.put_source(
        SourceLink(BOB, SourceKind.SPOTIFY, "bob_sp", "refresh-bob", connected_at=4000.0)
    )
    got = await store.get_account(BOB)
    assert got is not None and got.spotify and got.refresh_token == "refresh-bob"
    await store.delete_source(BOB, SourceKind.SPOTIFY)
    assert await store.get_account(BOB) == bob()


async def test_the_widget_of_a_source_user_is_found(store: Store) -> None:
    """Who signs in as a source's user: the widget it is linked to, the earliest if several."""
    await store.put_account(account())
    await store.add_widget(bob(), link())
    assert await store.account_of_source(SourceKind.LASTFM, "bob_fm") == BOB
    assert await store.account_of_source(SourceKind.SPOTIFY, "alice") == "alice"
    assert await store.account_of_source(SourceKind.LISTENBRAINZ, "bob_fm") is None
    assert await store.account_of_source(SourceKind.LASTFM, "BOB_FM") is None
    later = SourceLink("alice", SourceKind.LASTFM, "bob_fm", "k", connected_at=9000.0)
    await store.put_source(later)
    assert await store.account_of_source(SourceKind.LASTFM, "bob_fm") == BOB


async def test_list_links_gives_every_widget_of_a_kind_with_secrets_opened(store: Store) -> None:
    await store.put_account(account())
    await store.add_widget(bob(), link())
    alice_lb = link("alice", SourceKind.LISTENBRAINZ, "alice_lb")
    await store.put_source(alice_lb)
    assert await store.list_links(SourceKind.LASTFM) == [link()]
    assert await store.list_links(SourceKind.LISTENBRAINZ) == [alice_lb]
    (spotify,) = await store.list_links(SourceKind.SPOTIFY)
    assert (spotify.account_id, spotify.secret) == ("alice", "refresh-1")
    assert await store.list_links(SourceKind.PUSH) == []


async def test_a_widget_without_spotify_survives_a_reopen_and_a_key_rotation(
    tmp_path: Path,
) -> None:
    path = tmp_path / "np.sqlite3"
    old = SQLiteStore(path, cipher=TokenCipher("old-links-key-" * 3))
    await old.open()
    await old.add_widget(bob(), link())
    await old.close()
    s = SQLiteStore(path, cipher=TokenCipher(STORE_KEY, ["old-links-key-" * 3]))
    await s.open()
    try:
        assert await s.reseal_all() == 1
        assert await s.list_accounts() == [bob()]
        assert await s.list_links(SourceKind.LASTFM) == [link()]
    finally:
        await s.close()
