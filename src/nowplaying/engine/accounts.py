"""Connecting and disconnecting an account: the one path every entry point takes.

The web callback, ``/logout`` and ``nowplaying login`` all come through here, so each one drops
the same things: the earlier grant's access token (on every instance), the live engine's state
for the account, every instance's public-id cache entry. The web layer's own caches (the
sessions' lookups) are the web layer's to drop, right after the call.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Protocol

from nowplaying.clock import Clock
from nowplaying.coord.base import Coordinator
from nowplaying.engine.live import LiveHub
from nowplaying.models import Grant, SourceKind, Token
from nowplaying.sources.base import BadResponse
from nowplaying.store import Account, AccountStatus, LoginState, SourceLink, Store, widget_id

TERMINAL_BROWSER = "terminal:nowplaying-login"
"""The ``browser`` of a pending login started by ``nowplaying login``. A browser fingerprint is
a SHA-256 hex digest, which never holds a ``:``, so no browser can present this one."""


class Credentials(Protocol):
    """The access tokens kept per account (Spotify's :class:`~.grants.TokenManager`)."""

    def seed(self, account_id: str, token: Token) -> None: ...
    async def drop(self, account_id: str) -> None: ...


class Parts(Protocol):
    """What connecting and publishing need: the runtime has it (the web hands its ``runtime``)."""

    @property
    def store(self) -> Store: ...
    @property
    def tokens(self) -> Credentials: ...
    @property
    def hub(self) -> LiveHub: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def coord(self) -> Coordinator: ...


async def connect_account(
    parts: Parts, grant: Grant, *, requested: frozenset[str], owner: str | None = None
) -> Account:
    """Store the grant as an active account and make every instance start afresh with it.

    The widget is the one this Spotify user is linked to (its id, for a widget first made with
    Spotify), or the signed-in ``owner``'s when that widget has no Spotify yet: "Connect
    Spotify" on a widget made with Last.fm or ListenBrainz (:class:`LinkedElsewhere` when this
    Spotify user belongs to another widget). An existing row keeps its public link and its
    "last played" choice. ``requested`` are the scopes asked for, used when Spotify's answer
    does not list the granted ones.
    """
    token, profile = grant.token, grant.profile
    if not token.refresh_token:
        raise BadResponse("no refresh token in the code exchange")
    target = await _spotify_widget(parts, profile.id, owner)
    existing = await parts.store.get_account(target)
    account = Account(
        id=target,
        display_name=existing.display_name
        if target != profile.id and existing
        else profile.display_name,
        refresh_token=token.refresh_token,
        scopes=token.scope or requested,
        consented_at=parts.clock.now(),
        status=AccountStatus.ACTIVE,
        public_id=existing.public_id if existing else None,
        show_last_played=existing.show_last_played if existing else False,
    )
    if target == profile.id:
        await parts.store.put_account(account)
    else:  # a widget made with another source: the grant joins it under the Spotify user's name
        await parts.store.put_account(replace(account, spotify=False))
        link = SourceLink(
            target, SourceKind.SPOTIFY, profile.id, token.refresh_token, account.consented_at
        )
        await parts.store.put_source(link)
    await parts.tokens.drop(account.id)  # any access token of the earlier grant, everywhere
    parts.tokens.seed(account.id, token)
    await parts.hub.restart(account.id)  # poll the new grant now; viewers stay, no reconnect flash
    await parts.coord.announce_public_change(account.id)  # its public link serves the new grant
    return account


async def _spotify_widget(parts: Parts, spotify_id: str, owner: str | None) -> str:
    """The widget a Spotify sign-in as ``spotify_id`` lands on (see :func:`connect_account`)."""
    found = await parts.store.account_of_source(SourceKind.SPOTIFY, spotify_id)
    if owner is not None and owner != (found or spotify_id):
        current = await parts.store.get_account_info(owner)
        if current is not None and not current.spotify:
            if found is not None:
                raise LinkedElsewhere(SourceKind.SPOTIFY)
            return owner
    return found or spotify_id


async def disconnect_account(parts: Parts, account_id: str) -> None:
    """Forget the account: its sessions, its row, its tokens everywhere, its live state."""
    await parts.store.delete_sessions_of(account_id)
    await parts.store.delete_account(account_id)
    await parts.tokens.drop(account_id)
    await parts.hub.forget(account_id)
    await parts.coord.announce_public_change(account_id)  # its public link dies everywhere


class LinkedElsewhere(Exception):
    """The source's user is linked to another widget already (one widget per source user: who
    signs in with it must land on one widget)."""


async def connect_source(parts: Parts, link: SourceLink, *, owner: str | None) -> Account:
    """Link a source that is not Spotify (Last.fm, ListenBrainz): link or create.

    Signed in (``owner``): the source is linked to the owner's widget (replacing one of its
    kind), unless another widget has this user linked (:class:`LinkedElsewhere`). Not signed in:
    the widget this user is linked to, its secret renewed; else a new widget with the source as
    its first (``widget_id``; a suffix when a widget kept that id after unlinking the source).
    ``link.account_id`` is ignored. Returns the widget signed in to.
    """
    found = await parts.store.account_of_source(link.kind, link.user_name)
    if owner is not None and found not in {None, owner}:
        raise LinkedElsewhere(link.kind)
    target = owner or found
    if target is None:
        account = await _new_widget(parts, link)
    else:
        await parts.store.put_source(replace(link, account_id=target))
        got = await parts.store.get_account_info(target)
        if got is None:  # deleted meanwhile
            raise LookupError(target)
        account = got
    await parts.hub.restart(account.id)  # read the new source now; viewers stay
    await parts.coord.announce_public_change(account.id)
    return account


async def _new_widget(parts: Parts, link: SourceLink) -> Account:
    aid = widget_id(link.kind, link.user_name)
    if await parts.store.get_account_info(aid) is not None:
        aid = f"{aid}:{secrets.token_hex(4)}"
    account = Account(
        id=aid,
        display_name=link.user_name,
        refresh_token="",
        scopes=frozenset(),
        consented_at=parts.clock.now(),
        spotify=False,
    )
    await parts.store.add_widget(account, replace(link, account_id=aid))
    return account


async def unlink_source(parts: Parts, account_id: str, kind: SourceKind) -> None:
    """Remove the widget's source of ``kind`` (the caller keeps a way to sign in)."""
    await parts.store.delete_source(account_id, kind)
    if kind is SourceKind.SPOTIFY:
        await parts.tokens.drop(account_id)
    await parts.hub.restart(account_id)
    await parts.coord.announce_public_change(account_id)


def terminal_login_state(
    state: str, code_verifier: str, *, now: float, scopes: frozenset[str]
) -> LoginState:
    """A pending login for the running server to complete on ``nowplaying login``'s behalf.

    The 256-bit single-use ``state`` and the verifier, which never leaves the server side, are
    the proof; there is no browser to bind, so none is (see :func:`is_terminal_login`).
    """
    return LoginState(state, code_verifier, TERMINAL_BROWSER, now, scopes)


def is_terminal_login(login: LoginState) -> bool:
    """Whether a pending login was handed over by ``nowplaying login``."""
    return login.browser == TERMINAL_BROWSER


def new_public_id() -> str:
    """128 random bits, URL-safe: the capability behind a share link."""
    return secrets.token_urlsafe(16)


async def publish(parts: Parts, account: Account) -> str:
    """Give the account a public id; publishing twice keeps the first one. Returns the id."""
    if account.public_id is not None:
        return account.public_id
    public_id = new_public_id()
    await parts.store.set_public_id(account.id, public_id)
    await parts.coord.announce_public_change(account.id)
    return public_id


async def rotate(parts: Parts, account_id: str) -> str:
    """A new public id: every old link stops working at once, on every instance."""
    public_id = new_public_id()
    await parts.store.set_public_id(account_id, public_id)
    await parts.coord.announce_public_change(account_id)
    return public_id


async def unpublish(parts: Parts, account_id: str) -> None:
    """No public id: every link stops working at once, on every instance."""
    await parts.store.set_public_id(account_id, None)
    await parts.coord.announce_public_change(account_id)


async def account_ready(store: Store, account_id: str) -> bool:
    """Whether an account that needed reconnecting holds a usable grant again."""
    account = await store.get_account_info(account_id)
    return account is not None and account.status is AccountStatus.ACTIVE


def new_push_token() -> str:
    """A token players push with: 32 random bytes, URL-safe (it sits in a webhook's path)."""
    return secrets.token_urlsafe(32)


async def push_token(parts: Parts, account_id: str) -> str:
    """The widget's push token, made on first need (the owner page shows it)."""
    token = await parts.store.get_push_token(account_id)
    if token is None:
        token = new_push_token()
        await parts.store.set_push_token(account_id, token)
    return token


async def rotate_push_token(parts: Parts, account_id: str) -> str:
    """A new push token: players holding the old one are refused from now on."""
    token = new_push_token()
    await parts.store.set_push_token(account_id, token)
    return token
